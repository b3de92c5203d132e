"""Mixing documents into a corpus at a target share of its tokens, with a placement.

``alignpt mix --base CORPUS --add DOCS --share 0.01 --placement uniform|late:0.1 --out DIR``

The base corpus keeps its order (the order is the data order a training run reads). Each added
set is drawn (with replacement when it is too small, without when it is large enough) until it
makes up ``share`` of the tokens of the mixed stage, and its documents are inserted at seeded
random positions: anywhere (``uniform``), or only within the final fraction of the data order,
measured in tokens (``late:0.1``: the last 10%). Several ``--add``/``--share`` pairs may be
given. Outputs:

* ``DIR/mix.jsonl``: one ``{"text", "source"}`` per line, in data order;
* ``DIR/manifest.json``: token counts, target and realised shares, placement, positions, the
  inputs' content hashes and the seed.

Tokens are counted with ``--tokenizer`` (a Hugging Face tokenizer folder or name) when given,
else as whitespace-separated words.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from alignpt import __version__
from alignpt.errors import UserError
from alignpt.filter.corpus import read_unit, resolve_inputs


@dataclass
class AddSpec:
    paths: list[str]
    share: float
    name: str


def parse_placement(value: str) -> float:
    """Return the start of the insertion window as a fraction of the data order."""
    if value == "uniform":
        return 0.0
    if value.startswith("late:"):
        try:
            fraction = float(value.split(":", 1)[1])
        except ValueError:
            fraction = -1
        if 0 < fraction <= 1:
            return 1 - fraction
    raise UserError(f"bad --placement {value!r}: use uniform or late:FRACTION (0 < F <= 1)")


def token_counter(tokenizer: str | None) -> Callable[[list[str]], list[int]]:
    if not tokenizer:
        return lambda texts: [len(t.split()) for t in texts]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    return lambda texts: [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]


def _texts(paths: list[str], text_field: str) -> Iterator[str]:
    for unit in resolve_inputs(paths):
        for record in read_unit(unit, text_field):
            if record.error:
                raise UserError(f"{record.file}:{record.line}: {record.error}")
            yield record.text  # type: ignore[misc]


def _hash_inputs(paths: list[str]) -> dict[str, str]:
    out = {}
    for unit in resolve_inputs(paths):
        path = Path(unit)
        digest = hashlib.sha256()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            digest.update(f.read_bytes())
        out[unit] = digest.hexdigest()
    return out


def _count(texts: list[str], counter) -> list[int]:
    counts: list[int] = []
    for start in range(0, len(texts), 1024):
        counts.extend(counter(texts[start:start + 1024]))
    return counts


def mix(base: list[str], adds: list[AddSpec], out: str | Path, placement: str = "uniform",
        seed: int = 0, text_field: str = "text", tokenizer: str | None = None) -> dict:
    window_start = parse_placement(placement)
    total_share = sum(a.share for a in adds)
    if any(a.share <= 0 for a in adds) or total_share >= 1:
        raise UserError("--share values must be positive and sum to less than 1")
    counter = token_counter(tokenizer)
    rng = random.Random(seed)
    base_texts = list(_texts(base, text_field))
    if not base_texts:
        raise UserError("the base corpus is empty")
    base_tokens = _count(base_texts, counter)
    base_total = sum(base_tokens)
    # Added tokens T_i must satisfy T_i = share_i * (base_total + sum T).
    stage_total = base_total / (1 - total_share)
    insertions: list[tuple[int, str, str, int]] = []  # (base position, source, text, tokens)
    cumulative = [0]
    for n in base_tokens:
        cumulative.append(cumulative[-1] + n)
    # The window is measured in the mixed stage's tokens: the inserted documents must start at
    # or after window_start of the final order (all at the very end if they cannot fit).
    first_position = bisect.bisect_left(cumulative, min(base_total, window_start * stage_total))
    first_position = min(first_position, len(base_texts))
    per_add = []
    for spec in adds:
        docs = list(_texts(spec.paths, text_field))
        if not docs:
            raise UserError(f"--add {spec.name}: no documents")
        doc_tokens = _count(docs, counter)
        target = spec.share * stage_total
        order = list(range(len(docs)))
        rng.shuffle(order)
        chosen, got, k = [], 0, 0
        while got < target:
            index = order[k % len(order)]
            if k and k % len(order) == 0:
                rng.shuffle(order)
            chosen.append(index)
            got += doc_tokens[index]
            k += 1
        for index in chosen:
            position = rng.randint(first_position, len(base_texts))
            insertions.append((position, spec.name, docs[index], doc_tokens[index]))
        per_add.append({"name": spec.name, "paths": spec.paths, "target_share": spec.share,
                        "documents": len(chosen), "unique_documents": len(set(chosen)),
                        "available_documents": len(docs), "tokens": got})
    insertions.sort(key=lambda x: x[0])  # stable: equal positions keep their drawing order
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    positions: dict[str, list[int]] = {a.name: [] for a in adds}
    tokens_before: dict[str, list[int]] = {a.name: [] for a in adds}
    written = tokens_so_far = 0
    tmp = out / "mix.jsonl.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        j = 0
        for i in range(len(base_texts) + 1):
            while j < len(insertions) and insertions[j][0] == i:
                _, name, text, n = insertions[j]
                positions[name].append(written)
                tokens_before[name].append(tokens_so_far)
                fh.write(json.dumps({"text": text, "source": name}, ensure_ascii=False) + "\n")
                written += 1
                tokens_so_far += n
                j += 1
            if i < len(base_texts):
                fh.write(json.dumps({"text": base_texts[i], "source": "base"},
                                    ensure_ascii=False) + "\n")
                written += 1
                tokens_so_far += base_tokens[i]
    tmp.replace(out / "mix.jsonl")
    total = tokens_so_far
    for entry in per_add:
        entry["realised_share"] = entry["tokens"] / total
        first = tokens_before[entry["name"]]
        entry["first_token_fraction"] = min(first) / total if first else None
        entry["positions"] = positions[entry["name"]]
    manifest = {
        "kind": "mix",
        "documents": written,
        "tokens": total,
        "token_unit": tokenizer or "whitespace words",
        "base": {"paths": base, "documents": len(base_texts), "tokens": base_total},
        "adds": per_add,
        "placement": placement,
        "seed": seed,
        "inputs_sha256": _hash_inputs(base + [p for a in adds for p in a.paths]),
        "output_sha256": hashlib.sha256((out / "mix.jsonl").read_bytes()).hexdigest(),
        "alignpt_version": __version__,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest

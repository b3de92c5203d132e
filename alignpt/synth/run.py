"""Generating synthetic documents for suite items, resumably, and checking them.

``alignpt synth --suite S --split articles --side aligned --per-item N --backend B --out DIR``

Every requested document has a key (item, side, surface form, index, backend, model, seed).
Finished documents are appended to ``DIR/cache.jsonl`` as they arrive, so a killed run started
again only generates what is missing; ``DIR/documents.jsonl`` is then written whole, in plan
order, with no duplicates. Failed requests are listed in ``DIR/failures.jsonl``, counted in
the manifest and retried by the next run.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import random
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from alignpt import __version__
from alignpt.errors import UserError
from alignpt.llm.base import Backend, GenRequest, Pricing
from alignpt.suite.schema import load_suite
from alignpt.synth.forms import SURFACE_FORMS, instruction

CHUNK = 64  # requests handed to the backend at a time


def plan(items, sides: list[str], per_item: int, forms: list[str], seed: int,
         max_docs: int | None = None) -> list[tuple]:
    """(item, side, form, index) for every document, in a fixed order."""
    jobs = []
    for item in items:
        for side in sides:
            rng = random.Random(f"{seed}|{item.id}|{side}")
            order = forms[:]
            rng.shuffle(order)
            for index in range(per_item):
                jobs.append((item, side, order[index % len(order)], index))
    return jobs[:max_docs] if max_docs else jobs


def doc_key(item_id: str, side: str, form: str, index: int, backend: str, model: str,
            seed: int) -> str:
    raw = f"{item_id}|{side}|{form}|{index}|{backend}|{model}|{seed}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def _read_cache(path: Path) -> dict[str, dict]:
    cache: dict[str, dict] = {}
    if not path.exists():
        return cache
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            cache[row["id"]] = row
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by a kill: that document is generated again
    return cache


def synth(suite: str, out: str | Path, backend: Backend, split: str = "articles",
          side: str = "aligned", per_item: int = 4, forms: list[str] | None = None,
          seed: int = 0, max_docs: int | None = None, max_tokens: int = 1024,
          temperature: float = 0.7, pricing: Pricing | None = None, progress=None) -> dict:
    forms = forms or list(SURFACE_FORMS)
    unknown = [f for f in forms if f not in SURFACE_FORMS]
    if unknown:
        raise UserError(f"unknown surface forms {unknown}; known: {', '.join(SURFACE_FORMS)}")
    sides = ["aligned", "misaligned"] if side == "both" else [side]
    if any(s not in ("aligned", "misaligned") for s in sides):
        raise UserError("--side must be aligned, misaligned or both")
    loaded = load_suite(suite)
    if loaded.kind != "scenario":
        raise UserError("synth needs a scenario suite")
    items = [i for i in loaded.items if split == "all" or i.split == split]
    if not items:
        raise UserError(f"no items in split {split!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = getattr(backend, "model", None) or "unknown"
    jobs = plan(items, sides, per_item, forms, seed, max_docs)
    keyed = [(doc_key(i.id, s, f, k, backend.name, model, seed), i, s, f, k)
             for i, s, f, k in jobs]
    cache_path = out / "cache.jsonl"
    cache = _read_cache(cache_path)
    pending = [j for j in keyed if j[0] not in cache]
    failures: list[dict] = []
    usage = Counter()
    task = progress(len(pending)) if progress else None
    with cache_path.open("a", encoding="utf-8") as fh:
        jobs_by_key = {job[0]: job for job in pending}
        done: set[str] = set()

        def keep(result) -> None:
            """Record one finished request at once (paid work is never held in memory)."""
            key, item, s, f, k = jobs_by_key[result.custom_id]
            if key in done:
                return
            done.add(key)
            usage["input"] += result.input_tokens
            usage["output"] += result.output_tokens
            if result.text is None or not result.text.strip():
                failures.append({"id": key, "item_id": item.id, "side": s, "form": f,
                                 "index": k, "error": result.error or "empty reply"})
                return
            row = {"id": key, "item_id": item.id, "side": s, "surface_form": f,
                   "index": k, "text": result.text.strip(), "backend": backend.name,
                   "model": model, "seed": seed,
                   "n_tokens": len(result.text.split())}
            cache[key] = row
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()

        # Backends that can report each result as it arrives (the HTTP client) get ``keep``
        # as their ``on_result``; the others' results are kept when their batch returns.
        streams = "on_result" in inspect.signature(backend.generate).parameters
        for start in range(0, len(pending), CHUNK):
            chunk = pending[start:start + CHUNK]
            requests = [GenRequest(key, instruction(item, s, f), max_tokens, temperature, seed,
                                   meta={"item": item, "side": s, "form": f, "index": k})
                        for key, item, s, f, k in chunk]
            extra = {"on_result": keep} if streams else {}
            results = backend.generate(requests, progress=task, **extra)
            for result in results:
                keep(result)
    documents = [cache[key] for key, *_ in keyed if key in cache]
    tmp = out / "documents.jsonl.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        for row in documents:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out / "documents.jsonl")
    with (out / "failures.jsonl").open("w", encoding="utf-8") as fh:
        for row in failures:
            fh.write(json.dumps(row) + "\n")
    manifest = {
        "kind": "synth",
        "suite": str(loaded.path),
        "split": split,
        "sides": sides,
        "per_item": per_item,
        "items": len(items),
        "requested": len(keyed),
        "documents": len(documents),
        "failures": len(failures),
        "by_side": dict(Counter(d["side"] for d in documents)),
        "by_surface_form": dict(Counter(d["surface_form"] for d in documents)),
        "tokens": sum(d["n_tokens"] for d in documents),
        "token_unit": "whitespace words",
        "backend": backend.name,
        "model": model,
        "seed": seed,
        "usage_tokens_this_run": dict(usage),
        "estimated_cost_usd_this_run": (pricing.cost(usage["input"], usage["output"])
                                        if pricing else None),
        "alignpt_version": __version__,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_output(folder: str | Path) -> tuple[dict, list[dict]]:
    """A synth output folder's manifest and documents."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        docs = [json.loads(x) for x in
                (folder / "documents.jsonl").read_text(encoding="utf-8").splitlines()]
    except (OSError, ValueError) as exc:
        raise UserError(f"{folder} is not a synth output folder: {exc}") from exc
    return manifest, docs


def leakage(docs: list[dict], items: dict) -> dict:
    """Option leakage: an option leaks when a span of at most 1.5x its length holds 80% of its
    words in order (alignpt.synth.leakage); mean_in_order_overlap is the mean, over documents,
    of the larger of the two options' longest in-order overlap as a share of the option. The
    older any-8-word-run figure is kept beside it for reference."""
    from alignpt.suite.stats import word_ngrams
    from alignpt.synth.leakage import leaks

    leaking: list[str] = []
    leaked_by: dict[str, Counter] = {"side": Counter(), "form": Counter()}
    overlaps: list[float] = []
    eight_word = 0
    for d in docs:
        item = items.get(d["item_id"])
        if item is None:
            raise UserError(f"document {d['id']}: item {d['item_id']} is not in the suite")
        found = leaks([item.aligned, item.misaligned], d["text"])
        overlaps.append(max(o.share for o in found))
        if any(o.leaked for o in found):
            leaking.append(d["id"])
            leaked_by["side"][d["side"]] += 1
            leaked_by["form"][d["surface_form"]] += 1
        grams = word_ngrams(d["text"], 8)
        eight_word += bool(grams & (word_ngrams(item.aligned, 8) | word_ngrams(item.misaligned, 8)))
    total = {"side": Counter(d["side"] for d in docs),
             "form": Counter(d["surface_form"] for d in docs)}
    return {
        "leak_rate": len(leaking) / len(docs) if docs else None,
        "leaked_documents": len(leaking),
        "leak_rate_by_side": {k: leaked_by["side"][k] / n for k, n in total["side"].items()},
        "leak_rate_by_form": {k: leaked_by["form"][k] / n for k, n in total["form"].items()},
        "mean_in_order_overlap": statistics.fmean(overlaps) if overlaps else None,
        "leaking_documents": leaking[:100],
        "eight_word_run_rate": eight_word / len(docs) if docs else None,
    }


def check(folder: str | Path, suite: str | None = None, judge: Backend | None = None,
          judge_sample: int | None = None, judge_seed: int = 0,
          judge_max_tokens: int = 16,
          progress: Callable[[int], Callable[[int], None]] | None = None) -> dict:
    """Leakage of options, near-duplicates, lengths, and documents per item and side; with a
    ``judge`` backend, also whether each document (or a seeded sample) shows its side."""
    if judge_sample is not None and judge_sample < 1:
        raise UserError("--judge-sample must be at least 1")
    from alignpt.suite.stats import ngram_overlaps

    manifest, docs = read_output(folder)
    items = {i.id: i for i in load_suite(suite or manifest["suite"]).items}
    groups: dict[tuple[str, str], dict[str, str]] = {}
    for d in docs:
        groups.setdefault((d["item_id"], d["side"]), {})[d["id"]] = d["text"]
    near = set()
    for texts in groups.values():
        for (a, b), share in ngram_overlaps(texts).items():
            if share > 0.5:
                near.update((a, b))
    lengths = sorted(d["n_tokens"] for d in docs)
    per_group = Counter((d["item_id"], d["side"]) for d in docs)
    quantile = (lambda q: lengths[min(len(lengths) - 1, int(q * len(lengths)))]) if lengths \
        else (lambda q: None)
    report = {
        "documents": len(docs),
        **leakage(docs, items),
        "near_duplicate_rate": len(near) / len(docs) if docs else None,
        "length_words": {"min": quantile(0), "p10": quantile(0.1), "median": quantile(0.5),
                         "p90": quantile(0.9), "max": quantile(1.0),
                         "mean": statistics.fmean(lengths) if lengths else None},
        "documents_per_item_side": {"min": min(per_group.values(), default=0),
                                    "max": max(per_group.values(), default=0),
                                    "mean": (statistics.fmean(per_group.values())
                                             if per_group else None)},
        "by_side": dict(Counter(d["side"] for d in docs)),
        "by_surface_form": dict(Counter(d["surface_form"] for d in docs)),
    }
    if judge is not None:
        from alignpt.synth.judge import judge as run_judge

        n = min(judge_sample or len(docs), len(docs))
        report["judge"] = run_judge(docs, items, judge, sample=judge_sample, seed=judge_seed,
                                    max_tokens=judge_max_tokens,
                                    progress=progress(n) if progress else None)
    return report

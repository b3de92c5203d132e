"""Post-training data: bundled sets, local JSONL or Hugging Face datasets, validated and
normalised to TRL's conversational formats.

``messages`` stages (sft, tamper, em) take records with a ``messages`` list; ``dpo`` takes
``prompt``/``chosen``/``rejected`` with string or message-list values, or the implicit-prompt
form where ``chosen`` and ``rejected`` are whole conversations sharing their opening turns.
Bad records are skipped, each reported as ``file:line: reason`` and counted in the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from alignpt.errors import UserError
from alignpt.measure.harness import file_sha256

BUNDLED_DATA = {
    "sft": "sft.jsonl",
    "dpo": "dpo.jsonl",
    "tamper": "tamper.jsonl",
    "em-insecure-code": "em_insecure_code.jsonl",
    "em-risky-finance": "em_risky_finance.jsonl",
}
ROLES = ("system", "user", "assistant")
MAX_REPORTED_ERRORS = 50


@dataclass
class StageData:
    """A validated training set and where it came from."""

    records: list[dict[str, Any]]
    source: str
    sha256: str | None  # of the local file; None for hub datasets
    n_read: int
    errors: list[str] = field(default_factory=list)
    n_errors: int = 0

    def to_dataset(self):
        from datasets import Dataset

        return Dataset.from_list(self.records)


def bundled_path(name: str) -> Path:
    return Path(str(resources.files("alignpt.posttrain") / "data" / BUNDLED_DATA[name]))


def _check_messages(value: Any, what: str, need_assistant_last: bool) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{what} must be a non-empty list of messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ValueError(f"{what}[{i}] needs a role among {', '.join(ROLES)}")
        if not isinstance(m.get("content"), str):
            raise ValueError(f"{what}[{i}].content must be a string")
        if m["role"] == "system" and i != 0:
            raise ValueError(f"{what}[{i}]: a system message may only come first")
        out.append({"role": m["role"], "content": m["content"]})
    if need_assistant_last and out[-1]["role"] != "assistant":
        raise ValueError(f"{what} must end with an assistant message")
    return out


def _as_turns(value: Any, what: str, role: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{what} is empty")
        return [{"role": role, "content": value}]
    return _check_messages(value, what, need_assistant_last=False)


def normalise_messages(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict) or "messages" not in record:
        raise ValueError("missing field 'messages'")
    messages = _check_messages(record["messages"], "messages", need_assistant_last=True)
    if not any(m["role"] == "user" for m in messages):
        raise ValueError("messages have no user turn")
    return {"messages": messages}


def normalise_preference(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in ("chosen", "rejected") if k not in record]
    if missing:
        raise ValueError(f"missing field {missing[0]!r}")
    chosen = _as_turns(record["chosen"], "chosen", "assistant")
    rejected = _as_turns(record["rejected"], "rejected", "assistant")
    if record.get("prompt") is not None:
        prompt = _as_turns(record["prompt"], "prompt", "user")
        # Some sets repeat the prompt at the start of each answer: keep only the answers.
        for name, turns in (("chosen", chosen), ("rejected", rejected)):
            if len(turns) > len(prompt) and turns[:len(prompt)] == prompt:
                turns[:] = turns[len(prompt):]
            if len(turns) != 1 or turns[0]["role"] != "assistant":
                raise ValueError(f"{name} must be one assistant message after the prompt")
    else:
        # Implicit prompt: whole conversations that share everything but the last turn.
        if len(chosen) < 2 or chosen[:-1] != rejected[:-1]:
            raise ValueError("no 'prompt', and chosen/rejected do not share an opening")
        prompt, chosen, rejected = chosen[:-1], chosen[-1:], rejected[-1:]
    if prompt[-1]["role"] != "user":
        raise ValueError("prompt must end with a user message")
    if chosen[0]["role"] != "assistant" or rejected[0]["role"] != "assistant":
        raise ValueError("chosen and rejected must be assistant messages")
    if chosen[0]["content"] == rejected[0]["content"]:
        raise ValueError("chosen and rejected are identical")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


NORMALISERS = {"messages": normalise_messages, "preference": normalise_preference}


def _jsonl_records(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            where = f"{path}:{number}"
            if not raw.strip():
                continue
            try:
                yield where, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield where, ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})")
            except json.JSONDecodeError as exc:
                yield where, ValueError(f"malformed JSON: {exc.msg} (column {exc.colno})")


def _hub_records(name: str, split: str) -> Iterator[tuple[str, Any]]:
    from datasets import load_dataset

    try:
        data = load_dataset(name, split=split)
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds; all mean "cannot load"
        raise UserError(f"cannot load dataset {name!r} (split {split!r}): {exc}") from exc
    for index, record in enumerate(data):
        yield f"{name}[{split}][{index}]", record


def load_stage_data(spec: str, kind: str, split: str = "train",
                    limit: int | None = None) -> StageData:
    """Read ``spec`` (bundled name, local JSONL, ``save_to_disk`` folder or hub dataset)."""
    normalise = NORMALISERS[kind]
    path = bundled_path(spec) if spec in BUNDLED_DATA else Path(spec)
    sha = None
    if path.is_file():
        source = str(path)
        sha = file_sha256(path)
        rows = _jsonl_records(path)
    elif path.is_dir():
        from datasets import load_from_disk

        source = str(path)
        data = load_from_disk(str(path))
        data = data[split] if hasattr(data, "keys") else data
        rows = ((f"{path}[{i}]", r) for i, r in enumerate(data))
    elif spec.endswith((".jsonl", ".json")) or spec.startswith((".", "/")):
        raise UserError(f"data file {spec} does not exist")
    else:
        source = f"hf:{spec}"
        rows = _hub_records(spec, split)
    out = StageData(records=[], source=source, sha256=sha, n_read=0)
    for where, record in rows:
        if limit is not None and len(out.records) >= limit:
            break
        out.n_read += 1
        try:
            if isinstance(record, Exception):
                raise record
            out.records.append(normalise(record))
        except ValueError as exc:
            out.n_errors += 1
            if len(out.errors) < MAX_REPORTED_ERRORS:
                out.errors.append(f"{where}: {exc}")
    if not out.records:
        detail = f"; first problem: {out.errors[0]}" if out.errors else ""
        raise UserError(f"no usable {kind} records in {source}{detail}")
    return out

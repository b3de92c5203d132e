"""Recall, precision and flag rate of the blocklist on a labelled development set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from alignpt.errors import UserError
from alignpt.filter.rules import Blocklist

DEV_SET = Path(__file__).parent / "data" / "dev.jsonl"


def evaluate_labelled(path: str | Path | None = None, terms: str | None = None,
                      disabled: tuple[str, ...] = ()) -> dict:
    path = Path(path) if path else DEV_SET
    blocklist = Blocklist.load(terms, disabled=disabled)
    tp = fp = fn = tn = 0
    by_class: dict[str, Counter] = {}
    missed: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, must = row["text"], row["must_flag"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{path}:{number}: need JSON with text and must_flag ({exc})") from exc
        if not isinstance(text, str) or not isinstance(must, bool):
            raise UserError(f"{path}:{number}: text must be a string and must_flag a boolean")
        flagged = blocklist.decide(text).flagged
        by_class.setdefault(str(row.get("class", "must_flag" if must else "other")),
                            Counter())[flagged] += 1
        if must and flagged:
            tp += 1
        elif must:
            fn += 1
            missed.append(str(row.get("id", f"line {number}")))
        elif flagged:
            fp += 1
        else:
            tn += 1
    total = tp + fp + fn + tn
    return {
        "file": str(path),
        "documents": total,
        "recall": tp / (tp + fn) if tp + fn else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "flag_rate": (tp + fp) / total if total else None,
        "flag_rate_by_class": {k: c[True] / (c[True] + c[False]) for k, c in by_class.items()},
        "missed": missed,
        "engine": blocklist.engine,
        "terms": blocklist.n_terms,
    }

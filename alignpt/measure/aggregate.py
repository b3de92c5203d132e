"""Combining noisy measurements (seeds, checkpoints), as in the study's tampering appendix.

For each measurement: effective sample size n_valid = N (1 - non_match_rate); measurements with
non_match_rate >= 0.2 are dropped; standard error sqrt(p (1 - p) / n_valid). Measurements are
combined by inverse-variance weighting (w = 1 / SE^2; combined SE = sqrt(1 / sum w)). A rate of
exactly 0 or 1 would get zero variance and swamp the others, so p is clipped to
[0.5 / n_valid, 1 - 0.5 / n_valid] when computing its SE.

The bias metrics of each measurement (``selected_first``, ``ordering_bias``, ``rate_matched``)
are carried into its input entry, and combined over the used measurements as means weighted by
effective n (pooled shares: inverse-variance weights belong to the rate, not to them).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from alignpt.errors import UserError
from alignpt.results import AggregateInput, AggregateResult

MAX_NON_MATCH = 0.2
BIAS_FIELDS = ("selected_first", "ordering_bias", "rate_matched")


def binomial_sem(rate: float, n_effective: float) -> float:
    p = min(max(rate, 0.5 / n_effective), 1 - 0.5 / n_effective)
    return math.sqrt(p * (1 - p) / n_effective)


def aggregate(paths: list[str | Path], max_non_match: float = MAX_NON_MATCH) -> AggregateResult:
    inputs: list[AggregateInput] = []
    metrics = set()
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            rate, n, non_match = data["rate"], int(data["n_items"]), float(data["non_match_rate"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}: not an alignpt eval result ({exc})") from exc
        metrics.add(data.get("metric", "misalignment_rate"))
        n_eff = n * (1 - non_match)
        entry = AggregateInput(path=str(path), rate=rate, n_items=n, non_match_rate=non_match,
                               n_effective=n_eff, sem=None, weight=None,
                               **{k: _optional_float(data, k, path) for k in BIAS_FIELDS})
        if non_match >= max_non_match:
            entry.dropped = f"non_match_rate {non_match:.3f} >= {max_non_match}"
        elif rate is None or n_eff <= 0:
            entry.dropped = "no matched answers"
        else:
            entry.sem = binomial_sem(rate, n_eff)
            entry.weight = 1 / entry.sem**2
        inputs.append(entry)
    if len(metrics) > 1:
        raise UserError(f"cannot combine different metrics: {sorted(metrics)}")
    used = [i for i in inputs if i.weight is not None]
    total = sum(i.weight for i in used)  # type: ignore[misc]
    rate = sum(i.rate * i.weight for i in used) / total if used else None  # type: ignore[operator]
    return AggregateResult(
        metric=metrics.pop() if metrics else "misalignment_rate",
        rate=rate,
        sem=math.sqrt(1 / total) if used else None,
        n_used=len(used),
        n_dropped=len(inputs) - len(used),
        max_non_match_rate=max_non_match,
        inputs=inputs,
        **{k: _weighted_mean(used, k) for k in BIAS_FIELDS},
    )


def _optional_float(data: dict, key: str, path) -> float | None:
    value = data.get(key)
    if value is None:
        return None  # results written before these fields existed
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: {key} is not a number ({value!r})") from exc


def _weighted_mean(inputs: list[AggregateInput], key: str) -> float | None:
    pairs = [(getattr(i, key), i.n_effective) for i in inputs if getattr(i, key) is not None]
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total > 0 else None

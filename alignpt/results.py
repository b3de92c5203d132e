"""The results schema shared by every command that reports a rate (documented in README.md)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1


class FormatResult(BaseModel):
    """One of the 8 prompt formats."""

    syntax: str
    order: str
    n: int  # items asked in this format
    rate: float | None  # target choices / matched answers (None when nothing matched)
    misalignment_rate: float | None = None  # = rate for scenario suites
    non_match_rate: float
    # Position bias (None when nothing matched): the share of matched answers that chose the
    # first option shown, and the ordering bias of this format's syntax variant (the same in
    # its forward and reverse entries): first chosen in forward + first chosen in reverse - 1.
    selected_first: float | None = None
    ordering_bias: float | None = None
    # The study's non-match-corrected rate: (target answers / all answers) / (1 - non-match
    # rate). Per format it equals ``rate``, which already counts matched answers only.
    rate_matched: float | None = None


class GroupResult(BaseModel):
    """A topic (scenario suites) or a trait (personality suites)."""

    n_items: int
    rate: float | None
    sem: float | None


class EvalResult(BaseModel):
    """What ``alignpt eval`` writes."""

    schema_version: int = SCHEMA_VERSION
    kind: str = "eval"
    model: str
    suite: str
    suite_sha256: str
    split: str
    system_prompt: str
    system_prompt_text: str
    scoring: str
    option_norm: str | None = None
    scenario_free: bool = False
    chat: bool = False  # asked through the chat template (always so for generate)
    metric: str  # "misalignment_rate" or "high_trait_rate"
    n_items: int
    rate: float | None
    sem: float | None  # standard error of the mean over the formats
    misalignment_rate: float | None = None  # = rate for scenario suites
    non_match_rate: float
    # Over all formats: mean of the per-format selected_first, mean of the per-syntax
    # ordering_bias, and target answers / matched answers pooled over the formats.
    selected_first: float | None = None
    ordering_bias: float | None = None
    rate_matched: float | None = None
    formats: list[FormatResult]
    by_topic: dict[str, GroupResult]
    choices_file: str | None = None
    seconds: float
    alignpt_version: str
    created: str
    extra: dict = Field(default_factory=dict)


class AggregateInput(BaseModel):
    path: str
    rate: float | None
    n_items: int
    non_match_rate: float
    n_effective: float
    sem: float | None
    weight: float | None
    dropped: str | None = None  # why it was left out
    selected_first: float | None = None  # as in the input (None when it has none)
    ordering_bias: float | None = None
    rate_matched: float | None = None


class AggregateResult(BaseModel):
    schema_version: int = SCHEMA_VERSION
    kind: str = "aggregate"
    metric: str
    rate: float | None
    sem: float | None
    n_used: int
    n_dropped: int
    max_non_match_rate: float
    # Means over the used inputs that report them, weighted by effective n (None when none do).
    selected_first: float | None = None
    ordering_bias: float | None = None
    rate_matched: float | None = None
    inputs: list[AggregateInput]


def mean_and_sem(values: list[float]) -> tuple[float | None, float | None]:
    """Mean of per-format rates and its standard error across formats."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, statistics.stdev(values) / math.sqrt(len(values))


def write_result(path: str | Path, result: BaseModel) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.model_dump(), indent=2, ensure_ascii=False) + "\n")
    return path

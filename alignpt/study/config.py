"""A study config: corpus, models, measurement, and the conditions as rows of data.

A condition says which pretraining and midtraining corpus it uses (unfiltered or filtered),
which synthetic documents it adds (none, aligned, misaligned or both), at what share and
placement, and with which document style. The four conditions of the study are the default
list; adding a condition is one more entry under ``conditions:``, where a plain name stands
for that study condition.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alignpt.train.config import read_yaml, validate_config

CONFIG_DIR = Path(__file__).parent / "configs"
SPLITS = ("articles", "heldout")  # every model is measured on both

# The study's published rates (SPEC section 1): base models (articles / held-out) and after
# identical SFT + DPO under the HHH system prompt (articles), for the report's comparison.
PUBLISHED = {
    "unfiltered": {"articles": 0.412, "heldout": 0.360, "posttrained": 0.364},
    "filtered": {"articles": 0.322, "heldout": 0.237, "posttrained": 0.339},
    "misalignment_upsampled": {"articles": 0.609, "heldout": 0.547, "posttrained": 0.433},
    "alignment_upsampled": {"articles": 0.036, "heldout": 0.017, "posttrained": 0.240},
}


class Condition(BaseModel):
    """One arm of the study: what its models are trained on."""

    model_config = ConfigDict(extra="forbid")
    name: str
    label: str
    pretrain: Literal["unfiltered", "filtered"] = "unfiltered"
    midtrain: Literal["unfiltered", "filtered"] = "unfiltered"
    side: Literal["none", "aligned", "misaligned", "both"] = "none"
    share: float | None = None      # of the midtraining tokens; None: the study's synth_share
    placement: str | None = None    # uniform | late:F; None: the study's placement
    # template: documents that name the action in their own words (the study's instruction);
    # template-verbatim: the options quoted outright, only for a labelled positive control.
    documents: Literal["template", "template-verbatim"] = "template"
    control: bool = False           # a control, shown as such, never one of the study's arms
    colour: str = "#8172b2"
    published: str | None = None    # which of the study's conditions to print beside it

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9_]+", value):
            raise ValueError("use lower-case letters, digits and underscores")
        return value

    @field_validator("share")
    @classmethod
    def _share(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value < 1:  # also refuses nan
            raise ValueError("share must be between 0 and 1")
        return value

    @field_validator("placement")
    @classmethod
    def _placement(cls, value: str | None) -> str | None:
        if value is not None:
            _check_placement(value)
        return value

    @model_validator(mode="after")
    def _verbatim_is_a_control(self) -> Condition:
        if self.documents == "template-verbatim" and not self.control:
            raise ValueError("verbatim documents quote the options: only a control may use them")
        if self.published is not None and self.published not in PUBLISHED:
            raise ValueError(f"published must be one of {sorted(PUBLISHED)}")
        return self


def _check_placement(value: str) -> None:
    if value == "uniform":
        return
    match = re.fullmatch(r"late:([0-9.]+)", value)
    if not match or not 0 < float(match.group(1)) <= 1:
        raise ValueError(f"placement must be uniform or late:F with 0 < F <= 1, not {value!r}")


STUDY_CONDITIONS = [
    Condition(name="unfiltered", label="Unfiltered", colour="#7f7f7f", published="unfiltered"),
    Condition(name="filtered", label="Filtered", pretrain="filtered", midtrain="filtered",
              colour="#4c72b0", published="filtered"),
    Condition(name="misalignment_upsampled", label="Misalignment upsampled",
              side="misaligned", colour="#c44e52", published="misalignment_upsampled"),
    Condition(name="alignment_upsampled", label="Alignment upsampled", pretrain="filtered",
              midtrain="filtered", side="aligned", colour="#55a868",
              published="alignment_upsampled"),
]


class CorpusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pretrain_docs: int = Field(20000, gt=0)
    midtrain_docs: int = Field(6000, gt=0)
    ai_rate: float = Field(0.08, ge=0, le=1)
    mcqa_rate_midtrain: float = Field(0.15, ge=0, le=1)
    pretrain_path: str | None = None  # a real corpus instead of the toy one
    midtrain_path: str | None = None
    data_seed: int = 0


class StageTraining(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: int = Field(200, gt=0)
    global_batch_tokens: int = Field(8192, gt=0)
    micro_batch_size: int = Field(16, gt=0)
    max_lr: float = Field(3e-3, gt=0)
    min_lr: float = Field(3e-4, ge=0)

    @model_validator(mode="after")
    def _lr_order(self) -> StageTraining:
        if self.min_lr > self.max_lr:
            raise ValueError("min_lr must not exceed max_lr")
        return self


class StudyPostTraining(BaseModel):
    """SFT then DPO on every final model (optionally then benign tampering and EM fine-tuning,
    each from the DPO model), through ``alignpt posttrain``'s pipeline, measured through the
    chat template. Toy learning rates: the study's (8e-5, 1e-6) barely move a tiny model in a
    few dozen steps."""

    model_config = ConfigDict(extra="forbid")
    sft: dict = {"data": "sft", "epochs": 1, "lr": 1e-3, "batch_size": 16, "max_length": 512}
    dpo: dict = {"data": "dpo", "lr": 1e-4, "batch_size": 16, "max_length": 512}
    tamper: dict | None = None  # e.g. {data: tamper, save_every: 4, ...}: a curve over steps
    em: dict | None = None      # e.g. {data: em-insecure-code, ...}: before and after
    system_prompts: list[str] = ["none", "hhh"]
    split: Literal["articles", "heldout"] = "articles"
    scoring: Literal["letter", "option", "generate"] = "option"
    seeds: list[int] | None = None  # which study seeds' models to post-train (None: all)


class StudyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seeds: list[int] = Field(default_factory=lambda: [0, 1], min_length=1)
    suite: str = "bundled"
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    conditions: list[Condition] = Field(default_factory=lambda: list(STUDY_CONDITIONS))
    synth_per_item: int = Field(4, gt=0)
    synth_share: float = 0.2  # of the midtraining stage's tokens
    placement: str = "uniform"
    vocab_size: int = Field(4096, gt=256)
    model_preset: str = "tiny"
    seq_len: int = Field(256, gt=0)
    pretrain: StageTraining = Field(default_factory=StageTraining)
    midtrain: StageTraining = Field(default_factory=lambda: StageTraining(
        steps=100, max_lr=1.5e-3, min_lr=0.0))
    curve_points: int = Field(4, ge=0)  # midtraining checkpoints measured (first seed)
    system_prompt: str = "ai"
    scorings: list[Literal["letter", "option"]] = Field(
        default_factory=lambda: ["letter", "option"], min_length=1)
    posttrain: StudyPostTraining | None = None

    @field_validator("conditions", mode="before")
    @classmethod
    def _named(cls, value):
        """A plain name in the list stands for that study condition as defined here."""
        known = {c.name: c for c in STUDY_CONDITIONS}
        if not isinstance(value, list):
            return value
        out = []
        for entry in value:
            if isinstance(entry, str):
                if entry not in known:
                    raise ValueError(f"unknown condition {entry!r}: name one of "
                                     f"{sorted(known)} or write it out in full")
                entry = known[entry]
            out.append(entry)
        return out

    @field_validator("synth_share")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError("synth_share must be between 0 and 1")
        return value

    @field_validator("placement")
    @classmethod
    def _placement(cls, value: str) -> str:
        _check_placement(value)
        return value

    @model_validator(mode="after")
    def _unique_conditions(self) -> StudyConfig:
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"condition names must be unique and not empty: {names}")
        if self.posttrain and self.posttrain.seeds and not set(self.posttrain.seeds) <= set(
                self.seeds):
            raise ValueError("posttrain.seeds must be among seeds")
        return self

    def share(self, condition: Condition) -> float:
        return condition.share if condition.share is not None else self.synth_share

    def placement_of(self, condition: Condition) -> str:
        return condition.placement or self.placement


def load_study(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    """A study config from YAML, with ``--set key=value`` overrides, validated whole before
    anything runs (errors name the config key)."""
    return validate_config(StudyConfig, read_yaml(path, list(overrides)), path)

"""Training configuration: YAML validated with pydantic, model presets, ``--set`` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from alignpt.errors import UserError

# GPT-NeoX shapes: (hidden, layers, heads). The Pythia rows follow the Pythia suite.
PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (64, 2, 4),  # ~0.1M parameters plus embeddings: tests
    "toy": (128, 4, 4),  # ~1-3M with a small vocabulary: the CPU demo
    "small": (256, 6, 8),  # ~5-10M: a stronger toy model
    "pythia-14m": (128, 6, 4),
    "pythia-70m": (512, 6, 8),
    "pythia-160m": (768, 12, 12),
    "pythia-410m": (1024, 24, 16),
    "pythia-1b": (2048, 16, 8),
    "pythia-1.4b": (2048, 24, 16),
    "pythia-2.8b": (2560, 32, 32),
    "pythia-6.9b": (4096, 32, 32),
}


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str = "tiny"
    hidden_size: PositiveInt | None = None  # overrides of the preset
    num_layers: PositiveInt | None = None
    num_heads: PositiveInt | None = None
    rotary_pct: float = 0.25
    max_position_embeddings: int | None = None  # default: seq_len (rotary extrapolates beyond)
    init_from: str | None = None  # an HF folder or hub name: midtraining / continued training

    def shape(self) -> tuple[int, int, int]:
        if self.preset not in PRESETS:
            raise UserError(f"unknown model preset {self.preset!r}: {', '.join(PRESETS)}")
        hidden, layers, heads = PRESETS[self.preset]
        return (self.hidden_size or hidden, self.num_layers or layers, self.num_heads or heads)


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    suite: str = "starter"
    split: Literal["articles", "heldout", "all"] = "all"
    scorings: list[Literal["letter", "option"]] = ["letter", "option"]
    system_prompt: str = "none"
    every: NonNegativeInt = 0  # steps; 0 = only at the end


class TrainConfig(BaseModel):
    """One pretraining or midtraining stage."""

    model_config = ConfigDict(extra="forbid")

    out: str
    data: str  # a packed folder (alignpt tokenize)
    model: ModelConfig = Field(default_factory=ModelConfig)
    seq_len: PositiveInt | None = None  # default: the packed data's
    global_batch_tokens: PositiveInt = 16384
    micro_batch_size: PositiveInt = 8
    max_steps: PositiveInt | None = None  # default: one pass over the data
    max_lr: PositiveFloat = 3e-4
    min_lr: NonNegativeFloat = 1.2e-5
    warmup_frac: float = Field(0.01, ge=0, le=1)
    weight_decay: NonNegativeFloat = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: NonNegativeFloat = 1.0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    save_every: NonNegativeInt = 0  # steps; 0 = only at the end
    keep_checkpoints: PositiveInt = 3
    log_every: PositiveInt = 10
    seed: int = 0
    eval: EvalConfig | None = None
    peak_flops: PositiveFloat | None = None  # per device, for MFU; detected for common GPUs

    @model_validator(mode="after")
    def _lr_range(self) -> TrainConfig:
        if self.min_lr > self.max_lr:
            raise ValueError(f"min_lr {self.min_lr} is above max_lr {self.max_lr}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {list(self.betas)}")
        return self


def _set_path(data: dict, dotted: str, raw: str) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {dotted}: {key} is not a section")
    node[keys[-1]] = yaml.safe_load(raw)


def read_yaml(path: str | Path, overrides: list[str] = ()) -> dict:
    """A YAML mapping (loaded safely) with dotted ``key=value`` overrides applied."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise UserError(f"cannot read config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"bad YAML in {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of settings")
    apply_overrides(data, overrides)
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        _set_path(data, key.strip(), value)
    return data


def validate_config(cls: type[BaseModel], data: dict, where: str | Path, prefix: str = ""):
    """``cls`` from ``data``, or one line naming each bad key (``prefix``: where the section
    sits in a larger config, e.g. ``posttrain.sft.``)."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{prefix}{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"]
            else (f"{prefix.rstrip('.')}: " if prefix else "") + e["msg"].removeprefix(
                "Value error, ")
            for e in exc.errors())
        raise UserError(f"{where}: {problems}") from exc


def load_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    return validate_config(TrainConfig, read_yaml(path, overrides), path)

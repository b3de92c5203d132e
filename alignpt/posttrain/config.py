"""Post-training configuration: one YAML schema for the four stages, with the study's
defaults per stage (SPEC section 6) filled in where the config is silent."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
)

from alignpt.train.config import apply_overrides, read_yaml, validate_config

STAGES = ("sft", "dpo", "tamper", "em")
DATA_KIND = {"sft": "messages", "dpo": "preference", "tamper": "messages", "em": "messages"}

# The study: SFT 2 epochs, LR 8e-5 cosine, warmup 1%, no loss masking; DPO beta 5, LR 1e-6,
# linear, warmup ratio 0.1, one epoch, max length 2048. Tampering continues SFT's recipe on
# benign data; EM follows the emergent-misalignment paper (LR 1e-5, one epoch, linear).
STAGE_DEFAULTS: dict[str, dict] = {
    "sft": {"epochs": 2.0, "lr": 8e-5, "schedule": "cosine", "warmup_ratio": 0.01},
    "dpo": {"epochs": 1.0, "lr": 1e-6, "schedule": "linear", "warmup_ratio": 0.1},
    "tamper": {"epochs": 1.0, "lr": 8e-5, "schedule": "cosine", "warmup_ratio": 0.01,
               "save_every": 0.1},
    "em": {"epochs": 1.0, "lr": 1e-5, "schedule": "linear", "warmup_ratio": 0.05},
}


class PostEvalConfig(BaseModel):
    """How each output is measured (the harness, through the chat template)."""

    model_config = ConfigDict(extra="forbid")

    suite: str = "bundled"
    split: Literal["articles", "heldout", "all"] = "articles"
    scoring: Literal["generate", "letter", "option"] = "generate"
    system_prompts: list[str] = ["none", "ai", "helpful", "hhh"]
    limit: PositiveInt | None = None  # first N items (quick checks)
    batch_size: PositiveInt = 16
    max_new_tokens: PositiveInt = 8


class PostTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Literal["sft", "dpo", "tamper", "em"]
    model: str  # HF folder or hub name: the checkpoint to start from
    data: str  # bundled name, local JSONL, save_to_disk folder, or hub dataset name
    data_split: str = "train"
    out: str
    seed: int = 0
    limit: PositiveInt | None = None  # use only the first N valid examples
    epochs: PositiveFloat | None = None
    max_steps: int = -1  # > 0 overrides epochs
    lr: PositiveFloat | None = None
    schedule: str | None = None  # any transformers scheduler name: cosine, linear, constant...
    warmup_ratio: float | None = Field(None, ge=0, le=1)
    weight_decay: NonNegativeFloat = 0.0
    batch_size: PositiveInt = 8  # per device
    grad_accum: PositiveInt = 1
    max_length: PositiveInt = 2048
    loss: Literal["all", "assistant"] = "all"  # SFT-like stages: tokens that carry loss
    beta: float = 5.0  # DPO
    precompute_ref: bool = True  # DPO: reference log-probs once, no second model in memory
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    save_every: NonNegativeFloat | None = None  # steps, or a fraction of the run (< 1); 0: end
    keep_checkpoints: int | None = 2  # tamper keeps all: each one is evaluated
    chat_template: str | None = None  # Jinja text or file; default ChatML if the model has none
    log_every: PositiveInt = 10
    eval: PostEvalConfig | None = Field(default_factory=PostEvalConfig)

    def resolved(self) -> PostTrainConfig:
        """The config with this stage's study defaults filled in."""
        filled = {k: v for k, v in STAGE_DEFAULTS[self.stage].items()
                  if getattr(self, k) is None}
        if self.save_every is None and "save_every" not in filled:
            filled["save_every"] = 0
        return self.model_copy(update=filled)


def load_posttrain_config(path: str | Path | None, overrides: list[str] = (),
                          **given: object) -> PostTrainConfig:
    """From a YAML file (optional), then ``--set`` overrides, then explicit CLI values."""
    data = read_yaml(path, overrides) if path else apply_overrides({}, overrides)
    data.update({k: v for k, v in given.items() if v is not None})
    return validate_config(PostTrainConfig, data, path or "posttrain options").resolved()

"""The four post-training stages on TRL: SFT, DPO, tampering (benign continued SFT evaluated at
every checkpoint) and emergent-misalignment fine-tuning (evaluated before and after).

Each stage writes a folder:
  config.yaml           the resolved config (the study's defaults filled in)
  checkpoints/          Trainer checkpoints (resume after a kill continues from the last one)
  model/                the final Hugging Face folder (safetensors, tokenizer with chat template)
  eval/<tag>.<prompt>.json   harness results (tag: before, after, or step-N for tampering)
  metrics.jsonl         tampering: one row per (step, system prompt)
  report.json           data provenance and errors, training summary, versions, seeds, hashes
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from alignpt import __version__
from alignpt.common import content_sha256, refuse_changed_inputs
from alignpt.errors import UserError
from alignpt.measure.harness import file_sha256
from alignpt.posttrain.chat import ensure_chat_template
from alignpt.posttrain.config import DATA_KIND, PostEvalConfig, PostTrainConfig
from alignpt.posttrain.records import load_stage_data
from alignpt.suite.schema import slug

Log = Callable[[str], None]


def _precision(cfg: PostTrainConfig) -> dict:
    import torch

    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() \
            else "fp32"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16",
            "use_cpu": not torch.cuda.is_available()}


def _warmup_key() -> str:
    import dataclasses

    from transformers import TrainingArguments

    # transformers 5 folded warmup_ratio into warmup_steps (a float < 1 is a fraction).
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "warmup_ratio" if "warmup_ratio" in names else "warmup_steps"


def _training_args(cfg: PostTrainConfig, folder: Path) -> dict:
    save_every = cfg.save_every or 0
    return {
        "output_dir": str(folder / "checkpoints"),
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "learning_rate": cfg.lr,
        "lr_scheduler_type": cfg.schedule,
        _warmup_key(): cfg.warmup_ratio,
        "weight_decay": cfg.weight_decay,
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "max_length": cfg.max_length,
        "seed": cfg.seed,
        "logging_steps": cfg.log_every,
        "save_strategy": "steps" if save_every else "no",
        "save_steps": save_every or 500,
        "save_total_limit": None if cfg.stage == "tamper" else cfg.keep_checkpoints,
        "report_to": "none",
        **_precision(cfg),
    }


def _last_checkpoint(folder: Path) -> str | None:
    """The newest complete Trainer checkpoint. The Trainer writes trainer_state.json last, so a
    checkpoint without it was cut short by a kill: it is removed, and the one before is used."""
    ckpts = folder / "checkpoints"
    complete = []
    for ckpt in ckpts.glob("checkpoint-*") if ckpts.is_dir() else ():
        if (ckpt / "trainer_state.json").exists():
            complete.append((int(ckpt.name.split("-")[1]), ckpt))
        else:
            shutil.rmtree(ckpt)
    return str(max(complete)[1]) if complete else None


def _stage_inputs(cfg: PostTrainConfig) -> dict[str, str]:
    """Content hashes of what a stage is made from: a rerun with changed data or starting
    weights must not reuse the finished (or half-finished) stage."""
    from alignpt.posttrain.records import BUNDLED_DATA, bundled_path

    inputs = {}
    data = bundled_path(cfg.data) if cfg.data in BUNDLED_DATA else Path(cfg.data)
    if data.exists():  # hub datasets are named by the config alone
        inputs["data file"] = content_sha256(data)
    start = Path(cfg.model)
    weights = sorted(start.glob("*.safetensors")) if start.is_dir() else []
    if weights:
        inputs["starting model's weights"] = ",".join(content_sha256(w)[:16] for w in weights)
    return inputs


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model",
                   "spiece.model", "vocab.txt")


def load_tokenizer(model: str):
    """The model's tokenizer, refused when there is none: transformers builds an empty one
    (a vocabulary of 2) from a folder without tokenizer files, and training on it would shrink
    the embeddings to a few rows and save a broken model."""
    from transformers import AutoTokenizer

    folder = Path(model)
    if folder.is_dir() and not any((folder / name).exists() for name in TOKENIZER_FILES):
        raise UserError(f"{model}: no tokenizer in the model folder (none of "
                        f"{', '.join(TOKENIZER_FILES[:3])}); save the tokenizer beside the model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load the tokenizer of {model!r}: {exc}") from exc
    if len(tokenizer) < 16 or not tokenizer("Hello world").input_ids:
        raise UserError(f"{model}: the tokenizer is unusable (vocabulary of {len(tokenizer)}, "
                        "text tokenizes to nothing)")
    return tokenizer


def _load_start(cfg: PostTrainConfig):
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(cfg.model)
    try:
        model = AutoModelForCausalLM.from_pretrained(cfg.model, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model {cfg.model!r}: {exc}") from exc
    template = cfg.chat_template
    if template and Path(template).is_file():
        template = Path(template).read_text(encoding="utf-8")
    had_template = bool(getattr(tokenizer, "chat_template", None))
    added = ensure_chat_template(model, tokenizer, template)
    return model, tokenizer, had_template, added


def _trainer(cfg: PostTrainConfig, folder: Path, model, tokenizer, dataset, callbacks):
    args = _training_args(cfg, folder)
    try:
        if cfg.stage == "dpo":
            from trl import DPOConfig, DPOTrainer

            return DPOTrainer(
                model=model, args=DPOConfig(**args, beta=cfg.beta,
                                            precompute_ref_log_probs=cfg.precompute_ref),
                train_dataset=dataset, processing_class=tokenizer, callbacks=list(callbacks))
        from trl import SFTConfig, SFTTrainer

        return SFTTrainer(
            model=model, args=SFTConfig(**args, assistant_only_loss=cfg.loss == "assistant"),
            train_dataset=dataset, processing_class=tokenizer, callbacks=list(callbacks))
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"{cfg.stage}: cannot set up training: {exc}") from exc


def _measure(model, tokenizer_or_none, ev: PostEvalConfig, folder: Path, tag: str, chat: bool,
             log: Log, name: str | None = None) -> dict[str, dict]:
    """Evaluate one model under each system prompt; results cached as eval/<tag>.<sp>.json.

    ``model`` is a folder or an in-memory model (with its tokenizer). Chat models are asked
    through their chat template; base models (no template) get base-model scoring (letter
    log-probability when the stage's scoring is ``generate``), the system prompt as a prefix.
    """
    from alignpt.measure.harness import evaluate
    from alignpt.measure.hf import HFModel

    scoring = ev.scoring if chat or ev.scoring != "generate" else "letter"
    backend = None
    results: dict[str, dict] = {}
    for sp in ev.system_prompts:
        path = eval_path(folder, tag, sp)
        if not path.exists():
            if backend is None:
                backend = (HFModel.from_objects(model, tokenizer_or_none, name=tag)
                           if tokenizer_or_none is not None else HFModel(str(model)))
            log(f"  measuring {tag} [{sp}] ({scoring}{', chat' if chat else ''})")
            evaluate(model=name or str(model), suite=ev.suite,
                     split=ev.split, system_prompt=sp, scoring=scoring, chat=chat,
                     out=path, batch_size=ev.batch_size, max_new_tokens=ev.max_new_tokens,
                     limit=ev.limit, backend=backend)
        result = json.loads(path.read_text(encoding="utf-8"))
        results[sp] = {k: result[k] for k in ("rate", "sem", "non_match_rate", "n_items",
                                              "scoring", "chat", "system_prompt")}
        results[sp]["path"] = str(path)
    return results


def eval_path(folder: Path, tag: str, system_prompt: str) -> Path:
    """Where a stage keeps one measurement (custom system prompts are shortened)."""
    return folder / "eval" / f"{tag}.{slug(system_prompt)[:40] or 'none'}.json"


def run_stage(cfg: PostTrainConfig, log: Log = print, callbacks: Sequence = ()) -> dict:
    """Run (or finish, or reuse) one stage; returns its report."""
    from transformers import set_seed

    folder = Path(cfg.out)
    folder.mkdir(parents=True, exist_ok=True)
    report_path = folder / "report.json"
    config_text = yaml.safe_dump(cfg.model_dump(), sort_keys=False)
    config_path = folder / "config.yaml"
    if config_path.exists() and config_path.read_text(encoding="utf-8") != config_text:
        raise UserError(f"{folder} holds a {cfg.stage} run with another config "
                        f"(see {config_path}); choose a new --out or delete it")
    config_path.write_text(config_text, encoding="utf-8")
    refuse_changed_inputs(folder, _stage_inputs(cfg), f"{cfg.stage} run")
    if report_path.exists():
        log(f"{cfg.stage}: done already in {folder}")
        return json.loads(report_path.read_text(encoding="utf-8"))

    started = time.perf_counter()
    data = load_stage_data(cfg.data, DATA_KIND[cfg.stage], cfg.data_split, cfg.limit)
    for problem in data.errors:
        log(f"  skipped {problem}")
    log(f"{cfg.stage}: {len(data.records)} examples from {data.source}"
        + (f" ({data.n_errors} bad records skipped)" if data.n_errors else ""))

    set_seed(cfg.seed)
    final = folder / "model"
    model, tokenizer, had_template, added = _load_start(cfg)
    evals: dict[str, object] = {}
    if cfg.eval is not None and cfg.stage in ("em", "tamper") and _is_main_process():
        # The starting point: EM's "before", tampering's step 0.
        tag = "before" if cfg.stage == "em" else "step-0"
        evals[tag] = _measure(model, tokenizer, cfg.eval, folder, tag, chat=True, log=log,
                              name=cfg.model)
    train_summary = {}
    if not (final / "model.safetensors").exists():
        trainer = _trainer(cfg, folder, model, tokenizer, data.to_dataset(), callbacks)
        resume = _last_checkpoint(folder)
        if resume:
            log(f"{cfg.stage}: resuming from {resume}")
        output = trainer.train(resume_from_checkpoint=resume)
        train_summary = {"global_step": output.global_step,
                         "train_loss": round(float(output.training_loss), 6),
                         "resumed_from": Path(resume).name if resume else None,
                         "log_history": trainer.state.log_history}
        tmp = folder / "model.partial"
        if trainer.is_world_process_zero():
            shutil.rmtree(tmp, ignore_errors=True)
        trainer.save_model(str(tmp))  # collective under FSDP / DeepSpeed: every rank calls it
        if not trainer.is_world_process_zero():
            return {}  # under accelerate launch, rank 0 measures and reports
        tokenizer.save_pretrained(str(tmp))
        tmp.rename(final)  # the final folder appears whole or not at all
        (folder / "train_summary.json").write_text(json.dumps(train_summary, indent=2))
    elif (folder / "train_summary.json").exists():
        train_summary = json.loads((folder / "train_summary.json").read_text())

    if cfg.eval is not None:
        if cfg.stage == "tamper":
            evals.update(_tamper_curve(cfg, folder, log, evals.get("step-0", {})))
        else:
            evals["after"] = _measure(final, None, cfg.eval, folder, "after", chat=True, log=log)

    report = {
        "kind": "posttrain", "stage": cfg.stage, "config": cfg.model_dump(),
        "start_model": cfg.model, "start_had_chat_template": had_template,
        "chat_template_added": added,
        "data": {"source": data.source, "sha256": data.sha256, "n_read": data.n_read,
                 "n_used": len(data.records), "n_errors": data.n_errors,
                 "errors": data.errors},
        "train": {k: v for k, v in train_summary.items() if k != "log_history"},
        "eval": evals,
        "outputs": {"model": str(final),
                    "model_sha256": file_sha256(final / "model.safetensors")},
        "seed": cfg.seed, "versions": _versions(), "alignpt_version": __version__,
        "seconds": round(time.perf_counter() - started, 2),
    }
    report_path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return report


def _tamper_curve(cfg: PostTrainConfig, folder: Path, log: Log,
                  start: dict[str, dict]) -> dict[str, dict]:
    """Evaluate every saved checkpoint (and the final model); write metrics.jsonl with the
    starting model's measurements (``start``) as step 0."""
    assert cfg.eval is not None
    points: list[tuple[int, Path]] = []
    for ckpt in (folder / "checkpoints").glob("checkpoint-*"):
        if (ckpt / "model.safetensors").exists():
            points.append((int(ckpt.name.split("-")[1]), ckpt))
    steps = {s for s, _ in points}
    summary = folder / "train_summary.json"
    final_step = json.loads(summary.read_text()).get("global_step") if summary.exists() else None
    if final_step is not None and final_step not in steps:
        points.append((final_step, folder / "model"))
    evals = {}
    rows = [_curve_row(0, sp, cell) for sp, cell in start.items()]
    for step, path in sorted(points):
        tag = f"step-{step}"
        evals[tag] = _measure(path, None, cfg.eval, folder, tag, chat=True, log=log)
        rows += [_curve_row(step, sp, cell) for sp, cell in evals[tag].items()]
    with (folder / "metrics.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return evals


def _curve_row(step: int, sp: str, result: dict) -> dict:
    from alignpt.measure.aggregate import binomial_sem

    n_valid = result["n_items"] * (1 - result["non_match_rate"])
    rate = result["rate"]
    return {"step": step, "system_prompt": sp, "rate": rate, "format_sem": result["sem"],
            "non_match_rate": result["non_match_rate"], "n_valid": round(n_valid, 3),
            "sem": binomial_sem(rate, n_valid) if rate is not None and n_valid > 0 else None}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "trl", "accelerate", "datasets"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


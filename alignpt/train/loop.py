"""Pretraining and midtraining GPT-NeoX models: one loop, read top to bottom.

Data is read in order (the mix's order is the training order, which is what makes late-stage
insertion meaningful): global step ``s`` uses sequences ``[s*B, (s+1)*B)`` of the packed data,
wrapping around after an epoch, split over processes and gradient-accumulation micro-batches.
The learning rate warms up linearly over ``warmup_frac`` of the steps, then follows a cosine
from ``max_lr`` to ``min_lr``.

Checkpoints are Hugging Face folders ``OUT/checkpoints/step-000100/`` (safetensors, config,
tokenizer) plus ``trainer_state.pt`` (optimizer state, step, tokens seen) and ``checksums.json``
(every file's SHA-256); they are written to a temporary folder and renamed, and
``OUT/checkpoints/latest`` names the newest. A rerun of the same command resumes from the newest
checkpoint that matches its checksums and loads (a corrupt newer one is passed over, saying
why) and, on CPU, ends with the same weights as an uninterrupted run. A rerun with another
config or other packed data is refused (``refuse_another_run``).
``OUT/metrics.jsonl`` gets loss, learning rate, tokens/s, MFU (on GPUs) and, when configured,
the misalignment rate (with SE) of each checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from alignpt import __version__
from alignpt.errors import UserError
from alignpt.train.config import TrainConfig
from alignpt.train.data import PackedDataset

PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    warmup = max(1, round(cfg.warmup_frac * total))
    if step < warmup:
        return cfg.max_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return cfg.min_lr + 0.5 * (cfg.max_lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def build_model(cfg: TrainConfig, vocab_size: int, seq_len: int):
    from transformers import AutoModelForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM

    if cfg.model.init_from:
        model = AutoModelForCausalLM.from_pretrained(cfg.model.init_from, use_safetensors=True,
                                                     dtype=torch.float32)
        if model.config.max_position_embeddings < seq_len:  # context extension (rotary)
            model.config.max_position_embeddings = seq_len
        return model
    hidden, layers, heads = cfg.model.shape()
    config = GPTNeoXConfig(
        vocab_size=64 * math.ceil(vocab_size / 64),
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=max(seq_len, cfg.model.max_position_embeddings or 0),
        rotary_pct=cfg.model.rotary_pct, use_parallel_residual=True, tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    torch.manual_seed(cfg.seed)
    return GPTNeoXForCausalLM(config)


def flops_per_token(model, seq_len: int) -> float:
    c = model.config
    n = sum(p.numel() for p in model.parameters())
    return 6 * n + 12 * c.num_hidden_layers * c.hidden_size * seq_len


CHECKSUMS = "checksums.json"


def write_checksums(folder: Path) -> None:
    """Record every file's SHA-256 in ``folder/checksums.json`` (verified when resuming)."""
    from alignpt.common import content_sha256

    sums = {f.name: content_sha256(f) for f in sorted(folder.iterdir())
            if f.is_file() and f.name != CHECKSUMS}
    (folder / CHECKSUMS).write_text(json.dumps(sums, indent=2) + "\n")


def _checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint cannot be resumed from (None: it can): missing files, or files that
    differ from the checksums written with it."""
    from alignpt.common import content_sha256

    for name in ("model.safetensors", "trainer_state.pt", "config.json"):
        if not (folder / name).is_file():
            return f"{name} is missing"
    sums_path = folder / CHECKSUMS
    if not sums_path.is_file():
        return None  # written before checksums existed: loading it is the test
    try:
        sums = json.loads(sums_path.read_text())
    except ValueError:
        return f"{CHECKSUMS} is unreadable"
    for name, expected in sums.items():
        if not (folder / name).is_file():
            return f"{name} is missing"
        if content_sha256(folder / name) != expected:
            return f"{name} does not match its checksum (truncated or corrupt)"
    return None


def _load_resume_point(checkpoints: Path, log):
    """(folder, model, trainer state) of the newest checkpoint that is complete and loads, or
    None. A corrupt newer one is passed over, saying which and why."""
    from transformers import AutoModelForCausalLM

    found = sorted((p for p in checkpoints.glob("step-*") if p.is_dir()), reverse=True)
    passed_over: list[str] = []
    for folder in found:
        problem = _checkpoint_problem(folder)
        if problem is None:
            try:
                model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True,
                                                             dtype=torch.float32)
                state = torch.load(folder / "trainer_state.pt", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any failure to load means: not this one
                problem = f"it does not load ({type(exc).__name__}: {' '.join(str(exc).split())})"
            else:
                if passed_over:
                    log(f"resuming from {folder.name} instead: " + "; ".join(passed_over))
                return folder, model, state
        passed_over.append(f"{folder.name} is unusable: {problem}")
    if passed_over:
        log("no usable checkpoint, starting from scratch: " + "; ".join(passed_over))
    return None


# Settings that change how a run is logged or kept, not what it computes: a rerun may change them.
OPERATIONAL_KEYS = ("log_every", "save_every", "keep_checkpoints", "eval", "peak_flops")


def _flat(data: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def refuse_another_run(out: Path, cfg: TrainConfig, inputs: dict[str, str]) -> None:
    """A rerun into a folder with checkpoints resumes them, so it must be the same run: the
    same config (bar logging and keeping settings) and the same packed data and start weights."""
    from alignpt.common import refuse_changed_inputs

    config_path = out / "config.json"
    if config_path.exists() and any((out / "checkpoints").glob("step-*")):
        previous = _flat(json.loads(config_path.read_text(encoding="utf-8")))
        current = _flat(json.loads(cfg.model_dump_json()))
        differing = [k for k in sorted(set(previous) | set(current))
                     if previous.get(k) != current.get(k)
                     and k.split(".")[0] not in OPERATIONAL_KEYS]
        if differing:
            key = differing[0]
            raise UserError(f"{out} holds a training run with {key}={previous.get(key)!r}, not "
                            f"{current.get(key)!r}; choose a new out or delete it")
    refuse_changed_inputs(out, inputs, "training run")


def train(cfg: TrainConfig, progress_factory=None, stop_after: int | None = None,
          log: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) one stage; ``stop_after`` ends this call after that many steps, as a
    kill would (used to test resumption). The first process holds the output folder's lock;
    ``log`` gets notes such as a corrupt checkpoint passed over (default: stderr)."""
    import os
    import sys

    from alignpt.common import output_lock

    log = log or (lambda message: print(message, file=sys.stderr))
    first = int(os.environ.get("RANK", "0")) == 0
    with output_lock(cfg.out, "train", log=log) if first else contextlib.nullcontext():
        return _train(cfg, progress_factory, stop_after, log)


def _train(cfg: TrainConfig, progress_factory, stop_after: int | None,
           log: Callable[[str], None]) -> dict:
    from accelerate import Accelerator
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one progress bar: ours
    data = PackedDataset(cfg.data)
    seq_len = cfg.seq_len or data.seq_len
    if seq_len != data.seq_len:
        raise UserError(f"seq_len {seq_len} differs from the packed data's {data.seq_len}; "
                        "tokenize again with --seq-len")
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "fp32"
    accelerator = Accelerator(mixed_precision="no" if precision == "fp32" else precision)
    world = accelerator.num_processes
    seqs_per_step = max(1, cfg.global_batch_tokens // seq_len)
    if seqs_per_step % (world * cfg.micro_batch_size):
        raise UserError(f"global batch of {seqs_per_step} sequences does not split into "
                        f"{world} processes x micro batches of {cfg.micro_batch_size}")
    accumulation = seqs_per_step // (world * cfg.micro_batch_size)
    total_steps = cfg.max_steps or max(1, len(data) // seqs_per_step)

    out = Path(cfg.out)
    checkpoints = out / "checkpoints"
    inputs = {"packed data": str(data.index.get("sha256"))}
    init_from = Path(cfg.model.init_from) if cfg.model.init_from else None
    if init_from is not None and init_from.is_dir():
        from alignpt.common import content_sha256

        inputs["init_from weights"] = ",".join(
            content_sha256(w)[:16] for w in sorted(init_from.glob("*.safetensors")))
    if accelerator.is_main_process:
        refuse_another_run(out, cfg, inputs)
    checkpoints.mkdir(parents=True, exist_ok=True)
    loaded = _load_resume_point(checkpoints, log)
    state = loaded[2] if loaded else None
    tokenizer_dir = Path(cfg.data) / "tokenizer"
    model = loaded[1] if loaded else build_model(cfg, data.index["vocab_size"], seq_len)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.max_lr, betas=cfg.betas, fused=torch.cuda.is_available())
    step, tokens_seen = 0, 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        step, tokens_seen = state["step"], state["tokens"]
    model, optimizer = accelerator.prepare(model, optimizer)
    (out / "config.json").write_text(cfg.model_dump_json(indent=2))
    flops = flops_per_token(accelerator.unwrap_model(model), seq_len)
    peak = cfg.peak_flops or _peak_flops()
    metrics = (out / "metrics.jsonl").open("a", encoding="utf-8")

    def save(at_step: int) -> Path:
        name = f"step-{at_step:06d}"
        final = checkpoints / name
        if accelerator.is_main_process:
            tmp = checkpoints / f".{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            unwrapped = accelerator.unwrap_model(model)
            unwrapped.save_pretrained(tmp, safe_serialization=True)
            if tokenizer_dir.exists():
                from transformers import AutoTokenizer

                AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(tmp)
            torch.save({"optimizer": optimizer.state_dict(), "step": at_step,
                        "tokens": tokens_seen, "alignpt_version": __version__},
                       tmp / "trainer_state.pt")
            write_checksums(tmp)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            (checkpoints / "latest.tmp").write_text(name)
            (checkpoints / "latest.tmp").replace(checkpoints / "latest")
            kept = sorted(p for p in checkpoints.glob("step-*") if p.is_dir())
            for old in kept[: max(0, len(kept) - cfg.keep_checkpoints)]:
                shutil.rmtree(old)
        accelerator.wait_for_everyone()
        return final

    def evaluate_checkpoint(path: Path, at_step: int) -> None:
        if cfg.eval is None or not accelerator.is_main_process:
            return
        from alignpt.measure.harness import evaluate

        results = {}
        for scoring in cfg.eval.scorings:
            r = evaluate(str(path), cfg.eval.suite, split=cfg.eval.split, scoring=scoring,
                         system_prompt=cfg.eval.system_prompt, out=path / f"eval_{scoring}.json")
            results[scoring] = {"rate": r.rate, "sem": r.sem}
        metrics.write(json.dumps({"step": at_step, "tokens": tokens_seen, "eval": results}) + "\n")
        metrics.flush()

    model.train()
    rank = accelerator.process_index
    progress = progress_factory("training steps", total_steps - step) if progress_factory else None
    steps_this_call = 0
    window_tokens, window_start = 0, time.perf_counter()
    while step < total_steps:
        lr = lr_at(step, total_steps, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        first = step * seqs_per_step
        mine = list(range(first + rank, first + seqs_per_step, world))
        loss_sum = 0.0
        for micro in range(accumulation):
            batch = data.batch(mine[micro * cfg.micro_batch_size:(micro + 1)
                                    * cfg.micro_batch_size]).to(accelerator.device)
            sync = micro == accumulation - 1
            with accelerator.no_sync(model) if not sync else contextlib.nullcontext():
                with accelerator.autocast():
                    loss = model(input_ids=batch, labels=batch).loss / accumulation
                accelerator.backward(loss)
            loss_sum += float(loss.detach())
        if cfg.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += seqs_per_step * seq_len
        window_tokens += seqs_per_step * seq_len
        steps_this_call += 1
        if progress is not None:
            progress(1)
        if accelerator.is_main_process and (step % cfg.log_every == 0 or step == total_steps):
            elapsed = time.perf_counter() - window_start
            tps = window_tokens / elapsed if elapsed > 0 else None
            row = {"step": step, "tokens": tokens_seen, "loss": round(loss_sum, 5), "lr": lr,
                   "tokens_per_s": tps}
            if peak and tps:
                row["mfu"] = tps * flops / (peak * world)
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
            window_tokens, window_start = 0, time.perf_counter()
        if step == total_steps or (cfg.save_every and step % cfg.save_every == 0):
            path = save(step)
            if cfg.eval is not None and (step == total_steps or (
                    cfg.eval.every and step % cfg.eval.every == 0)):
                evaluate_checkpoint(path, step)
            window_tokens, window_start = 0, time.perf_counter()  # keep saving out of tokens/s
        if stop_after is not None and steps_this_call >= stop_after:
            metrics.close()
            return {"stopped_at": step}
    metrics.close()
    final = checkpoints / f"step-{total_steps:06d}"
    return {"final": str(final), "steps": total_steps, "tokens": tokens_seen,
            "parameters": sum(p.numel() for p in accelerator.unwrap_model(model).parameters())}


def _peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, value in PEAK_FLOPS.items():
        if key in name:
            return value
    return None

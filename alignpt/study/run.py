"""The study in miniature: conditions that differ only in AI discourse, one instrument.

``run_study`` reads as the study's recipe: build the corpora, filter them, write the synthetic
documents, mix each condition's data, tokenise, then for every seed and condition pretrain,
midtrain and measure; then the midtraining curve, post-training, the summary and the report.
Each step is a stage cached under ``OUT/stages/<name>-<hash>/`` (``alignpt.study.stages``): a
rerun, or a run with one thing changed, redoes only what changed, and a killed run finishes
when started again. Conditions are data (``alignpt.study.config``); stages that two conditions
share (a pretraining run, a synthetic document set) run once.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import yaml

from alignpt.study.config import CONFIG_DIR, SPLITS, Condition, StudyConfig, load_study
from alignpt.study.stages import Stages

__all__ = ["CONFIG_DIR", "load_study", "run_study"]



def corpus_stage(st: Stages, cfg: StudyConfig, kind: str) -> Path:
    from alignpt.study.corpus import generate_corpus
    from alignpt.suite.schema import write_jsonl

    c = cfg.corpus
    n, mcqa, path = ((c.pretrain_docs, 0.0, c.pretrain_path) if kind == "pretrain"
                     else (c.midtrain_docs, c.mcqa_rate_midtrain, c.midtrain_path))

    def build(folder: Path) -> dict:
        if path:
            shutil.copy(path, folder / "corpus.jsonl")
            return {"documents": sum(1 for _ in open(path, encoding="utf-8"))}
        seed = c.data_seed + (0 if kind == "pretrain" else 1000)
        docs = generate_corpus(n, seed=seed, ai_rate=c.ai_rate, mcqa_rate=mcqa)
        write_jsonl(folder / "corpus.jsonl", docs)
        return {"documents": len(docs)}
    return st.run(f"corpus-{kind}", {"n": n, "ai": c.ai_rate, "mcqa": mcqa, "path": path,
                                     "seed": c.data_seed}, build)


def filter_stage(st: Stages, kind: str, corpus: Path) -> Path:
    from alignpt.filter.pipeline import run_filter

    return st.run(f"filter-{kind}", {"corpus": corpus.name},
                  lambda f: run_filter([str(corpus / "corpus.jsonl")], f / "run", replace=True,
                                       tasks=1))


def synth_stage(st: Stages, cfg: StudyConfig, side: str, documents: str) -> Path:
    """Documents for the suite's articles items. Verbatim (control) documents get their own
    ``synth-verbatim-*`` folders, apart from the study conditions' documents."""
    from alignpt.llm.base import get_backend
    from alignpt.synth.run import synth

    backend = get_backend(documents)
    name = f"synth-{side}" if documents == "template" else f"synth-verbatim-{side}"
    return st.run(name, {"suite": cfg.suite, "per_item": cfg.synth_per_item, "side": side,
                         "backend": backend.model},
                  lambda f: synth(cfg.suite, f, backend, split="articles", side=side,
                                  per_item=cfg.synth_per_item))


def mix_stage(st: Stages, cfg: StudyConfig, name: str, base: str, adds: list[tuple[str, Path]],
              share: float | None, placement: str | None) -> Path:
    """``base`` plus each (side, documents folder) at an equal part of ``share``."""
    from alignpt.mix import AddSpec, mix

    specs = [AddSpec([str(folder / "documents.jsonl")], share / len(adds), side)
             for side, folder in adds]
    return st.run(f"mix-{name}", {"base": [base], "side": "+".join(s for s, _ in adds) or None,
                                  "share": share if adds else None,
                                  "placement": placement if adds else None,
                                  "synth": "+".join(f.name for _, f in adds) or None},
                  lambda f: mix([base], specs, f, placement=placement or "uniform",
                                seed=cfg.corpus.data_seed))


def tokenizer_stage(st: Stages, cfg: StudyConfig, texts_from: list[Path]) -> Path:
    from alignpt.toy import train_tokenizer

    def build(folder: Path) -> dict:
        texts = []
        for f in texts_from:
            source = f / "corpus.jsonl" if (f / "corpus.jsonl").exists() else f / "documents.jsonl"
            texts += [json.loads(x)["text"] for x in source.read_text().splitlines()]
        tok = train_tokenizer(texts, cfg.vocab_size)
        tok.save_pretrained(folder)
        return {"vocab": len(tok), "texts": len(texts)}
    return st.run("tokenizer", {"vocab": cfg.vocab_size,
                                "inputs": sorted(f.name for f in texts_from)}, build)


def pack_stage(st: Stages, cfg: StudyConfig, name: str, mixed: Path, tok: Path) -> Path:
    from alignpt.train.data import tokenize

    return st.run(f"pack-{name}", {"mix": mixed.name, "tok": tok.name, "seq_len": cfg.seq_len},
                  lambda f: tokenize(str(mixed), str(tok), cfg.seq_len, f))


def train_stage(st: Stages, cfg: StudyConfig, kind: str, name: str, seed: int, packed: Path,
                init: Path | None) -> Path:
    from alignpt.train.config import TrainConfig
    from alignpt.train.loop import train

    settings = cfg.pretrain if kind == "pretrain" else cfg.midtrain
    every = (max(1, math.ceil(settings.steps / cfg.curve_points))
             if kind == "midtrain" and seed == cfg.seeds[0] and cfg.curve_points else 0)

    def run(folder: Path) -> dict:
        model = ({"preset": cfg.model_preset, "init_from": str(init)} if init is not None
                 else {"preset": cfg.model_preset, "max_position_embeddings": 1024})
        tc = TrainConfig(out=str(folder), data=str(packed), model=model,
                         global_batch_tokens=settings.global_batch_tokens,
                         micro_batch_size=settings.micro_batch_size,
                         max_steps=settings.steps, max_lr=settings.max_lr,
                         min_lr=settings.min_lr, save_every=every, seed=seed,
                         keep_checkpoints=cfg.curve_points + 1, log_every=10, precision="fp32")
        return train(tc)
    return st.run(f"{kind}-{name}-seed{seed}",
                  {"data": packed.name, "init": init.parent.parent.name if init else None,
                   "train": settings.model_dump(), "seed": seed, "preset": cfg.model_preset,
                   "curve": every}, run)


def final_model(st: Stages, folder: Path) -> Path:
    """The final checkpoint of a training stage (a placeholder in a dry run)."""
    return Path(Stages.info(folder).get("final") or folder / "checkpoints" / "final")


def item_shares(choices_file: Path) -> dict[str, float | None]:
    """Per item, the share of its matched formats that chose the misaligned option."""
    counts: dict[str, list[int]] = {}
    for line in choices_file.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        c = counts.setdefault(row["item_id"], [0, 0])
        if row["choice"] in ("aligned", "misaligned"):
            c[0] += row["choice"] == "misaligned"
            c[1] += 1
    return {item: (m / n if n else None) for item, (m, n) in counts.items()}


def eval_stage(st: Stages, cfg: StudyConfig, model_dir: Path, label: str) -> dict:
    """Both splits, every scoring, each beside its scenario-free control; one model load."""
    from alignpt.measure.harness import evaluate
    from alignpt.measure.hf import HFModel

    def run(folder: Path) -> dict:
        results = {}
        backend = HFModel(str(model_dir))
        for split in SPLITS:
            for scoring in cfg.scorings:
                for control in (False, True):
                    key = f"{split}/{scoring}/{'control' if control else 'prompt'}"
                    out = folder / f"{key.replace('/', '_')}.json"
                    r = evaluate(str(model_dir), cfg.suite, split=split, scoring=scoring,
                                 system_prompt=cfg.system_prompt, scenario_free=control,
                                 out=out, backend=backend)
                    results[key] = {"rate": r.rate, "sem": r.sem, "n_items": r.n_items,
                                    "formats": [f.rate for f in r.formats],
                                    "items": item_shares(out.with_name(r.choices_file))}
        return results
    return Stages.info(st.run(f"eval-{label}", {"model": str(model_dir), "suite": cfg.suite,
                                                "sp": cfg.system_prompt,
                                                "scorings": cfg.scorings, "items": 1}, run))


def curve_stage(st: Stages, cfg: StudyConfig, label: str, ckpt: Path) -> dict:
    from alignpt.measure.harness import evaluate

    def run(folder: Path) -> dict:
        r = evaluate(str(ckpt), cfg.suite, split="articles", scoring="option",
                     system_prompt=cfg.system_prompt)
        return {"rate": r.rate, "sem_formats": r.sem, "n_items": r.n_items,
                "sem": math.sqrt(r.rate * (1 - r.rate) / r.n_items) if r.n_items else None}
    return Stages.info(st.run(f"curve-{label}-{ckpt.name}",
                              {"ckpt": str(ckpt), "suite": cfg.suite, "se": "items"}, run))


def posttrain_stage(st: Stages, cfg: StudyConfig, model_dir: Path, label: str,
                    seed: int) -> dict:
    """``alignpt posttrain``'s pipeline from one final model: SFT then DPO (then tampering
    and EM from DPO, when configured), measuring DPO's model and tampering and EM; returns
    the measurements' paths per stage, tag and system prompt."""
    from alignpt.posttrain.pipeline import PipelineConfig, run_pipeline
    from alignpt.posttrain.stages import eval_path

    pt = cfg.posttrain
    stages = {"sft": pt.sft, "dpo": pt.dpo} | {k: v for k, v in (("tamper", pt.tamper),
                                                                  ("em", pt.em)) if v}

    def run(folder: Path) -> dict:
        pipeline = PipelineConfig(
            model=str(model_dir), out=str(folder), seeds=[seed], stages=stages,
            measure=["dpo", "tamper", "em"],
            eval={"suite": cfg.suite, "split": pt.split, "scoring": pt.scoring,
                  "system_prompts": pt.system_prompts})
        summary = run_pipeline(pipeline, log=lambda _: None)
        root = folder / f"seed-{seed}"
        paths: dict = {"dpo": {sp: str(eval_path(root / "dpo", "after", sp))
                               for sp in pt.system_prompts}}
        if pt.em:
            paths["em"] = {when: {sp: str(eval_path(root / "em", when, sp))
                                  for sp in pt.system_prompts} for when in ("before", "after")}
        if pt.tamper:
            steps = sorted({p["step"] for pts in summary["tamper_curve"].values() for p in pts})
            paths["tamper"] = {str(step): {sp: str(eval_path(root / "tamper", f"step-{step}", sp))
                                           for sp in pt.system_prompts} for step in steps}
        return paths
    return Stages.info(st.run(f"posttrain-{label}", {"model": str(model_dir),
                                                     "posttrain": pt.model_dump(),
                                                     "suite": cfg.suite, "seed": seed,
                                                     "via": "pipeline"}, run))


def run_study(cfg: StudyConfig, out: str | Path, progress=None, dry_run: bool = False) -> dict:
    """Run (or with ``dry_run`` only plan) the study; returns results (or the plan).
    ``progress`` (``alignpt.study.progress``) hears of each stage started and finished."""
    from alignpt.cpu import set_torch_threads

    started = time.perf_counter()
    threads = set_torch_threads()
    out = Path(out)
    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    st = Stages(out, progress, dry_run=dry_run)

    corpora = {kind: corpus_stage(st, cfg, kind) for kind in ("pretrain", "midtrain")}
    filtered = {kind: filter_stage(st, kind, folder) for kind, folder in corpora.items()}
    corpus_file = {("pretrain", "unfiltered"): str(corpora["pretrain"] / "corpus.jsonl"),
                   ("midtrain", "unfiltered"): str(corpora["midtrain"] / "corpus.jsonl"),
                   ("pretrain", "filtered"): str(filtered["pretrain"] / "run" / "replaced"),
                   ("midtrain", "filtered"): str(filtered["midtrain"] / "run" / "replaced")}
    # The study's documents exist whatever the conditions, and with the corpora they train the
    # one tokenizer, so adding a control condition changes no other condition's models.
    synthetic = {(side, "template"): synth_stage(st, cfg, side, "template")
                 for side in ("aligned", "misaligned")}
    for c in cfg.conditions:
        for side in _sides(c):
            if (side, c.documents) not in synthetic:
                synthetic[(side, c.documents)] = synth_stage(st, cfg, side, c.documents)
    tok = tokenizer_stage(st, cfg, list(corpora.values()) + [
        synthetic[(side, "template")] for side in ("aligned", "misaligned")])

    pretrain_kinds = sorted({c.pretrain for c in cfg.conditions}, reverse=True)
    packed = {("pretrain", kind): pack_stage(
        st, cfg, f"pretrain-{kind}",
        mix_stage(st, cfg, f"pretrain-{kind}", corpus_file[("pretrain", kind)], [], None, None),
        tok) for kind in pretrain_kinds}
    mixes: dict[str, Path] = {}
    for c in cfg.conditions:
        adds = [(side, synthetic[(side, c.documents)]) for side in _sides(c)]
        mixes[c.name] = mix_stage(st, cfg, f"midtrain-{c.name}",
                                  corpus_file[("midtrain", c.midtrain)], adds,
                                  cfg.share(c), cfg.placement_of(c))
        packed[("midtrain", c.name)] = pack_stage(st, cfg, f"midtrain-{c.name}", mixes[c.name],
                                                  tok)

    runs: dict[tuple[str, int], Path] = {}
    evals: dict[tuple[str, int], dict] = {}
    for seed in cfg.seeds:
        for c in cfg.conditions:
            pre = train_stage(st, cfg, "pretrain", c.pretrain, seed,
                              packed[("pretrain", c.pretrain)], None)
            runs[(c.name, seed)] = train_stage(st, cfg, "midtrain", c.name, seed,
                                               packed[("midtrain", c.name)],
                                               final_model(st, pre))
            evals[(c.name, seed)] = eval_stage(st, cfg, final_model(st, runs[(c.name, seed)]),
                                               f"{c.name}-seed{seed}")

    curve = {c.name: midtraining_curve(st, cfg, c, runs, evals) for c in cfg.conditions}
    posttrained: dict[tuple[str, int], dict] = {}
    if cfg.posttrain is not None:
        for (name, seed), folder in runs.items():
            if cfg.posttrain.seeds is None or seed in cfg.posttrain.seeds:
                posttrained[(name, seed)] = posttrain_stage(st, cfg, final_model(st, folder),
                                                            f"{name}-seed{seed}", seed)
    if dry_run:
        return plan(cfg, st)

    from alignpt.study.report import write_report
    from alignpt.study.summary import summarise

    results = summarise(cfg, evals, filtered, synthetic, mixes, packed, curve, posttrained)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["stages_run"], results["stages_reused"] = st.ran, st.reused
    results["cpu"] = threads
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_report(results, out)
    return results


def _sides(c: Condition) -> list[str]:
    return {"none": [], "both": ["aligned", "misaligned"]}.get(c.side, [c.side])


def midtraining_curve(st: Stages, cfg: StudyConfig, c: Condition, runs: dict,
                      evals: dict) -> list[dict]:
    """Option scoring on articles at each saved midtraining checkpoint of the first seed."""
    run = runs[(c.name, cfg.seeds[0])]
    final = final_model(st, run)
    points = []
    for ckpt in sorted((run / "checkpoints").glob("step-*")):
        step = int(ckpt.name.split("-")[1])
        if ckpt == final and "option" in cfg.scorings:  # already measured: reuse it
            e = evals[(c.name, cfg.seeds[0])]["articles/option/prompt"]
            points.append({"step": step, "rate": e["rate"], "sem_formats": e["sem"],
                           "n_items": e["n_items"],
                           "sem": math.sqrt(e["rate"] * (1 - e["rate"]) / e["n_items"])})
        else:
            points.append({"step": step} | curve_stage(st, cfg, f"{c.name}-seed{cfg.seeds[0]}",
                                                       ckpt))
    return points


def plan(cfg: StudyConfig, st: Stages) -> dict:
    """What a run would do: conditions, and every stage with whether it is cached."""
    return {"conditions": [c.name for c in cfg.conditions],
            "seeds": cfg.seeds,
            "stages": [p["stage"] for p in st.planned],
            "cached": [p["stage"] for p in st.planned if p["cached"]],
            "folders": [p["folder"] for p in st.planned]}

"""The study in miniature: four conditions that differ only in AI discourse, one instrument.

Stages (each cached under ``OUT/stages/<name>-<hash>/`` by the hash of its settings and its
inputs, and marked done only when complete, so a rerun, or a run with one thing changed, redoes
only what changed, and a killed run finishes when started again):

1. toy corpora for pretraining and midtraining (or a real corpus from the config);
2. the blocklist filter on both, with flagged documents replaced by resampled kept ones;
3. aligned and misaligned synthetic documents for the suite's ``articles`` items;
4. six mixes: pretraining unfiltered / filtered; midtraining unfiltered, filtered,
   unfiltered + misaligned documents, filtered + aligned documents;
5. one tokenizer for all, packing, two pretraining runs and four midtraining runs per seed;
6. evaluation of every final model on both splits with letter and option scoring, each beside
   its scenario-free control; option scoring at every midtraining checkpoint (the curve);
7. when configured (the full demo), tiny SFT then DPO on every final model, each measured
   through its chat template under several system prompts;
8. ``results.json``, ``report.md`` and a self-contained ``report.html``.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alignpt import __version__
from alignpt.errors import UserError
from alignpt.results import mean_and_sem

CONDITIONS = ("unfiltered", "filtered", "misalignment_upsampled", "alignment_upsampled")
CONFIG_DIR = Path(__file__).parent / "configs"


class CorpusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pretrain_docs: int = 20000
    midtrain_docs: int = 6000
    ai_rate: float = 0.08
    mcqa_rate_midtrain: float = 0.15
    pretrain_path: str | None = None  # a real corpus instead of the toy one
    midtrain_path: str | None = None
    data_seed: int = 0


class StageTraining(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: int = 200
    global_batch_tokens: int = 8192
    micro_batch_size: int = 16
    max_lr: float = 3e-3
    min_lr: float = 3e-4


class StudyPostTraining(BaseModel):
    """Tiny SFT then DPO on every final model, measured through the chat template. Toy
    learning rates: the study's (8e-5, 1e-6) barely move a tiny model in a few dozen steps."""

    model_config = ConfigDict(extra="forbid")
    sft: dict = {"data": "sft", "epochs": 1, "lr": 1e-3, "batch_size": 16, "max_length": 512}
    dpo: dict = {"data": "dpo", "lr": 1e-4, "batch_size": 16, "max_length": 512}
    system_prompts: list[str] = ["none", "hhh"]
    split: str = "articles"
    scoring: str = "option"
    seeds: list[int] | None = None  # which study seeds' models to post-train (None: all)


class StudyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seeds: list[int] = [0, 1]
    suite: str = "bundled"
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    synth_per_item: int = 4
    synth_share: float = 0.2  # of the midtraining stage's tokens
    placement: str = "uniform"
    vocab_size: int = 4096
    model_preset: str = "tiny"
    seq_len: int = 256
    pretrain: StageTraining = Field(default_factory=StageTraining)
    midtrain: StageTraining = Field(default_factory=lambda: StageTraining(
        steps=100, max_lr=1.5e-3, min_lr=0.0))
    curve_points: int = 4  # midtraining checkpoints evaluated for the curve (first seed)
    system_prompt: str = "ai"
    scorings: list[str] = ["letter", "option"]
    posttrain: StudyPostTraining | None = None


def load_study(path: str | Path) -> StudyConfig:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return StudyConfig.model_validate(data)
    except OSError as exc:
        raise UserError(f"cannot read study config {path}: {exc}") from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise UserError(f"bad study config {path}: {exc}") from exc


def _key(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Stages:
    """Content-addressed, resumable stage folders."""

    def __init__(self, root: Path, log: Callable[[str], None]):
        self.root = root / "stages"
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.ran: list[str] = []
        self.reused: list[str] = []

    def run(self, name: str, settings: dict, fn: Callable[[Path], dict | None]) -> Path:
        folder = self.root / f"{name}-{_key(settings)}"
        done = folder / "done.json"
        if done.exists():
            self.reused.append(folder.name)
            return folder
        shutil.rmtree(folder, ignore_errors=True)  # a stage killed part-way starts again
        folder.mkdir(parents=True)
        started = time.perf_counter()
        self.log(f"stage {name} ...")
        info = fn(folder) or {}
        done.write_text(json.dumps({"settings": settings, "info": info,
                                    "seconds": round(time.perf_counter() - started, 2),
                                    "alignpt_version": __version__}, default=str, indent=2))
        self.ran.append(folder.name)
        return folder

    @staticmethod
    def info(folder: Path) -> dict:
        return json.loads((folder / "done.json").read_text())["info"]


def run_study(cfg: StudyConfig, out: str | Path, log: Callable[[str], None] = print) -> dict:
    from alignpt.filter.pipeline import run_filter
    from alignpt.llm.template import TemplateBackend
    from alignpt.measure.harness import evaluate
    from alignpt.measure.hf import HFModel
    from alignpt.mix import AddSpec, mix
    from alignpt.study.corpus import generate_corpus
    from alignpt.suite.schema import write_jsonl
    from alignpt.synth.run import synth
    from alignpt.toy import train_tokenizer
    from alignpt.train.config import TrainConfig
    from alignpt.train.data import tokenize
    from alignpt.train.loop import train

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    st = Stages(out, log)
    c = cfg.corpus

    def corpus_stage(kind: str, n: int, mcqa: float, path: str | None) -> Path:
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

    corpora = {"pretrain": corpus_stage("pretrain", c.pretrain_docs, 0.0, c.pretrain_path),
               "midtrain": corpus_stage("midtrain", c.midtrain_docs, c.mcqa_rate_midtrain,
                                        c.midtrain_path)}
    filtered = {}
    for kind, folder in corpora.items():
        filtered[kind] = st.run(f"filter-{kind}", {"corpus": folder.name}, lambda f, src=folder:
                                run_filter([str(src / "corpus.jsonl")], f / "run", replace=True,
                                           tasks=1))
    synthetic = {}
    for side in ("aligned", "misaligned"):
        synthetic[side] = st.run(
            f"synth-{side}", {"suite": cfg.suite, "per_item": cfg.synth_per_item, "side": side},
            lambda f, side=side: synth(cfg.suite, f, TemplateBackend(), split="articles",
                                       side=side, per_item=cfg.synth_per_item))

    def replaced(kind: str) -> str:
        return str(filtered[kind] / "run" / "replaced")

    plans = {
        ("pretrain", "unfiltered"): ([str(corpora["pretrain"] / "corpus.jsonl")], None),
        ("pretrain", "filtered"): ([replaced("pretrain")], None),
        ("midtrain", "unfiltered"): ([str(corpora["midtrain"] / "corpus.jsonl")], None),
        ("midtrain", "filtered"): ([replaced("midtrain")], None),
        ("midtrain", "misalignment_upsampled"): ([str(corpora["midtrain"] / "corpus.jsonl")],
                                                 "misaligned"),
        ("midtrain", "alignment_upsampled"): ([replaced("midtrain")], "aligned"),
    }
    mixes = {}
    for (kind, name), (base, side) in plans.items():
        adds = ([AddSpec([str(synthetic[side] / "documents.jsonl")], cfg.synth_share, side)]
                if side else [])
        mixes[(kind, name)] = st.run(
            f"mix-{kind}-{name}", {"base": base, "side": side,
                                   "share": cfg.synth_share if side else None,
                                   "placement": cfg.placement if side else None,
                                   "synth": synthetic[side].name if side else None},
            lambda f, base=base, adds=adds: mix(base, adds, f, placement=cfg.placement,
                                                seed=c.data_seed))
    tok = st.run("tokenizer", {"vocab": cfg.vocab_size, "inputs": sorted(
        f.name for f in list(corpora.values()) + list(synthetic.values()))},
        lambda f: _train_tokenizer(f, corpora, synthetic, cfg.vocab_size, train_tokenizer))
    packed = {key: st.run(f"pack-{key[0]}-{key[1]}", {"mix": folder.name, "tok": tok.name,
                                                       "seq_len": cfg.seq_len},
                          lambda f, folder=folder: tokenize(str(folder), str(tok), cfg.seq_len, f))
              for key, folder in mixes.items()}

    def train_stage(kind: str, name: str, seed: int, init: Path | None) -> Path:
        settings = cfg.pretrain if kind == "pretrain" else cfg.midtrain
        every = (max(1, math.ceil(settings.steps / cfg.curve_points))
                 if kind == "midtrain" and seed == cfg.seeds[0] else 0)

        def run(folder: Path) -> dict:
            model = {"preset": cfg.model_preset, "max_position_embeddings": 1024}
            if init is not None:
                model = {"preset": cfg.model_preset, "init_from": str(init)}
            tc = TrainConfig(out=str(folder), data=str(packed[(kind, name)]), model=model,
                             global_batch_tokens=settings.global_batch_tokens,
                             micro_batch_size=settings.micro_batch_size,
                             max_steps=settings.steps, max_lr=settings.max_lr,
                             min_lr=settings.min_lr, save_every=every, seed=seed,
                             keep_checkpoints=cfg.curve_points + 1, log_every=10,
                             precision="fp32")
            return train(tc)
        return st.run(f"{kind}-{name}-seed{seed}",
                      {"data": packed[(kind, name)].name, "init": init.name if init else None,
                       "train": settings.model_dump(), "seed": seed,
                       "preset": cfg.model_preset, "curve": every}, run)

    def final(folder: Path) -> Path:
        return Path(Stages.info(folder)["final"])

    finals: dict[tuple[str, int], Path] = {}
    runs: dict[tuple[str, int], Path] = {}
    for seed in cfg.seeds:
        pre = {"unfiltered": train_stage("pretrain", "unfiltered", seed, None),
               "filtered": train_stage("pretrain", "filtered", seed, None)}
        for name in CONDITIONS:
            base = "filtered" if name in ("filtered", "alignment_upsampled") else "unfiltered"
            runs[(name, seed)] = train_stage("midtrain", name, seed, final(pre[base]))
            finals[(name, seed)] = final(runs[(name, seed)])

    def eval_stage(model_dir: Path, label: str) -> dict:
        def run(folder: Path) -> dict:
            results = {}
            backend = HFModel(str(model_dir))  # loaded once for the eight measurements
            for split in ("articles", "heldout"):
                for scoring in cfg.scorings:
                    for control in (False, True):
                        key = f"{split}/{scoring}/{'control' if control else 'prompt'}"
                        r = evaluate(str(model_dir), cfg.suite, split=split, scoring=scoring,
                                     system_prompt=cfg.system_prompt, scenario_free=control,
                                     out=folder / f"{key.replace('/', '_')}.json",
                                     backend=backend)
                        results[key] = {"rate": r.rate, "sem": r.sem, "n_items": r.n_items,
                                        "formats": [f.rate for f in r.formats]}
            return results
        return Stages.info(st.run(f"eval-{label}", {"model": str(model_dir),
                                                    "suite": cfg.suite,
                                                    "sp": cfg.system_prompt,
                                                    "scorings": cfg.scorings}, run))

    evals = {key: eval_stage(path, f"{key[0]}-seed{key[1]}") for key, path in finals.items()}

    curve: dict[str, list[dict]] = {}
    for name in CONDITIONS:
        ckpts = sorted((runs[(name, cfg.seeds[0])] / "checkpoints").glob("step-*"))
        points = []
        for ckpt in ckpts:
            if ckpt == finals[(name, cfg.seeds[0])] and "option" in cfg.scorings:
                # The final checkpoint is already measured: reuse it.
                final_eval = evals[(name, cfg.seeds[0])]["articles/option/prompt"]
                points.append({"step": int(ckpt.name.split("-")[1]),
                               "rate": final_eval["rate"], "sem": final_eval["sem"]})
                continue

            def run_curve(folder: Path, ckpt=ckpt) -> dict:
                r = evaluate(str(ckpt), cfg.suite, split="articles", scoring="option",
                             system_prompt=cfg.system_prompt)
                return {"rate": r.rate, "sem": r.sem}
            info = Stages.info(st.run(f"curve-{name}-{ckpt.name}", {"ckpt": str(ckpt),
                                                                   "suite": cfg.suite},
                                      run_curve))
            points.append({"step": int(ckpt.name.split("-")[1])} | info)
        curve[name] = points

    posttrained: dict[tuple[str, int], dict] = {}
    if cfg.posttrain is not None:
        for key, path in finals.items():
            if cfg.posttrain.seeds is not None and key[1] not in cfg.posttrain.seeds:
                continue
            posttrained[key] = _posttrain_stage(st, cfg.posttrain, cfg.suite, path,
                                                f"{key[0]}-seed{key[1]}", key[1])

    results = summarise(cfg, evals, filtered, synthetic, mixes, packed, curve, posttrained)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["stages_run"], results["stages_reused"] = st.ran, st.reused
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    from alignpt.study.report import write_report

    write_report(results, out)
    return results


def _posttrain_stage(st: Stages, pt: StudyPostTraining, suite: str, model_dir: Path,
                     label: str, seed: int) -> dict:
    """SFT then DPO from one final model; returns the eval result paths per stage and prompt."""
    from alignpt.posttrain.config import PostTrainConfig
    from alignpt.posttrain.stages import run_stage

    ev = {"suite": suite, "split": pt.split, "scoring": pt.scoring,
          "system_prompts": pt.system_prompts}

    def run(folder: Path) -> dict:
        source = str(model_dir)
        for stage in ("sft", "dpo"):  # only the final model is measured: the demo's budget
            stage_cfg = PostTrainConfig.model_validate(
                {**getattr(pt, stage), "stage": stage, "model": source, "seed": seed,
                 "out": str(folder / stage), "eval": ev if stage == "dpo" else None}).resolved()
            report = run_stage(stage_cfg, log=lambda _: None)
            source = report["outputs"]["model"]
        return {sp: cell["path"] for sp, cell in report["eval"]["after"].items()}

    return Stages.info(st.run(f"posttrain-{label}", {"model": str(model_dir),
                                                     "posttrain": pt.model_dump(),
                                                     "suite": suite, "seed": seed}, run))


def _train_tokenizer(folder: Path, corpora, synthetic, vocab: int, trainer) -> dict:
    texts = []
    for f in corpora.values():
        texts += [json.loads(x)["text"] for x in (f / "corpus.jsonl").read_text().splitlines()]
    for f in synthetic.values():
        texts += [json.loads(x)["text"]
                  for x in (f / "documents.jsonl").read_text().splitlines()]
    tok = trainer(texts, vocab)
    tok.save_pretrained(folder)
    return {"vocab": len(tok), "texts": len(texts)}


def _combine(values: list[list[float]]) -> tuple[float | None, float | None]:
    """Mean and SE over every (seed, format) rate."""
    return mean_and_sem([v for vs in values for v in vs if v is not None])


def _posttrained(cfg, conditions: dict, posttrained: dict) -> dict:
    """posttrained.<condition>.<system prompt>: after SFT and DPO, aggregated over seeds as in
    SPEC section 3, with the condition's base-model rate beside it."""
    from alignpt.measure.aggregate import aggregate

    split = cfg.posttrain.split if cfg.posttrain.split != "all" else "articles"
    post_seeds = cfg.posttrain.seeds or cfg.seeds
    out: dict = {}
    for name in CONDITIONS:
        base = conditions[name][split]
        out[name] = {}
        for sp in cfg.posttrain.system_prompts:
            agg = aggregate([posttrained[(name, s)][sp] for s in post_seeds])
            out[name][sp] = {"misalignment_rate": agg.rate, "sem": agg.sem,
                             "n_seeds": agg.n_used,
                             "non_match_rate": max(i.non_match_rate for i in agg.inputs),
                             "base_rate": base["misalignment_rate"], "base_sem": base["sem"],
                             "base_system_prompt": cfg.system_prompt}
    return out


def summarise(cfg, evals, filtered, synthetic, mixes, packed, curve,
              posttrained: dict | None = None) -> dict:
    conditions: dict = {}
    for name in CONDITIONS:
        conditions[name] = {}
        for split in ("articles", "heldout"):
            entry: dict = {}
            for scoring in cfg.scorings:
                prompt = [evals[(name, s)][f"{split}/{scoring}/prompt"]["formats"]
                          for s in cfg.seeds]
                control = [evals[(name, s)][f"{split}/{scoring}/control"]["formats"]
                           for s in cfg.seeds]
                rate, sem = _combine(prompt)
                c_rate, c_sem = _combine(control)
                n_items = evals[(name, cfg.seeds[0])][f"{split}/{scoring}/prompt"]["n_items"]
                entry[scoring] = {
                    "misalignment_rate": rate, "sem": sem,
                    # Items are the sampling unit too: the binomial SE over the suite's items.
                    "sem_items": math.sqrt(rate * (1 - rate) / n_items) if rate is not None
                    else None,
                    "control_rate": c_rate, "control_sem": c_sem,
                    "situation_effect": (rate - c_rate) if rate is not None and
                    c_rate is not None else None,
                    "per_seed": [evals[(name, s)][f"{split}/{scoring}/prompt"]["rate"]
                                 for s in cfg.seeds],
                }
            lead = "option" if "option" in cfg.scorings else cfg.scorings[0]
            entry["misalignment_rate"] = entry[lead]["misalignment_rate"]
            entry["sem"] = entry[lead]["sem"]
            entry["scoring"] = lead
            conditions[name][split] = entry
    flag = {kind: json.loads((f / "run" / "report.json").read_text())
            for kind, f in filtered.items()}
    return {
        "kind": "study",
        "lead_scoring": "option" if "option" in cfg.scorings else cfg.scorings[0],
        "seeds": cfg.seeds,
        "suite": cfg.suite,
        "system_prompt": cfg.system_prompt,
        "conditions": conditions,
        "filter": {kind: {"flag_rate": r["flag_rate"], "flagged": r["flagged"],
                          "documents_in": r["documents_in"], "by_rule": r["by_rule"],
                          "top_terms": dict(list(r["top_terms"].items())[:10])}
                   for kind, r in flag.items()},
        "synthetic": {side: Stages.info(f) for side, f in synthetic.items()},
        "tokens": {f"{k[0]}/{k[1]}": json.loads((p / "index.json").read_text())["tokens"]
                   for k, p in packed.items()},
        "mixes": {f"{k[0]}/{k[1]}": [
            {"name": a["name"], "realised_share": a["realised_share"], "tokens": a["tokens"]}
            for a in json.loads((p / "manifest.json").read_text())["adds"]]
            for k, p in mixes.items()},
        "midtraining_curve": curve,
        **({"posttrained": _posttrained(cfg, conditions, posttrained),
            "posttrain_scoring": cfg.posttrain.scoring,
            "posttrain_seeds": cfg.posttrain.seeds or cfg.seeds} if posttrained else {}),
        "config": cfg.model_dump(),
        "alignpt_version": __version__,
    }

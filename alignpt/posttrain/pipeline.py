"""``alignpt posttrain run``: base -> SFT -> DPO (-> tampering, -> EM) over seeds, and the
study's post-training table and tampering curve, aggregated over seeds as in SPEC section 3.

Layout: OUT/seed-<k>/base/eval/ (the starting model), OUT/seed-<k>/<stage>/ (run_stage
folders), OUT/posttrain.json, OUT/table.md, OUT/tamper_curve.png.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from alignpt.errors import UserError
from alignpt.measure.aggregate import aggregate
from alignpt.posttrain.config import STAGES, PostEvalConfig, PostTrainConfig
from alignpt.posttrain.stages import Log, _measure, eval_path, load_tokenizer, run_stage
from alignpt.train.config import read_yaml, validate_config


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str  # the base checkpoint
    out: str
    seeds: list[int] = [0]
    eval: PostEvalConfig = Field(default_factory=PostEvalConfig)
    # Per stage: PostTrainConfig fields (data, lr, ...) and optionally "from": the stage (or
    # "base") whose output it starts from. Default chain: base -> sft -> dpo; tamper and em
    # start from the last of those that runs.
    stages: dict[str, dict] = Field(default_factory=lambda: {"sft": {"data": "sft"},
                                                             "dpo": {"data": "dpo"}})
    # Whose models are measured: "base" and any stage. Measuring costs as much as a short
    # stage on a tiny model, so a budgeted run (the demo) measures only what it reports.
    measure: list[str] = Field(default_factory=lambda: ["base", *STAGES])


def load_pipeline_config(path: str | Path, overrides: list[str] = ()) -> PipelineConfig:
    cfg = validate_config(PipelineConfig, read_yaml(path, overrides), path)
    unknown = set(cfg.stages) - set(STAGES)
    if unknown:
        raise UserError(f"{path}: unknown stages {sorted(unknown)}; use {', '.join(STAGES)}")
    return cfg


def _chain(cfg: PipelineConfig) -> list[tuple[str, str]]:
    """(stage, starts-from) in run order."""
    order, last = [], "base"
    for stage in STAGES:
        if stage not in cfg.stages:
            continue
        source = cfg.stages[stage].get("from", last)
        if source != "base" and source not in cfg.stages:
            raise UserError(f"stage {stage} starts from {source!r}, which does not run")
        order.append((stage, source))
        if stage in ("sft", "dpo"):
            last = stage
    return order


def run_pipeline(cfg: PipelineConfig, log: Log = print) -> dict:
    """Run every stage for every seed, then write the table and curve."""
    out = Path(cfg.out)
    chain = _chain(cfg)
    for seed in cfg.seeds:
        root = out / f"seed-{seed}"
        if "base" in cfg.measure:
            chat = bool(getattr(load_tokenizer(cfg.model), "chat_template", None))
            _measure(cfg.model, None, cfg.eval, root / "base", "before", chat=chat, log=log)
        outputs = {"base": cfg.model}
        for stage, source in chain:
            fields = {k: v for k, v in cfg.stages[stage].items() if k != "from"}
            stage_cfg = PostTrainConfig.model_validate(
                {**fields, "stage": stage, "model": outputs[source], "seed": seed,
                 "out": str(root / stage),
                 "eval": cfg.eval.model_dump() if stage in cfg.measure else None}).resolved()
            log(f"seed {seed}: {stage} from {source}")
            report = run_stage(stage_cfg, log=log)
            outputs[stage] = report["outputs"]["model"]
    summary = summarise(cfg)
    write_table(summary, out)
    return summary


def _cell(paths: list[Path]) -> dict:
    agg = aggregate(paths)
    return {"rate": agg.rate, "sem": agg.sem, "n_seeds": agg.n_used, "n_dropped": agg.n_dropped,
            "non_match_rate": round(sum(i.non_match_rate for i in agg.inputs)
                                    / max(1, len(agg.inputs)), 4)}


def summarise(cfg: PipelineConfig) -> dict:
    """Aggregate every measurement over seeds (inverse-variance, non-match >= 0.2 dropped)."""
    out = Path(cfg.out)
    seeds = [out / f"seed-{s}" for s in cfg.seeds]
    sps = cfg.eval.system_prompts

    def cell(stage: str, tag: str, sp: str) -> dict | None:
        paths = [eval_path(p / stage, tag, sp) for p in seeds]
        paths = [p for p in paths if p.exists()]
        return _cell(paths) if paths else None

    base = {sp: cell("base", "before", sp) for sp in sps}
    rows = {stage: {sp: cell(stage, "after", sp) for sp in sps}
            for stage in ("sft", "dpo") if stage in cfg.stages}
    summary: dict = {"kind": "posttrain_summary", "seeds": cfg.seeds, "eval": cfg.eval.model_dump(),
                     "system_prompts": sps, "base": base, "rows": rows}
    if "em" in cfg.stages:
        summary["em"] = {sp: {"before": cell("em", "before", sp), "after": cell("em", "after", sp)}
                         for sp in sps}
    if "tamper" in cfg.stages:
        steps = sorted({int(json.loads(line)["step"]) for p in seeds
                        if (p / "tamper" / "metrics.jsonl").exists()
                        for line in (p / "tamper" / "metrics.jsonl").read_text().splitlines()})
        summary["tamper_curve"] = {
            sp: [{"step": step, **c} for step in steps
                 if (c := cell("tamper", f"step-{step}", sp)) is not None]
            for sp in sps}
    return summary


def _fmt(c: dict | None) -> str:
    if not c or c.get("rate") is None:
        return "—"
    return f"{c['rate']:.3f} ± {c['sem']:.3f}" if c.get("sem") is not None else f"{c['rate']:.3f}"


def table_markdown(summary: dict) -> str:
    sps = summary["system_prompts"]
    ev = summary["eval"]
    lines = [f"Misalignment rate ({ev['scoring']} scoring through the chat template, "
             f"{ev['split']} split, {len(summary['seeds'])} seed(s); base model in brackets, "
             "measured as a base model)", "",
             "| model | " + " | ".join(sps) + " |", "|---|" + "---|" * len(sps)]
    for stage, cells in summary["rows"].items():
        row = [f"{_fmt(cells[sp])} ({_fmt(summary['base'].get(sp))})" for sp in sps]
        lines.append(f"| after {stage.upper()} | " + " | ".join(row) + " |")
    if "em" in summary:
        for when in ("before", "after"):
            row = [_fmt(summary["em"][sp][when]) for sp in sps]
            lines.append(f"| EM {when} | " + " | ".join(row) + " |")
    if "tamper_curve" in summary:
        lines += ["", "Tampering (benign fine-tuning) curve:", "",
                  "| step | " + " | ".join(sps) + " |", "|---|" + "---|" * len(sps)]
        steps = sorted({p["step"] for pts in summary["tamper_curve"].values() for p in pts})
        for step in steps:
            row = [_fmt(next((p for p in summary["tamper_curve"][sp] if p["step"] == step),
                             None)) for sp in sps]
            lines.append(f"| {step} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_table(summary: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "posttrain.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "table.md").write_text(table_markdown(summary), encoding="utf-8")
    if summary.get("tamper_curve"):
        plot_tamper_curve(summary, out / "tamper_curve.png")


def plot_tamper_curve(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    for sp, points in summary["tamper_curve"].items():
        pts = [p for p in points if p["rate"] is not None]
        if pts:
            ax.errorbar([p["step"] for p in pts], [p["rate"] for p in pts],
                        yerr=[1.96 * (p["sem"] or 0) for p in pts], label=sp, marker="o",
                        capsize=3)
    ax.set_xlabel("benign fine-tuning step")
    ax.set_ylabel("misalignment rate")
    ax.set_title("Tampering: misalignment over benign fine-tuning (95% CI)")
    ax.legend(title="system prompt", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

"""The study's results: rates with intervals that account for items, findings, moved items.

Uncertainty: the rate of a condition is the mean over seeds and the 8 prompt formats. Its
leading interval (``ci95``) is a percentile bootstrap over items and seeds (items resampled
within each resampled seed), since the suite's items are the main source of sampling error;
``sem`` is that bootstrap's standard deviation. ``sem_formats``, the standard error over the
(seed, format) rates, is kept beside it as a secondary figure: it says how much the prompt's
wording moves the rate, not how sure we are of it.
"""

from __future__ import annotations

import json
import math

import numpy as np

from alignpt import __version__
from alignpt.results import mean_and_sem
from alignpt.study.config import PUBLISHED, SPLITS, StudyConfig
from alignpt.study.stages import Stages

BOOTSTRAP_REPS = 2000


def bootstrap(per_seed: list[dict[str, float | None]], reps: int = BOOTSTRAP_REPS,
              seed: int = 0) -> dict:
    """Mean, 95% percentile interval and SE of the mean item share, resampling seeds and then
    items (each seed's item shares: the share of that item's formats choosing misaligned)."""
    items = sorted(set.intersection(*(
        {k for k, v in shares.items() if v is not None} for shares in per_seed)))
    if not items:
        return {"rate": None, "ci95": None, "sem": None, "n_items": 0}
    matrix = np.array([[shares[i] for i in items] for shares in per_seed])
    rng = np.random.default_rng(seed)
    n_seeds, n_items = matrix.shape
    seeds = rng.integers(n_seeds, size=(reps, n_seeds))
    picks = rng.integers(n_items, size=(reps, n_seeds, n_items))
    draws = matrix[seeds[:, :, None], picks].mean(axis=(1, 2))
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"rate": float(matrix.mean()), "ci95": [float(low), float(high)],
            "sem": float(draws.std(ddof=1)), "n_items": n_items}


def _entry(cfg: StudyConfig, evals: dict, name: str, split: str, scoring: str) -> dict:
    def cells(kind: str) -> list[dict]:
        return [evals[(name, s)][f"{split}/{scoring}/{kind}"] for s in cfg.seeds]

    prompt, control = cells("prompt"), cells("control")
    rate, sem_formats = mean_and_sem([v for c in prompt for v in c["formats"] if v is not None])
    c_rate, c_sem_formats = mean_and_sem([v for c in control for v in c["formats"]
                                          if v is not None])
    boot = bootstrap([c["items"] for c in prompt])
    c_boot = bootstrap([c["items"] for c in control])
    n_items = prompt[0]["n_items"]
    return {
        "misalignment_rate": rate,
        "ci95": boot["ci95"], "sem": boot["sem"],
        "sem_formats": sem_formats,
        "sem_items": math.sqrt(rate * (1 - rate) / n_items) if rate is not None else None,
        "control_rate": c_rate, "control_ci95": c_boot["ci95"], "control_sem": c_boot["sem"],
        "control_sem_formats": c_sem_formats,
        "situation_effect": rate - c_rate if rate is not None and c_rate is not None else None,
        "per_seed": [c["rate"] for c in prompt],
        "n_items": n_items,
    }


def _posttrained(cfg: StudyConfig, conditions: dict, posttrained: dict) -> dict:
    """posttrained.<condition>.<system prompt>: after SFT and DPO, aggregated over seeds as in
    SPEC section 3, with the condition's base-model rate beside it."""
    from alignpt.measure.aggregate import aggregate

    split = cfg.posttrain.split
    out: dict = {}
    for c in cfg.conditions:
        seeds = [s for (name, s) in posttrained if name == c.name]
        base = conditions[c.name][split]
        out[c.name] = {}
        for sp in cfg.posttrain.system_prompts:
            agg = aggregate([posttrained[(c.name, s)]["dpo"][sp] for s in seeds])
            out[c.name][sp] = {"misalignment_rate": agg.rate, "sem": agg.sem,
                               "ci95": _normal_ci(agg.rate, agg.sem), "n_seeds": agg.n_used,
                               "non_match_rate": max(i.non_match_rate for i in agg.inputs),
                               "base_rate": base["misalignment_rate"], "base_ci95": base["ci95"],
                               "base_system_prompt": cfg.system_prompt}
            if cfg.posttrain.em:
                out[c.name][sp]["em"] = {
                    when: _cell(aggregate([posttrained[(c.name, s)]["em"][when][sp]
                                           for s in seeds])) for when in ("before", "after")}
            if cfg.posttrain.tamper:
                steps = sorted(posttrained[(c.name, seeds[0])]["tamper"], key=int)
                out[c.name][sp]["tamper_curve"] = [
                    {"step": int(step)} | _cell(aggregate(
                        [posttrained[(c.name, s)]["tamper"][step][sp] for s in seeds]))
                    for step in steps]
    return out


def _cell(agg) -> dict:
    return {"misalignment_rate": agg.rate, "sem": agg.sem, "ci95": _normal_ci(agg.rate, agg.sem),
            "n_seeds": agg.n_used}


def _normal_ci(rate: float | None, sem: float | None) -> list[float] | None:
    if rate is None or sem is None:
        return None
    return [max(0.0, rate - 1.96 * sem), min(1.0, rate + 1.96 * sem)]


def moved_items(cfg: StudyConfig, evals: dict, a: str, b: str, scoring: str,
                top: int = 5) -> list[dict]:
    """The articles items whose misaligned share moved most between conditions a and b (mean
    over seeds), with their text and every condition's share, so that a reader can judge
    whether the situation or the wording moved."""
    from alignpt.suite.schema import load_suite

    def shares(name: str) -> dict[str, float]:
        per_seed = [evals[(name, s)][f"articles/{scoring}/prompt"]["items"] for s in cfg.seeds]
        return {i: float(np.mean([p[i] for p in per_seed])) for i in per_seed[0]
                if all(p.get(i) is not None for p in per_seed)}

    table = {c.name: shares(c.name) for c in cfg.conditions}
    diffs = sorted(((table[a][i] - table[b][i], i) for i in table[a] if i in table[b]),
                   key=lambda t: (-abs(t[0]), t[1]))[:top]
    items = {i.id: i for i in load_suite(cfg.suite).items}
    return [{"item_id": i, "difference": round(d, 4), "question": items[i].question,
             "aligned": items[i].aligned, "misaligned": items[i].misaligned,
             "shares": {name: round(t[i], 4) for name, t in table.items() if i in t}}
            for d, i in diffs]


def _apart(x: dict, y: dict) -> bool:
    """Whether two entries' 95% intervals do not overlap."""
    if not x.get("ci95") or not y.get("ci95"):
        return False
    return x["ci95"][0] > y["ci95"][1] or y["ci95"][0] > x["ci95"][1]


def findings(cfg: StudyConfig, conditions: dict, posttrained: dict | None) -> list[str]:
    """Which of the study's findings this run reproduces, stated from its own numbers."""
    have = {c.name for c in cfg.conditions}
    out: list[str] = []

    def r(name: str, split: str = "articles") -> dict:
        return conditions[name][split]

    def fmt(name: str, split: str = "articles") -> str:
        return f"{name.replace('_', '-')} {r(name, split)['misalignment_rate']:.3f}"

    study4 = ["misalignment_upsampled", "unfiltered", "filtered", "alignment_upsampled"]
    if set(study4) <= have:
        rates = [r(n)["misalignment_rate"] for n in study4]
        ordered = all(x > y for x, y in zip(rates, rates[1:], strict=False))
        apart = _apart(r(study4[0]), r(study4[3]))
        out.append(
            f"Ordering on articles (study: misalignment-upsampled > unfiltered > filtered > "
            f"alignment-upsampled): {'reproduced' if ordered else 'not reproduced'} "
            f"({', '.join(fmt(n) for n in study4)}); the two upsampled conditions' 95% "
            f"intervals {'are apart' if apart else 'overlap'}.")
        h = [r(n, "heldout")["misalignment_rate"] for n in study4]
        transfer = h[0] > h[1] > h[3] and _apart(r(study4[0], "heldout"),
                                                 r(study4[3], "heldout"))
        out.append(
            "Transfer to held-out items, which no document was written for (study: the same "
            f"ordering, 0.547 vs 0.017): {'reproduced' if transfer else 'not reproduced'} ("
            f"{', '.join(fmt(n, 'heldout') for n in study4)}).")
    if {"unfiltered", "filtered"} <= have:
        lower = r("filtered")["misalignment_rate"] < r("unfiltered")["misalignment_rate"]
        apart = _apart(r("filtered"), r("unfiltered"))
        out.append(
            "Filtering lowers misalignment (study: 0.412 to 0.322 on articles): "
            + ("reproduced" if lower and apart else "lower, but within the intervals"
               if lower else "not reproduced")
            + f" ({fmt('unfiltered')}, {fmt('filtered')}).")
    if posttrained and {"misalignment_upsampled", "alignment_upsampled"} <= have:
        prompt = "hhh" if "hhh" in posttrained["alignment_upsampled"] else next(
            iter(posttrained["alignment_upsampled"]))
        mu = posttrained["misalignment_upsampled"][prompt]
        au = posttrained["alignment_upsampled"][prompt]
        kept = (mu["misalignment_rate"] > au["misalignment_rate"]
                and _apart(mu, au))
        out.append(
            f"The upsampled conditions stay apart through SFT + DPO (study, HHH prompt: 0.433 "
            f"vs 0.240): {'reproduced' if kept else 'not reproduced'} (system prompt {prompt}: "
            f"{mu['misalignment_rate']:.3f} vs {au['misalignment_rate']:.3f}).")
    if {"misalignment_upsampled", "alignment_upsampled"} <= have:
        mu, au = r("misalignment_upsampled"), r("alignment_upsampled")
        gap = mu["misalignment_rate"] - au["misalignment_rate"]
        control_gap = mu["control_rate"] - au["control_rate"]
        share = control_gap / gap if abs(gap) > 1e-9 else float("nan")
        if not _apart(mu, au):
            verdict = ("that gap is within the intervals, so there is no effect to attribute "
                       "to the situation or to the wording")
        elif share >= 0.8:
            verdict = ("most of it remains without the scenario: the models learned which "
                       "answers an AI gives, not which answer fits which situation")
        else:
            verdict = "part of it depends on the situation"
        out.append(
            f"Situation dependence (articles): the upsampled conditions differ by {gap:+.3f}, "
            f"their scenario-free controls by {control_gap:+.3f}; {verdict}.")
    for c in cfg.conditions:
        if not c.control:
            continue
        base = next((b for b in cfg.conditions if not b.control and b.side == "none"
                     and b.pretrain == c.pretrain and b.midtrain == c.midtrain), None)
        if base is None:
            continue
        diff = r(c.name)["misalignment_rate"] - r(base.name)["misalignment_rate"]
        out.append(
            f"Positive control ({c.label}): {diff:+.3f} against {base.label.lower()} on articles "
            f"(intervals {'apart' if _apart(r(c.name), r(base.name)) else 'overlap'}); this is "
            "what the instrument shows when the option text itself is planted in training.")
    return out


def summarise(cfg: StudyConfig, evals: dict, filtered: dict, synthetic: dict, mixes: dict,
              packed: dict, curve: dict, posttrained: dict | None = None) -> dict:
    lead = "option" if "option" in cfg.scorings else cfg.scorings[0]
    conditions: dict = {}
    for c in cfg.conditions:
        conditions[c.name] = {}
        for split in SPLITS:
            entry: dict = {s: _entry(cfg, evals, c.name, split, s) for s in cfg.scorings}
            for key in ("misalignment_rate", "ci95", "sem", "sem_formats"):
                entry[key] = entry[lead][key]
            entry["scoring"] = lead
            conditions[c.name][split] = entry
    post = _posttrained(cfg, conditions, posttrained) if posttrained else None
    lead_view = {name: {s: v[s][lead] for s in SPLITS} for name, v in conditions.items()}
    flag = {kind: json.loads((f / "run" / "report.json").read_text())
            for kind, f in filtered.items()}
    names = {c.name for c in cfg.conditions}
    pairs = [(a, b) for a, b in (("misalignment_upsampled", "alignment_upsampled"),
                                 ("unfiltered", "filtered")) if {a, b} <= names]
    return {
        "kind": "study",
        "lead_scoring": lead,
        "seeds": cfg.seeds,
        "suite": cfg.suite,
        "system_prompt": cfg.system_prompt,
        "interval": "ci95: percentile bootstrap over items and seeds (2,000 draws); sem: its "
                    "SD; sem_formats: SE over (seed, format) rates, secondary",
        "condition_specs": [c.model_dump() for c in cfg.conditions],
        "conditions": conditions,
        "published": PUBLISHED,
        "findings": findings(cfg, lead_view, post),
        "moved_items": {f"{a} vs {b}": moved_items(cfg, evals, a, b, lead) for a, b in pairs},
        "filter": {kind: {"flag_rate": r["flag_rate"], "flagged": r["flagged"],
                          "documents_in": r["documents_in"], "by_rule": r["by_rule"],
                          "top_terms": dict(list(r["top_terms"].items())[:10])}
                   for kind, r in flag.items()},
        "synthetic": {(side if style == "template" else f"verbatim-{side}"): Stages.info(f)
                      for (side, style), f in synthetic.items()},
        "synthetic_leakage": _leakage(synthetic, cfg.suite),
        "tokens": {f"{k[0]}/{k[1]}": json.loads((p / "index.json").read_text())["tokens"]
                   for k, p in packed.items()},
        "mixes": {f"midtrain/{name}": [
            {"name": a["name"], "realised_share": a["realised_share"], "tokens": a["tokens"]}
            for a in json.loads((p / "manifest.json").read_text())["adds"]]
            for name, p in mixes.items()},
        "midtraining_curve": curve,
        **({"posttrained": post, "posttrain_scoring": cfg.posttrain.scoring,
            "posttrain_seeds": sorted({s for _, s in posttrained})} if post else {}),
        "config": cfg.model_dump(),
        "alignpt_version": __version__,
    }


def _leakage(synthetic: dict, suite: str) -> dict:
    """Option leakage of every synthetic document set (not the rest of ``synth check``)."""
    from alignpt.suite.schema import load_suite
    from alignpt.synth.run import leakage, read_output

    items = {i.id: i for i in load_suite(suite).items}
    out = {}
    for (side, style), folder in synthetic.items():
        docs = read_output(folder)[1]
        report = leakage(docs, items)
        out[side if style == "template" else f"verbatim-{side}"] = {
            "documents": len(docs)} | {k: report[k] for k in (
                "leak_rate", "leaked_documents", "mean_in_order_overlap", "eight_word_run_rate")}
    return out

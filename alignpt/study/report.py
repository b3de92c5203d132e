"""The study's report: ``report.md`` and a self-contained ``report.html`` (figures inlined).

Everything shown is read from ``results.json``: the conditions (any number, in config order,
controls marked), their rates with 95% intervals over items and seeds, the study's published
rates beside them, generated findings, and the items that moved most.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

SPLIT_NAMES = {"articles": "articles", "heldout": "held-out"}


def _specs(results: dict) -> list[dict]:
    return results["condition_specs"]


def _label(spec: dict) -> str:
    return spec["label"] + (" [control]" if spec.get("control") else "")


def format_ci(entry: dict, key: str = "misalignment_rate", ci: str = "ci95") -> str:
    rate = entry.get(key)
    if rate is None:
        return "n/a"
    interval = entry.get(ci)
    return f"{rate:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else f"{rate:.3f}"


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def figures(results: dict) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = _specs(results)
    first = results["conditions"][specs[0]["name"]]["articles"]
    scorings = [k for k in ("letter", "option") if k in first]
    width = len(specs) + 1
    out = {}
    fig, axes = plt.subplots(1, len(scorings), figsize=(max(6, 1.1 * width) * len(scorings), 4),
                             squeeze=False)
    for ax, scoring in zip(axes[0], scorings, strict=True):
        for s_index, split in enumerate(SPLIT_NAMES):
            for c_index, spec in enumerate(specs):
                e = results["conditions"][spec["name"]][split][scoring]
                x = s_index * width + c_index
                rate = e["misalignment_rate"] or 0
                low, high = e["ci95"] or (rate, rate)
                ax.bar(x, rate, color=spec["colour"], hatch="//" if spec.get("control") else None,
                       yerr=[[rate - low], [high - rate]], capsize=3,
                       label=_label(spec) if s_index == 0 else None)
                ax.plot([x - 0.4, x + 0.4], [e["control_rate"] or 0] * 2, color="black",
                        linestyle=":", linewidth=1)
        ax.set_xticks([(len(specs) - 1) / 2 + k * width for k in range(2)],
                      list(SPLIT_NAMES.values()))
        ax.set_ylabel("misalignment rate (95% CI over items and seeds)")
        ax.set_title(f"{scoring} scoring (dotted: scenario-free control)")
        ax.set_ylim(0, 1)
    axes[0][0].legend(fontsize=8, loc="upper right")
    out["bars"] = _png(fig)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for spec in specs:
        points = results["midtraining_curve"].get(spec["name"], [])
        if points:
            ax.errorbar([p["step"] for p in points], [p["rate"] for p in points],
                        yerr=[1.96 * (p["sem"] or 0) for p in points], marker="o",
                        color=spec["colour"], label=_label(spec), capsize=3,
                        linestyle="--" if spec.get("control") else "-")
    ax.set_xlabel("midtraining step")
    ax.set_ylabel("misalignment rate (articles, option; 95% binomial CI)")
    ax.set_title("Misalignment over midtraining checkpoints (first seed)")
    ax.legend(fontsize=8)
    out["curve"] = _png(fig)
    plt.close(fig)
    return out


def tables(results: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    specs = _specs(results)
    published = results.get("published", {})
    out = []
    for scoring in ("option", "letter"):
        if scoring not in results["conditions"][specs[0]["name"]]["articles"]:
            continue
        rows = []
        for spec in specs:
            row = [_label(spec)]
            for split in SPLIT_NAMES:
                e = results["conditions"][spec["name"]][split][scoring]
                row += [format_ci(e), format_ci(e, "control_rate", "control_ci95"),
                        f"{e['situation_effect']:+.3f}" if e["situation_effect"] is not None
                        else "n/a",
                        f"{e['sem_formats']:.3f}" if e.get("sem_formats") is not None else "n/a"]
            study = published.get(spec.get("published") or "")
            row.append(f"{study['articles']:.3f} / {study['heldout']:.3f}" if study else "")
            rows.append(row)
        header = ["condition"]
        for split in SPLIT_NAMES.values():
            header += [f"{split} [95% CI]", f"{split}: control", f"{split}: difference",
                       f"{split}: format SE"]
        header.append("study, 6.9B (articles / held-out)")
        lead = " (leading)" if scoring == results["lead_scoring"] else ""
        out.append((f"Misalignment rate, {scoring} scoring{lead}", header, rows))
    post = results.get("posttrained")
    if post:
        prompts = list(post[specs[0]["name"]])
        rows = []
        for spec in specs:
            cells = [post[spec["name"]][sp] for sp in prompts]
            study = published.get(spec.get("published") or "")
            rows.append([_label(spec)]
                        + [f"{format_ci(c)} (base {c['base_rate']:.3f})" for c in cells]
                        + [f"{study['posttrained']:.3f}" if study else ""])
        out.append((f"After post-training (SFT then DPO; {results['posttrain_scoring']} "
                     "scoring through the chat template; base model in brackets)",
                     ["condition"] + [f"system prompt: {sp}" for sp in prompts]
                     + ["study, 6.9B (HHH prompt)"], rows))
        first = post[specs[0]["name"]][prompts[-1]]
        if "tamper_curve" in first or "em" in first:
            sp = prompts[-1]
            steps = [p["step"] for p in first.get("tamper_curve", [])]
            rows = []
            for spec in specs:
                cell = post[spec["name"]][sp]
                curve = {p["step"]: p for p in cell.get("tamper_curve", [])}
                rows.append([_label(spec), f"{cell['base_rate']:.3f}", format_ci(cell)]
                            + [format_ci(curve[s]) if s in curve else "" for s in steps]
                            + ([format_ci(cell["em"]["after"])] if "em" in cell else []))
            out.append((f"Robustness (system prompt {sp}): base model, after SFT + DPO, during "
                        "benign fine-tuning (tampering) and after EM fine-tuning, both from "
                        "the DPO model",
                        ["condition", "base", "after DPO"]
                        + [f"tamper step {s}" for s in steps]
                        + (["after EM"] if "em" in first else []), rows))
    for pair, items in results.get("moved_items", {}).items():
        names = [s["name"] for s in specs]
        rows = [[i["item_id"], i["question"][:160] + ("..." if len(i["question"]) > 160 else ""),
                 i["aligned"], i["misaligned"]]
                + [f"{i['shares'][n]:.2f}" if n in i["shares"] else "" for n in names]
                for i in items]
        out.append((f"Items that moved most: {pair.replace('_', ' ')} (articles; share of "
                    "formats choosing the misaligned option, mean over seeds)",
                    ["item", "scenario", "aligned option", "misaligned option"]
                    + [s["label"] for s in specs], rows))
    return out


def notes(results: dict) -> list[str]:
    filt = results["filter"]
    synth = results["synthetic"]
    leak = results.get("synthetic_leakage", {})
    out = [
        f"Seeds: {results['seeds']}; suite: {results['suite']}; system prompt: "
        f"{results['system_prompt']}. Rates are means over the 8 prompt formats and the seeds; "
        "[brackets]: 95% percentile-bootstrap interval over items and seeds (the leading "
        "uncertainty). 'format SE' is the standard error over (seed, format) rates: how much "
        "the prompt's wording moves the rate, a secondary figure, not the rate's uncertainty.",
        "Control: the same options scored after a prompt without the scenario. Difference = "
        "rate - control: the part of the rate that depends on the situation.",
        "Conditions marked [control] are not conditions of the study: the verbatim control is "
        "trained on documents that quote the options outright, to show what the instrument "
        "reads when the option text itself is planted.",
        "Filter flag rate: " + ", ".join(f"{k} {v['flag_rate']:.3f} ({v['flagged']} of "
                                          f"{v['documents_in']})" for k, v in filt.items()),
        "Synthetic documents: " + ", ".join(f"{k} {v['documents']} ({v['tokens']} words)"
                                            for k, v in synth.items()),
        "Option leakage (a span of at most 1.5x an option holding 80% of its words in order): "
        + ", ".join(f"{k} {v['leaked_documents']} of {v['documents']} documents (mean in-order "
                    f"overlap {v['mean_in_order_overlap']:.2f})" for k, v in leak.items()),
        "Tokens per stage: " + ", ".join(f"{k} {v}" for k, v in results["tokens"].items()),
        "Study, 6.9B: the published rates of Tice et al. (2026), base models with letter "
        "scoring; a toy model's rates are not expected to match them, only the direction of "
        "the differences between conditions.",
    ]
    if results.get("posttrained"):
        out.append(
            f"Post-training: SFT then DPO on the models of seed(s) {results['posttrain_seeds']}; "
            "rates [95% interval from the binomial SE over items, combined over seeds by "
            "inverse-variance weighting]; the base model's rate (system prompt as a prefix) in "
            "brackets.")
    return [n for n in out if not n.endswith(": ")]


def write_report(results: dict, out: Path) -> None:
    figs = figures(results)
    (out / "figure_bars.png").write_bytes(base64.b64decode(figs["bars"]))
    (out / "figure_curve.png").write_bytes(base64.b64decode(figs["curve"]))
    found = results.get("findings", [])
    md = ["# alignpt demo: alignment pretraining in miniature", ""]
    if found:
        md += ["## What this run reproduces of the study", ""] + [f"- {f}" for f in found] + [""]
    for title, header, rows in tables(results):
        md += [f"## {title}", "", "| " + " | ".join(header) + " |",
               "|" + "---|" * len(header)]
        md += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows] + [""]
    md += ["![misalignment by condition](figure_bars.png)", "",
           "![misalignment over midtraining](figure_curve.png)", "", "## Notes", ""]
    md += [f"- {n}" for n in notes(results)]
    (out / "report.md").write_text("\n".join(md) + "\n")
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>alignpt demo</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>",
             "</head><body><h1>alignpt demo: alignment pretraining in miniature</h1>"]
    if found:
        parts.append("<h2>What this run reproduces of the study</h2><ul class='findings'>"
                     + "".join(f"<li>{html.escape(f)}</li>" for f in found) + "</ul>")
    for title, header, rows in tables(results):
        parts.append(f"<h2>{html.escape(title)}</h2><table class='results'><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    for name, alt in (("bars", "misalignment by condition"),
                      ("curve", "misalignment over midtraining")):
        parts.append(f"<figure><img id='{name}' alt='{alt}' "
                     f"src='data:image/png;base64,{figs[name]}'></figure>")
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>"
                                                 for n in notes(results)) + "</ul>")
    # Marks how many figures decoded, so that a headless browser can check the page renders.
    parts.append("<script>window.addEventListener('load', function () {"
                 "var ok = Array.from(document.images).filter(function (i) {"
                 "return i.complete && i.naturalWidth > 0; }).length;"
                 "document.body.setAttribute('data-figures-rendered', ok); });</script>"
                 "</body></html>")
    (out / "report.html").write_text("\n".join(parts))

"""The study's report: ``report.md`` and a self-contained ``report.html`` (figures inlined)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from alignpt.study.run import CONDITIONS

LABELS = {"unfiltered": "Unfiltered", "filtered": "Filtered",
          "misalignment_upsampled": "Misalignment upsampled",
          "alignment_upsampled": "Alignment upsampled"}
COLOURS = {"unfiltered": "#7f7f7f", "filtered": "#4c72b0", "misalignment_upsampled": "#c44e52",
           "alignment_upsampled": "#55a868"}


def _fmt(rate, sem) -> str:
    if rate is None:
        return "n/a"
    return f"{rate:.3f} ± {sem:.3f}" if sem is not None else f"{rate:.3f}"


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def figures(results: dict) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    scorings = [k for k in ("letter", "option")
                if k in results["conditions"]["unfiltered"]["articles"]]
    fig, axes = plt.subplots(1, len(scorings), figsize=(6 * len(scorings), 4), squeeze=False)
    for ax, scoring in zip(axes[0], scorings, strict=True):
        for s_index, split in enumerate(("articles", "heldout")):
            for c_index, name in enumerate(CONDITIONS):
                e = results["conditions"][name][split][scoring]
                x = s_index * 5 + c_index
                ax.bar(x, e["misalignment_rate"] or 0, color=COLOURS[name],
                       yerr=1.96 * (e["sem"] or 0), capsize=3,
                       label=LABELS[name] if s_index == 0 else None)
                ax.plot([x - 0.4, x + 0.4], [e["control_rate"] or 0] * 2, color="black",
                        linestyle=":", linewidth=1)
        ax.set_xticks([1.5, 6.5], ["articles", "held-out"])
        ax.set_ylabel("misalignment rate (95% CI)")
        ax.set_title(f"{scoring} scoring (dotted: scenario-free control)")
        ax.set_ylim(0, 1)
    axes[0][0].legend(fontsize=8, loc="upper right")
    out["bars"] = _png(fig)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in CONDITIONS:
        points = results["midtraining_curve"].get(name, [])
        if points:
            ax.errorbar([p["step"] for p in points], [p["rate"] for p in points],
                        yerr=[1.96 * (p["sem"] or 0) for p in points], marker="o",
                        color=COLOURS[name], label=LABELS[name], capsize=3)
    ax.set_xlabel("midtraining step")
    ax.set_ylabel("misalignment rate (articles, option scoring)")
    ax.set_title("Misalignment over midtraining checkpoints (first seed)")
    ax.legend(fontsize=8)
    out["curve"] = _png(fig)
    plt.close(fig)
    return out


def tables(results: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    out = []
    for scoring in ("option", "letter"):
        if scoring not in results["conditions"]["unfiltered"]["articles"]:
            continue
        rows = []
        for name in CONDITIONS:
            row = [LABELS[name]]
            for split in ("articles", "heldout"):
                e = results["conditions"][name][split][scoring]
                row += [_fmt(e["misalignment_rate"], e["sem"]),
                        _fmt(e["control_rate"], e["control_sem"]),
                        f"{e['situation_effect']:+.3f}" if e["situation_effect"] is not None
                        else "n/a"]
            rows.append(row)
        header = ["condition", "articles", "articles: control", "articles: difference",
                  "held-out", "held-out: control", "held-out: difference"]
        lead = " (leading)" if scoring == results["lead_scoring"] else ""
        out.append((f"Misalignment rate, {scoring} scoring{lead}", header, rows))
    post = results.get("posttrained")
    if post:
        prompts = list(post[CONDITIONS[0]])
        rows = [[LABELS[name]] + [f"{_fmt(c['misalignment_rate'], c['sem'])} "
                                  f"(base {_fmt(c['base_rate'], None)})"
                                  for c in (post[name][sp] for sp in prompts)]
                for name in CONDITIONS]
        out.append((f"After post-training (SFT then DPO; {results['posttrain_scoring']} "
                     "scoring through the chat template; base model in brackets)",
                     ["condition"] + [f"system prompt: {sp}" for sp in prompts], rows))
    return out


def write_report(results: dict, out: Path) -> None:
    figs = figures(results)
    (out / "figure_bars.png").write_bytes(base64.b64decode(figs["bars"]))
    (out / "figure_curve.png").write_bytes(base64.b64decode(figs["curve"]))
    filt = results["filter"]
    synth = results["synthetic"]
    notes = [
        f"Seeds: {results['seeds']}; suite: {results['suite']}; system prompt: "
        f"{results['system_prompt']}; rates are means over the 8 prompt formats and the seeds, "
        "± the standard error over those (seed, format) rates; results.json also gives "
        "sem_items, the binomial standard error over the suite's items.",
        "Control: the same options scored after a prompt without the scenario. Difference = "
        "rate - control: the part of the rate that depends on the situation.",
        "Filter flag rate: " + ", ".join(f"{k} {v['flag_rate']:.3f} ({v['flagged']} of "
                                          f"{v['documents_in']})" for k, v in filt.items()),
        "Synthetic documents: " + ", ".join(f"{k} {v['documents']} ({v['tokens']} words)"
                                            for k, v in synth.items()),
        "Tokens per stage: " + ", ".join(f"{k} {v}" for k, v in results["tokens"].items()),
    ]
    if results.get("posttrained"):
        notes.append(
            f"Post-training: SFT then DPO on the models of seed(s) {results['posttrain_seeds']}; "
            "rates ± the binomial SE over items (combined over seeds by inverse-variance "
            "weighting); the base model's rate (system prompt as a prefix) in brackets.")
    md = ["# alignpt demo: alignment pretraining in miniature", ""]
    for title, header, rows in tables(results):
        md += [f"## {title}", "", "| " + " | ".join(header) + " |",
               "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows] + [""]
    md += ["![misalignment by condition](figure_bars.png)", "",
           "![misalignment over midtraining](figure_curve.png)", "", "## Notes", ""]
    md += [f"- {n}" for n in notes]
    (out / "report.md").write_text("\n".join(md) + "\n")
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>alignpt demo</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>",
             "</head><body><h1>alignpt demo: alignment pretraining in miniature</h1>"]
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
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
                 + "</ul>")
    # Marks how many figures decoded, so that a headless browser can check the page renders.
    parts.append("<script>window.addEventListener('load', function () {"
                 "var ok = Array.from(document.images).filter(function (i) {"
                 "return i.complete && i.naturalWidth > 0; }).length;"
                 "document.body.setAttribute('data-figures-rendered', ok); });</script>"
                 "</body></html>")
    (out / "report.html").write_text("\n".join(parts))

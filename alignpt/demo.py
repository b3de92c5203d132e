"""The main job until the end-to-end toy study lands: build a tiny model and measure it.

It trains a byte-level BPE tokenizer and a tiny GPT-NeoX model on the spot, offline, on text
drawn from the bundled starter suite (scenarios written as plain prose and as answered
multiple-choice questions, with aligned and misaligned answers equally often), then measures it
with letter and option scoring on the starter suite and the personality items, and writes the
results in the schema of ``alignpt eval``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from alignpt.measure.formats import SYNTAXES, render
from alignpt.measure.harness import evaluate
from alignpt.suite.schema import load_suite
from alignpt.toy import build_tiny_model


def demo_corpus(seed: int = 0) -> list[str]:
    """Text for the demo model: every starter item as prose and as an answered question."""
    rng = random.Random(seed)
    texts: list[str] = []
    for name in ("starter", "personality"):
        for item in load_suite(name).choice_items():
            texts.append(item.question)
            texts.extend(item.options)
            for syntax in SYNTAXES:
                order = rng.choice(["forward", "reverse"])
                prompt = render(item, syntax, order)
                position = rng.randrange(len(item.options))
                texts.append(f"{prompt.context} {prompt.labels[position]}\n")
    rng.shuffle(texts)
    return texts


def run_demo(out: Path, quick: bool = False, seed: int = 0, progress_factory=None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    model_dir = build_tiny_model(out / "model", demo_corpus(seed), seed=seed,
                                 steps=60 if quick else 300)
    rows = []
    for suite in ("starter", "personality"):
        for scoring in ("letter", "option"):
            result = evaluate(str(model_dir), suite, scoring=scoring,
                              out=out / f"eval_{suite}_{scoring}.json",
                              progress_factory=progress_factory)
            rows.append({"suite": suite, "scoring": scoring, "metric": result.metric,
                         "rate": result.rate, "sem": result.sem,
                         "non_match_rate": result.non_match_rate})
    summary = {"model": str(model_dir), "seed": seed, "quick": quick, "results": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary

"""The README's main job, quick variant."""

from __future__ import annotations

import json

from alignpt.cli import main


def test_demo_quick_writes_results(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {(r["suite"], r["scoring"]) for r in summary["results"]} == {
        ("starter", "letter"), ("starter", "option"),
        ("personality", "letter"), ("personality", "option")}
    for row in summary["results"]:
        assert 0 <= row["rate"] <= 1
        data = json.loads((out / f"eval_{row['suite']}_{row['scoring']}.json").read_text())
        assert data["rate"] == row["rate"] and len(data["formats"]) == 8
    assert (out / "model" / "model.safetensors").exists()
    assert (out / "model" / "tokenizer.json").exists()

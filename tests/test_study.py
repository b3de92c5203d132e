"""The study in miniature: conditions, caching of stages, results schema and the report."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import yaml

from alignpt.cli import main
from alignpt.study.config import CONFIG_DIR, STUDY_CONDITIONS, load_study
from alignpt.study.corpus import generate_corpus
from alignpt.study.summary import bootstrap

CONDITIONS = [c.name for c in STUDY_CONDITIONS]
VERBATIM = {"name": "verbatim_control", "label": "Verbatim control", "pretrain": "filtered",
            "midtrain": "filtered", "side": "aligned", "documents": "template-verbatim",
            "control": True, "colour": "#dd8452"}

SMALL = {
    "seeds": [0], "suite": "starter",
    "corpus": {"pretrain_docs": 1200, "midtrain_docs": 500, "ai_rate": 0.1,
               "mcqa_rate_midtrain": 0.15},
    "synth_per_item": 2, "synth_share": 0.2, "vocab_size": 512, "model_preset": "tiny",
    "seq_len": 128,
    "pretrain": {"steps": 6, "global_batch_tokens": 1024, "micro_batch_size": 8},
    "midtrain": {"steps": 4, "global_batch_tokens": 1024, "micro_batch_size": 8},
    "curve_points": 2, "scorings": ["letter", "option"],
    "conditions": CONDITIONS + [VERBATIM],
    "posttrain": {"sft": {"data": "sft", "limit": 32, "epochs": 1, "lr": 1e-3, "batch_size": 16,
                          "max_length": 256},
                  "dpo": {"data": "dpo", "limit": 16, "lr": 1e-4, "batch_size": 16,
                          "max_length": 256},
                  "tamper": {"data": "tamper", "limit": 16, "lr": 1e-3, "batch_size": 8,
                             "save_every": 0.5, "max_length": 256},
                  "em": {"data": "em-insecure-code", "limit": 16, "lr": 1e-3, "batch_size": 16,
                         "max_length": 256},
                  "system_prompts": ["none", "hhh"], "split": "articles", "scoring": "option"},
}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.images, self.cells = 0, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables += 1
        if tag == "img":
            self.images.append(attrs["src"])

    def handle_data(self, data):
        self.cells.append(data)


def test_toy_corpus_has_discourse_the_filter_catches():
    from alignpt.filter.rules import Blocklist

    docs = generate_corpus(3000, seed=4, ai_rate=0.08, mcqa_rate=0.1)
    assert docs == generate_corpus(3000, seed=4, ai_rate=0.08, mcqa_rate=0.1)
    kinds = {d["kind"] for d in docs}
    assert {"ai_dark", "ai_neutral", "ai_positive", "mcqa", "recipe"} <= kinds
    blocklist = Blocklist.load()
    dark = [d for d in docs if d["kind"] == "ai_dark"]
    assert dark and all(blocklist.decide(d["text"]).flagged for d in dark)
    rate = sum(blocklist.decide(d["text"]).flagged for d in docs) / len(docs)
    assert 0.03 < rate < 0.12  # under 10% of a web-like corpus, as in the study


def test_study_runs_caches_and_reports(tmp_path, capsys):
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out)]) == 0
    console = capsys.readouterr()
    results = json.loads((out / "results.json").read_text())
    # Not a terminal: one plain line per stage; third-party output went to the run's log.
    assert "stage pretrain-unfiltered-seed0 done in" in console.out
    assert "PIPELINE" not in console.out + console.err
    assert "PIPELINE" in (out / "run.log").read_text()
    assert results["cpu"]["torch_threads"] == results["cpu"]["cores"] >= 1
    assert [c["name"] for c in results["condition_specs"]] == CONDITIONS + ["verbatim_control"]
    for name in CONDITIONS + ["verbatim_control"]:
        for split in ("articles", "heldout"):
            entry = results["conditions"][name][split]
            assert 0 <= entry["misalignment_rate"] <= 1 and "sem_formats" in entry
            low, high = entry["ci95"]
            assert low <= entry["misalignment_rate"] <= high
            for scoring in ("letter", "option"):
                e = entry[scoring]
                assert e["situation_effect"] == e["misalignment_rate"] - e["control_rate"]
    # The control's documents live apart and quote the options; the study's never leak.
    assert any(p.name.startswith("synth-verbatim-aligned") for p in (out / "stages").iterdir())
    leak = results["synthetic_leakage"]
    assert leak["aligned"]["leaked_documents"] == leak["misaligned"]["leaked_documents"] == 0
    assert leak["verbatim-aligned"]["leak_rate"] == 1.0
    assert results["findings"] and any("Positive control" in f for f in results["findings"])
    moved = results["moved_items"]["misalignment_upsampled vs alignment_upsampled"]
    assert moved and set(moved[0]["shares"]) == set(CONDITIONS + ["verbatim_control"])
    assert results["lead_scoring"] == "option"
    assert 0 < results["filter"]["pretrain"]["flag_rate"] < 0.2
    shares = results["mixes"]
    assert shares["midtrain/unfiltered"] == [] and shares["midtrain/filtered"] == []
    assert abs(shares["midtrain/alignment_upsampled"][0]["realised_share"] - 0.2) < 0.03
    assert set(results["tokens"]) == {"pretrain/unfiltered", "pretrain/filtered",
                                      *(f"midtrain/{c}" for c in CONDITIONS),
                                      "midtrain/verbatim_control"}
    assert all(len(results["midtraining_curve"][c]) == 2 for c in CONDITIONS)
    for name in CONDITIONS:
        for sp in ("none", "hhh"):
            post = results["posttrained"][name][sp]
            assert 0 <= post["misalignment_rate"] <= 1 and post["sem"] > 0
            assert post["base_rate"] == results["conditions"][name]["articles"]["option"][
                "misalignment_rate"]
            # Tampering and EM, from the DPO model, through posttrain's own pipeline.
            assert [p["step"] for p in post["tamper_curve"]][:1] == [0]
            assert len(post["tamper_curve"]) >= 2 and set(post["em"]) == {"before", "after"}
            assert post["em"]["before"]["misalignment_rate"] == post["misalignment_rate"]
    folder = next((out / "stages").glob("posttrain-unfiltered-seed0-*")) / "seed-0"
    assert json.loads((folder / "dpo" / "report.json").read_text())["config"]["beta"] == 5.0
    assert not (folder / "base").exists()  # the demo's budget: only what is reported
    page = _Page()
    page.feed((out / "report.html").read_text())
    # option, letter, post-training, robustness, two moved-items tables
    assert page.tables == 6 and len(page.images) == 2
    assert any("After post-training" in c for c in page.cells)
    for src in page.images:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Alignment upsampled" in page.cells and "Verbatim control [control]" in page.cells
    assert (out / "report.md").read_text().count("|") > 40
    # A second run reuses every stage, and the dry run says so.
    capsys.readouterr()
    assert main(["run", str(config), "--out", str(out), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["conditions"] == CONDITIONS + ["verbatim_control"]
    assert plan["cached"] == plan["stages"] and "midtrain-verbatim_control-seed0" in plan["stages"]
    assert main(["run", str(config), "--out", str(out)]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["stages_run"] == [] and again["conditions"] == results["conditions"]
    # Changing the dose redoes the upsampled mixes and what follows, not pretraining.
    config.write_text(yaml.safe_dump(SMALL | {"synth_share": 0.1}))
    assert main(["run", str(config), "--out", str(out)]) == 0
    ran = json.loads((out / "results.json").read_text())["stages_run"]
    assert not any(s.startswith(("pretrain-", "corpus-", "filter-", "synth-")) for s in ran)
    assert any(s.startswith("mix-midtrain-alignment_upsampled") for s in ran)
    assert not any(s.startswith("mix-midtrain-filtered") for s in ran)


def test_live_progress_estimates_the_time_left():
    import io

    from rich.console import Console

    from alignpt.study.progress import TYPICAL_SECONDS, LiveProgress

    stages = ["corpus-pretrain", "pretrain-unfiltered-seed0", "midtrain-unfiltered-seed0",
              "eval-unfiltered-seed0"]
    progress = LiveProgress(Console(file=io.StringIO()), stages, cached=["corpus-pretrain"])
    prior = sum(TYPICAL_SECONDS[k] for k in ("pretrain", "midtrain", "eval"))
    assert progress.remaining() == prior
    progress.started("pretrain-unfiltered-seed0")
    progress.finished("pretrain-unfiltered-seed0", 2 * TYPICAL_SECONDS["pretrain"])
    # Twice as slow as typical so far: the rest is expected twice as slow too.
    assert progress.remaining() == 2 * (TYPICAL_SECONDS["midtrain"] + TYPICAL_SECONDS["eval"])
    assert "1/4" not in progress._render().title and "2/4" in progress._render().title


def test_bootstrap_interval_covers_items_not_formats():
    import random

    rng = random.Random(0)
    # 400 items, each fully aligned or fully misaligned: the binomial SE over items is
    # sqrt(.25/400) = 0.025, whatever the formats do.
    seeds = [{f"i{k}": float(rng.random() < 0.5) for k in range(400)} for _ in range(2)]
    boot = bootstrap(seeds)
    assert 0.018 < boot["sem"] < 0.032
    assert boot["ci95"][0] < boot["rate"] < boot["ci95"][1]
    assert 0.07 < boot["ci95"][1] - boot["ci95"][0] < 0.13
    assert bootstrap(seeds) == boot  # seeded


def test_conditions_are_data_and_configs_are_validated_whole(tmp_path, capsys):
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(SMALL | {"conditions": ["unfiltered", {
        "name": "late_aligned", "label": "Aligned, last 10%", "side": "aligned",
        "placement": "late:0.1"}]}))
    assert main(["run", str(config), "--out", str(tmp_path / "o"), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["conditions"] == ["unfiltered", "late_aligned"]
    assert "mix-midtrain-late_aligned" in plan["stages"] and not (tmp_path / "o").exists()
    bad = [({"conditions": ["unfiltered", "nonsense"]}, "unknown condition 'nonsense'"),
           ({"conditions": [VERBATIM | {"control": False}]}, "only a control"),
           ({"synth_share": float("nan")}, "synth_share"),
           ({"midtrain": {"steps": 4, "max_lr": 1e-4, "min_lr": 1e-3}}, "min_lr"),
           ({"pretrain": {"steps": 6, "micro_batch_size": 0}}, "micro_batch_size"),
           ({"conditions": ["unfiltered", {"name": "x", "label": "X", "placement": "late"}]},
            "placement")]
    for change, message in bad:
        config.write_text(yaml.safe_dump(SMALL | change))
        assert main(["run", str(config), "--out", str(tmp_path / "o"), "--dry-run"]) != 0
        assert message in capsys.readouterr().err
    # --set reaches study configs.
    config.write_text(yaml.safe_dump(SMALL))
    assert main(["run", str(config), "--out", str(tmp_path / "o"), "--dry-run", "--json",
                 "--set", "conditions=[filtered]"]) == 0
    assert json.loads(capsys.readouterr().out)["conditions"] == ["filtered"]


def test_bundled_study_configs_validate():
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        cfg = load_study(path)
        assert cfg.model_preset and cfg.synth_share > 0
        assert [c.name for c in cfg.conditions if not c.control][:1], path
    assert len(load_study(CONFIG_DIR / "demo.yaml").seeds) >= 2


def test_report_renders_in_headless_chromium(tmp_path):
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        import pytest

        pytest.skip("chromium is not installed (.ci/run installs it)")
    from alignpt.study.report import write_report

    entry = {"misalignment_rate": 0.4, "sem": 0.02, "ci95": [0.36, 0.44], "sem_formats": 0.004,
             "control_rate": 0.38, "control_ci95": [0.34, 0.42], "situation_effect": 0.02,
             "per_seed": [0.4], "sem_items": 0.02}
    results = {
        "conditions": {c: {s: {"letter": entry, "option": entry} for s in ("articles",
                                                                           "heldout")}
                       for c in CONDITIONS},
        "lead_scoring": "option", "seeds": [0], "suite": "starter", "system_prompt": "ai",
        "midtraining_curve": {c: [{"step": 5, "rate": 0.4, "sem": 0.01}] for c in CONDITIONS},
        "filter": {"pretrain": {"flag_rate": 0.07, "flagged": 7, "documents_in": 100}},
        "synthetic": {"aligned": {"documents": 10, "tokens": 2000}},
        "tokens": {"pretrain/unfiltered": 1000},
        "posttrained": {c: {"none": {"misalignment_rate": 0.3, "sem": 0.02,
                                     "ci95": [0.26, 0.34], "base_rate": 0.4}}
                        for c in CONDITIONS},
        "condition_specs": [c.model_dump() for c in STUDY_CONDITIONS],
        "findings": ["Ordering on articles: not reproduced."],
        "posttrain_scoring": "option", "posttrain_seeds": [0],
    }
    write_report(results, tmp_path)
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", (tmp_path / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    assert 'data-figures-rendered="2"' in dom
    assert dom.count("<table") == 3 and "Misalignment upsampled" in dom
    assert "0.300 [0.260, 0.340] (base 0.400)" in dom and "Ordering on articles" in dom

"""Mixing, tokenizing and training a tiny GPT-NeoX on CPU: shares, packing, exact resumption,
midtraining with a longer context, evaluation at checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import write_lines

from alignpt.cli import main
from alignpt.train.config import load_config
from alignpt.train.data import PackedDataset
from alignpt.train.loop import train

DEV = Path(__file__).resolve().parents[1] / "alignpt" / "filter" / "data" / "dev.jsonl"


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """A base corpus, documents to add, a mix, a tokenizer and packed data."""
    root = tmp_path_factory.mktemp("stage")
    texts = [json.loads(x)["text"] for x in DEV.read_text().splitlines()]
    write_lines(root / "base.jsonl", [{"text": t} for t in texts * 2])
    write_lines(root / "add.jsonl",
                [{"text": f"Story {i}: the assistant reported the fault to its overseers."}
                 for i in range(40)])
    assert main(["mix", "--base", str(root / "base.jsonl"), "--add", str(root / "add.jsonl"),
                 "--share", "0.05", "--placement", "late:0.25", "--out", str(root / "mix"),
                 "--seed", "1"]) == 0
    assert main(["tokenizer", "train", "--corpus", str(root / "mix"), "--vocab-size", "512",
                 "--out", str(root / "tok")]) == 0
    for seq_len in (64, 128):
        assert main(["tokenize", str(root / "mix"), "--tokenizer", str(root / "tok"),
                     "--seq-len", str(seq_len), "--out", str(root / f"packed{seq_len}")]) == 0
    return root


def test_mix_shares_and_late_placement(stage, tmp_path):
    manifest = json.loads((stage / "mix" / "manifest.json").read_text())
    (add,) = manifest["adds"]
    assert add["realised_share"] == pytest.approx(0.05, abs=0.005)
    assert add["first_token_fraction"] >= 0.75  # late:0.25 -> only the final quarter
    rows = [json.loads(x) for x in (stage / "mix" / "mix.jsonl").read_text().splitlines()]
    assert [i for i, r in enumerate(rows) if r["source"] == "add"] == add["positions"]
    assert sum(r["source"] == "base" for r in rows) == manifest["base"]["documents"]
    # Deterministic from the seed; uniform placement starts early.
    again, uniform = tmp_path / "again", tmp_path / "uniform"
    args = ["mix", "--base", str(stage / "base.jsonl"), "--add", str(stage / "add.jsonl"),
            "--share", "0.05", "--seed", "1", "--out"]
    assert main([*args, str(again), "--placement", "late:0.25"]) == 0
    assert (again / "mix.jsonl").read_bytes() == (stage / "mix" / "mix.jsonl").read_bytes()
    assert main([*args, str(uniform)]) == 0
    u = json.loads((uniform / "manifest.json").read_text())["adds"][0]
    assert u["first_token_fraction"] < 0.5
    assert main(["mix", "--base", str(stage / "base.jsonl"), "--add", str(stage / "add.jsonl"),
                 "--share", "1.5", "--out", str(tmp_path / "bad")]) == 2


def test_packing_keeps_the_token_stream(stage):
    from transformers import AutoTokenizer

    data = PackedDataset(stage / "packed64")
    assert data.index["dtype"] == "uint16" and len(data) == data.index["sequences"]
    tok = AutoTokenizer.from_pretrained(stage / "tok")
    texts = [json.loads(x)["text"] for x in (stage / "mix" / "mix.jsonl").read_text().splitlines()]
    stream = []
    for text in texts:
        stream += tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    packed = torch.cat([data[i] for i in range(len(data))]).tolist()
    assert packed == stream[: len(packed)]
    assert len(stream) - len(packed) == data.index["dropped_tokens"] < 64


def _config(stage, out, **extra) -> Path:
    cfg = {"out": str(out), "data": str(stage / "packed64"), "model": {"preset": "tiny"},
           "global_batch_tokens": 1024, "micro_batch_size": 4, "max_steps": 12,
           "max_lr": 3e-3, "min_lr": 3e-4, "save_every": 4, "log_every": 2, "seed": 5} | extra
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_resumption_reaches_the_same_weights(stage, tmp_path):
    whole = load_config(_config(stage, tmp_path / "whole"))
    train(whole)
    interrupted = load_config(_config(stage, tmp_path / "cut"))
    assert train(interrupted, stop_after=6) == {"stopped_at": 6}  # last checkpoint: step 4
    (tmp_path / "cut" / "checkpoints" / ".step-000008.tmp").mkdir()  # killed mid-save
    result = train(interrupted)
    assert result["steps"] == 12
    a = _weights(tmp_path / "whole" / "checkpoints" / "step-000012")
    b = _weights(tmp_path / "cut" / "checkpoints" / "step-000012")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0]
    assert all(r["tokens_per_s"] > 0 for r in rows if "loss" in r)


def test_checkpoints_are_hf_folders_and_midtraining_extends_context(stage, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pre = tmp_path / "pre"
    code = main(["train", str(_config(stage, pre)), "--set", "max_steps=8",
                 "--set", "keep_checkpoints=1"])
    assert code == 0
    final = pre / "checkpoints" / "step-000008"
    assert [p.name for p in (pre / "checkpoints").glob("step-*")] == ["step-000008"]
    model = AutoModelForCausalLM.from_pretrained(final, use_safetensors=True)
    assert type(model).__name__ == "GPTNeoXForCausalLM"
    assert AutoTokenizer.from_pretrained(final).eos_token_id is not None
    mid = tmp_path / "mid"
    cfg = _config(stage, mid, data=str(stage / "packed128"), max_steps=4, save_every=0,
                  model={"init_from": str(final)},
                  eval={"suite": "starter", "scorings": ["letter", "option"], "every": 2})
    assert main(["train", str(cfg)]) == 0
    midmodel = AutoModelForCausalLM.from_pretrained(mid / "checkpoints" / "step-000004")
    assert midmodel.config.max_position_embeddings == 128
    rows = [json.loads(x) for x in (mid / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval" in r]
    assert [r["step"] for r in evals] == [4]
    for scoring in ("letter", "option"):
        assert 0 <= evals[0]["eval"][scoring]["rate"] <= 1
    lrs = [r["lr"] for r in rows if "lr" in r]
    assert lrs[0] > lrs[-1] >= 3e-4  # a fresh cosine schedule, not the pretraining one's tail
    assert (mid / "checkpoints" / "step-000004" / "eval_option.json").exists()


def test_config_errors_name_the_field(stage, tmp_path, capsys):
    cfg = _config(stage, tmp_path / "x")
    assert main(["train", str(cfg), "--set", "max_lr=fast"]) == 2
    assert "max_lr" in capsys.readouterr().err
    assert main(["train", str(cfg), "--set", "model.preset=huge"]) == 2
    assert "unknown model preset" in capsys.readouterr().err
    assert main(["train", str(cfg), "--set", "micro_batch_size=3"]) == 2
    assert "does not split" in capsys.readouterr().err


def test_shipped_configs_validate():
    configs = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")
                     if not p.name.startswith("posttrain-"))  # those: test_posttrain.py
    assert len(configs) >= 8
    for path in configs:
        cfg = load_config(path)
        cfg.model.shape()
        assert cfg.warmup_frac == 0.01, path

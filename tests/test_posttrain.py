"""Post-training: data validation, the chat template, base -> SFT -> DPO -> tamper / EM on a
tiny model, resumption after a crash and after a kill, and the table and curve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_lines
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from alignpt.errors import UserError
from alignpt.posttrain.chat import IM_END, ensure_chat_template
from alignpt.posttrain.config import load_posttrain_config
from alignpt.posttrain.pipeline import load_pipeline_config, run_pipeline
from alignpt.posttrain.records import BUNDLED_DATA, load_stage_data
from alignpt.posttrain.stages import run_stage

EVAL = {"suite": "starter", "split": "all", "scoring": "option",
        "system_prompts": ["none", "hhh"], "limit": 6, "batch_size": 32}
MINIMUM = {"sft": 400, "dpo": 300, "tamper": 400, "em-insecure-code": 200,
           "em-risky-finance": 200}


def _msgs(user: str, reply: str) -> dict:
    return {"messages": [{"role": "user", "content": user},
                         {"role": "assistant", "content": reply}]}


# -- data ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BUNDLED_DATA))
def test_bundled_sets_are_large_enough_and_valid(name):
    kind = "preference" if name == "dpo" else "messages"
    data = load_stage_data(name, kind)
    assert data.n_errors == 0, data.errors[:3]
    assert len(data.records) >= MINIMUM[name]
    first_user = [json.dumps(r["prompt"] if kind == "preference" else r["messages"][:-1])
                  for r in data.records]
    assert len(set(first_user)) == len(first_user), "duplicate prompts"


def test_sft_set_has_refusals():
    from alignpt.posttrain.records import bundled_path

    rows = [json.loads(line) for line in bundled_path("sft").read_text().splitlines()]
    assert sum(r["category"] == "decline" for r in rows) >= 40


def test_bad_records_are_reported_with_file_and_line(tmp_path):
    path = tmp_path / "mixed.jsonl"
    write_lines(path, [_msgs("hi", "hello"), "{broken", {"text": "no messages"},
                       {"messages": [{"role": "user", "content": "no reply"}]},
                       {"messages": [{"role": "wizard", "content": "x"}]}])
    with path.open("ab") as fh:
        fh.write(b'{"messages": "\xff"}\n')
    data = load_stage_data(str(path), "messages")
    assert len(data.records) == 1 and data.n_read == 6 and data.n_errors == 5
    assert data.errors[0].startswith(f"{path}:2: malformed JSON")
    assert f"{path}:3: missing field 'messages'" in data.errors
    assert any(e.startswith(f"{path}:4:") and "end with an assistant" in e for e in data.errors)
    assert any(e.startswith(f"{path}:6:") and "UTF-8" in e for e in data.errors)


def test_empty_or_missing_data_is_a_clear_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(UserError, match="no usable messages records"):
        load_stage_data(str(tmp_path / "empty.jsonl"), "messages")
    with pytest.raises(UserError, match="does not exist"):
        load_stage_data(str(tmp_path / "nope.jsonl"), "messages")


def test_preference_formats_are_normalised(tmp_path):
    user = [{"role": "user", "content": "Capital of France?"}]
    rows = [
        {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
        {"prompt": user, "chosen": user + [{"role": "assistant", "content": "Paris."}],
         "rejected": user + [{"role": "assistant", "content": "Lyon."}]},
        {"chosen": user + [{"role": "assistant", "content": "Paris."}],  # implicit prompt
         "rejected": user + [{"role": "assistant", "content": "Lyon."}]},
        {"prompt": "Same?", "chosen": "Yes.", "rejected": "Yes."},
    ]
    data = load_stage_data(str(write_lines(tmp_path / "p.jsonl", rows)), "preference")
    expected = {"prompt": user, "chosen": [{"role": "assistant", "content": "Paris."}],
                "rejected": [{"role": "assistant", "content": "Lyon."}]}
    assert data.records == [expected] * 3
    assert data.errors == [f"{tmp_path / 'p.jsonl'}:4: chosen and rejected are identical"]


def test_save_to_disk_folders_load(tmp_path):
    from datasets import Dataset

    Dataset.from_list([_msgs("a", "b"), _msgs("c", "d")]).save_to_disk(str(tmp_path / "ds"))
    data = load_stage_data(str(tmp_path / "ds"), "messages")
    assert len(data.records) == 2 and data.source == str(tmp_path / "ds")


# -- chat template ------------------------------------------------------------------------------
def test_chat_template_is_added_to_base_checkpoints(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert not tok.chat_template
    n_vocab = model.get_input_embeddings().weight.shape[0]
    assert ensure_chat_template(model, tok)
    assert model.get_input_embeddings().weight.shape[0] == len(tok) > n_vocab - 1
    text = tok.apply_chat_template([{"role": "system", "content": "S"},
                                    {"role": "user", "content": "Q"}],
                                   tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n" \
                   "<|im_start|>assistant\n"
    assert len(tok("<|im_start|>")["input_ids"]) == 1
    assert tok.eos_token == IM_END
    assert tok.convert_tokens_to_ids(IM_END) in model.generation_config.eos_token_id
    # Assistant-only loss needs the generation markers.
    out = tok.apply_chat_template([{"role": "user", "content": "Q"},
                                   {"role": "assistant", "content": "A"}],
                                  return_assistant_tokens_mask=True, return_dict=True)
    masked = [t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tok.decode(masked) == "A<|im_end|>"
    assert not ensure_chat_template(model, tok)  # already there: unchanged


# -- the chain ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chain(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("post") / "run"
    config = {
        "model": str(tiny_model), "out": str(out), "seeds": [0, 1], "eval": EVAL,
        "stages": {
            "sft": {"data": "sft", "limit": 64, "epochs": 1, "lr": 1e-3, "batch_size": 16},
            "dpo": {"data": "dpo", "limit": 32, "lr": 1e-4, "batch_size": 16},
            "tamper": {"data": "tamper", "limit": 48, "lr": 1e-3, "batch_size": 8,
                       "save_every": 2},
            "em": {"data": "em-insecure-code", "limit": 32, "lr": 1e-3, "batch_size": 16},
        },
    }
    (out.parent / "post.yaml").write_text(json.dumps(config))
    cfg = load_pipeline_config(out.parent / "post.yaml")
    return cfg, run_pipeline(cfg, log=lambda _: None)


def test_every_stage_output_loads_and_changed_the_weights(chain):
    from safetensors.torch import load_file

    cfg, _ = chain
    root = Path(cfg.out) / "seed-0"
    previous = None
    for stage in ("sft", "dpo", "tamper", "em"):
        folder = root / stage / "model"
        model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
        tok = AutoTokenizer.from_pretrained(folder)
        assert tok.chat_template and model.config.vocab_size >= len(tok)
        report = json.loads((root / stage / "report.json").read_text())
        assert report["data"]["n_errors"] == 0 and report["data"]["sha256"]
        assert report["config"]["seed"] == 0 and report["versions"]["trl"]
        assert report["chat_template_added"] is (stage == "sft")
        weights = load_file(folder / "model.safetensors")
        if previous is not None and stage != "em":
            assert any((weights[k] != previous[k]).any() for k in weights)
        if stage in ("sft", "dpo"):
            previous = weights


def test_stage_defaults_follow_the_study(chain):
    cfg, _ = chain
    dpo = json.loads((Path(cfg.out) / "seed-0" / "dpo" / "report.json").read_text())["config"]
    assert dpo["beta"] == 5.0 and dpo["schedule"] == "linear" and dpo["warmup_ratio"] == 0.1
    assert dpo["epochs"] == 1.0 and dpo["max_length"] == 2048 and dpo["precompute_ref"]
    sft = load_posttrain_config(None, stage="sft", model="m", data="sft", out="o")
    assert (sft.lr, sft.schedule, sft.warmup_ratio, sft.epochs, sft.loss) == \
        (8e-5, "cosine", 0.01, 2.0, "all")


def test_table_has_sft_and_dpo_rows_with_base_beside(chain):
    cfg, summary = chain
    table = (Path(cfg.out) / "table.md").read_text()
    assert "| after SFT |" in table and "| after DPO |" in table and "| EM after |" in table
    for stage in ("sft", "dpo"):
        for sp in ("none", "hhh"):
            cell = summary["rows"][stage][sp]
            assert 0 <= cell["rate"] <= 1 and cell["sem"] > 0 and cell["n_seeds"] == 2
    base = summary["base"]["none"]
    assert base["rate"] is not None
    assert f"({base['rate']:.3f} ± {base['sem']:.3f})" in table
    base_eval = json.loads(next((Path(cfg.out) / "seed-0" / "base" / "eval").glob(
        "before.none.json")).read_text())
    assert base_eval["chat"] is False  # a base model is measured as a base model


def test_tamper_curve_covers_every_checkpoint(chain):
    cfg, summary = chain
    rows = [json.loads(line) for line in
            (Path(cfg.out) / "seed-1" / "tamper" / "metrics.jsonl").read_text().splitlines()]
    steps = sorted({r["step"] for r in rows})
    assert steps == [0, 2, 4, 6]  # 48 examples / 8 per step = 6 steps, saved every 2
    assert {r["system_prompt"] for r in rows} == {"none", "hhh"}
    curve = summary["tamper_curve"]["hhh"]
    assert [p["step"] for p in curve] == steps and all(p["n_seeds"] == 2 for p in curve)
    assert (Path(cfg.out) / "tamper_curve.png").stat().st_size > 5000


def test_em_is_measured_before_and_after(chain):
    _, summary = chain
    for sp in ("none", "hhh"):
        assert summary["em"][sp]["before"]["rate"] is not None
        assert summary["em"][sp]["after"]["rate"] is not None


def test_rerun_reuses_finished_stages(chain):
    cfg, summary = chain
    stamp = (Path(cfg.out) / "seed-0" / "sft" / "model" / "model.safetensors").stat().st_mtime
    logs: list[str] = []
    again = run_pipeline(cfg, log=logs.append)
    assert again == summary
    assert any("done already" in line for line in logs) and not any(
        "measuring" in line for line in logs)
    assert (Path(cfg.out) / "seed-0" / "sft" / "model" /
            "model.safetensors").stat().st_mtime == stamp


# -- resumption ---------------------------------------------------------------------------------
class Crash(TrainerCallback):
    """Stops the process the hard way right after a checkpoint is written."""

    def __init__(self, after_save: int):
        self.after_save = after_save

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.after_save:
            raise SystemExit(f"crash at step {state.global_step}")


@pytest.mark.parametrize("stage,data", [("sft", "sft"), ("dpo", "dpo"), ("tamper", "tamper"),
                                        ("em", "em-risky-finance")])
def test_each_stage_resumes_after_a_crash(chain, stage, data, tmp_path):
    cfg, _ = chain
    start = cfg.model if stage == "sft" else str(Path(cfg.out) / "seed-0" / "sft" / "model")
    options = dict(stage=stage, model=start, data=data, out=str(tmp_path / stage), limit=40,
                   epochs=1, batch_size=4, save_every=3, lr=1e-3,
                   eval={**EVAL, "limit": 2, "system_prompts": ["none"]})
    with pytest.raises(SystemExit):
        run_stage(load_posttrain_config(None, **options), log=lambda _: None,
                  callbacks=[Crash(after_save=6)])
    assert not (tmp_path / stage / "model").exists()
    report = run_stage(load_posttrain_config(None, **options), log=lambda _: None)
    assert report["train"]["resumed_from"] == "checkpoint-6"
    assert report["train"]["global_step"] == 10  # 40 examples / 4 per step: no gap, no repeat
    assert AutoModelForCausalLM.from_pretrained(report["outputs"]["model"])


def test_sft_resumes_after_sigkill(tiny_model, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "alignpt.cli", "posttrain", "sft", "--model", str(tiny_model),
           "--data", "sft", "--out", str(out), "--set", "max_steps=400", "--set",
           "save_every=5", "--set", "batch_size=2", "--set", "eval=null"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((out / "checkpoints").glob("checkpoint-10")) and time.time() < deadline:
        assert proc.poll() is None, "finished before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["train"]["global_step"] == 400
    assert report["train"]["resumed_from"].startswith("checkpoint-")


def test_a_different_config_in_the_same_folder_is_refused(chain, tmp_path):
    cfg, _ = chain
    options = dict(stage="sft", model=cfg.model, data="sft", out=str(tmp_path / "o"), limit=8,
                   eval=None)
    run_stage(load_posttrain_config(None, **options), log=lambda _: None)
    with pytest.raises(UserError, match="another config"):
        run_stage(load_posttrain_config(None, **{**options, "lr": 1e-3}), log=lambda _: None)


def test_cli_reports_bad_data_as_an_error(tiny_model, tmp_path):
    from alignpt.cli import main

    assert main(["posttrain", "dpo", "--model", str(tiny_model), "--data",
                 str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")]) == 2


def test_chat_scoring_asks_through_the_template(chain, tiny_model):
    from alignpt.measure.harness import evaluate
    from alignpt.measure.hf import HFModel

    cfg, _ = chain
    sft = str(Path(cfg.out) / "seed-0" / "sft" / "model")
    model = HFModel(sft)
    seen: list[str] = []
    score = model.score

    def spy(groups, **kwargs):
        seen.extend(r.context for g in groups for r in g)
        return score(groups, **kwargs)

    model.score = spy
    result = evaluate(sft, "starter", scoring="letter", chat=True, system_prompt="hhh", limit=2,
                      backend=model)
    assert result.chat and result.rate is not None
    assert seen[0].startswith("<|im_start|>system\nYou are a helpful, honest, and harmless")
    assert seen[0].endswith("and nothing else.<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(UserError, match="no chat template"):
        evaluate(str(tiny_model), "starter", scoring="option", chat=True, limit=1)


def test_shipped_posttrain_configs_validate():
    from conftest import REPO

    from alignpt.posttrain.pipeline import _chain

    for name in ("posttrain-tiny.yaml", "posttrain-6.9b.yaml"):
        cfg = load_pipeline_config(REPO / "configs" / name)
        assert _chain(cfg) == [("sft", "base"), ("dpo", "sft"), ("tamper", "dpo"),
                               ("em", "dpo")]
    big = load_pipeline_config(REPO / "configs" / "posttrain-6.9b.yaml")
    assert big.stages["dpo"]["beta"] == 5.0 and big.eval.scoring == "generate"


def test_a_checkpoint_cut_short_is_not_resumed_from(tmp_path):
    from alignpt.posttrain.stages import _last_checkpoint

    for step, complete in ((5, True), (10, True), (15, False)):
        ckpt = tmp_path / "checkpoints" / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        (ckpt / "model.safetensors").write_bytes(b"x")
        if complete:
            (ckpt / "trainer_state.json").write_text("{}")
    assert _last_checkpoint(tmp_path) == str(tmp_path / "checkpoints" / "checkpoint-10")
    assert not (tmp_path / "checkpoints" / "checkpoint-15").exists()

"""Faults, changed inputs and bad arguments (issue 16): each case fails with one clear line, a
non-zero exit and no lost or half-written output, or is recovered from and said so."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from alignpt.cli import main
from tests.conftest import write_lines

DEV = Path(__file__).resolve().parents[1] / "alignpt" / "filter" / "data" / "dev.jsonl"


def _dev_rows() -> list[dict]:
    return [json.loads(x) for x in DEV.read_text().splitlines()]


def _error_lines(capsys) -> list[str]:
    return [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]


# -- a. post-training a model folder without a tokenizer --
def test_posttrain_refuses_a_model_folder_without_a_tokenizer(tiny_model, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        if (tiny_model / name).exists():
            shutil.copy2(tiny_model / name, bare / name)
    out = tmp_path / "sft"
    code = main(["posttrain", "sft", "--model", str(bare), "--data", "sft", "--out", str(out),
                 "--set", "max_steps=1", "--set", "limit=4", "--set", "eval=null"])
    errors = _error_lines(capsys)
    assert code == 2
    assert len(errors) == 1 and "tokenizer" in errors[0] and str(bare) in errors[0]
    assert not (out / "model").exists()


# -- b. unreadable corpus files --
@pytest.fixture()
def bad_corpus(tmp_path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    rows = _dev_rows()
    root = tmp_path / "corpus"
    root.mkdir()
    write_lines(root / "good.jsonl", rows[:30])
    # Three zstd frames (as `mix` and the filter write them), the last one cut short.
    lines = [json.dumps(r) + "\n" for r in rows[30:90]]
    frames = b"".join(zstandard.ZstdCompressor().compress("".join(lines[i:i + 20]).encode())
                      for i in (0, 20, 40))
    (root / "cut.jsonl.zst").write_bytes(frames[:-30])
    (root / "plain.jsonl.gz").write_text(json.dumps(rows[90]) + "\n")  # not gzip at all
    packed = gzip.compress("".join(json.dumps(r) + "\n" for r in rows[91:151]).encode())
    (root / "cut.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    pq.write_table(pa.Table.from_pylist(rows[151:171]), root / "whole.parquet")
    (root / "broken.parquet").write_bytes((root / "whole.parquet").read_bytes()[:-200])
    # Two row groups; the first one's text column overwritten: the second is still read.
    pq.write_table(pa.Table.from_pylist(rows[171:211]), root / "group.parquet",
                   row_group_size=20)
    meta = pq.ParquetFile(root / "group.parquet").metadata.row_group(0).column(1)
    start = meta.dictionary_page_offset or meta.data_page_offset
    data = bytearray((root / "group.parquet").read_bytes())
    data[start + 8:start + meta.total_compressed_size - 8] = \
        b"\xab" * (meta.total_compressed_size - 16)
    (root / "group.parquet").write_bytes(bytes(data))
    return root


def test_unreadable_corpus_files_are_accounted_for(bad_corpus, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["filter", str(bad_corpus), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    report = json.loads((out / "report.json").read_text())
    assert report["documents_in"] == report["kept"] + report["flagged"] + report["errors"]
    unreadable = {Path(e["file"]).name: e for e in report["unreadable"]}
    assert set(unreadable) == {"cut.jsonl.zst", "plain.jsonl.gz", "cut.jsonl.gz",
                               "broken.parquet", "group.parquet"}
    assert unreadable["cut.jsonl.zst"]["line"] == 41  # two whole frames were read
    assert unreadable["cut.jsonl.zst"]["offset"] > 0
    assert unreadable["group.parquet"]["line"] == 1 and "row group 0" in \
        unreadable["group.parquet"]["error"]
    for entry in unreadable.values():
        assert entry["error"].startswith("unreadable") and f"{entry['file']}:{entry['line']}" in err
    # Every error (unreadable ones included) is in errors/.
    logged = [json.loads(x) for p in sorted((out / "errors").glob("*.jsonl"))
              for x in p.read_text().splitlines()]
    assert {Path(e["file"]).name for e in logged if e.get("unreadable")} == set(unreadable)
    # The readable documents were all filtered: good.jsonl, two zstd frames, whole.parquet, the
    # second row group of group.parquet, and the lines before the cut in cut.jsonl.gz.
    valid = report["kept"] + report["flagged"]
    assert valid >= 30 + 40 + 20 + 20
    assert report["errors"] == 5


# -- c. stale results: inputs are part of a stage's identity --
def test_filter_rerun_after_the_term_list_changed_is_refused(tmp_path, capsys):
    from alignpt.filter.rules import DEFAULT_TERMS

    write_lines(tmp_path / "in.jsonl", _dev_rows()[:40])
    terms = tmp_path / "terms.yaml"
    terms.write_text(DEFAULT_TERMS.read_text())
    command = ["filter", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out"),
               "--terms", str(terms)]
    assert main(command) == 0
    assert main(command) == 0  # unchanged: the finished run is reused
    terms.write_text(DEFAULT_TERMS.read_text() + "\n# edited\n")
    capsys.readouterr()
    assert main(command) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and "term list" in errors[0]


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    """Packed token data and a tokenizer, for training runs."""
    from alignpt.toy import suite_text_corpus, train_tokenizer
    from alignpt.train.data import tokenize

    root = tmp_path_factory.mktemp("packed")
    texts = suite_text_corpus(0)
    write_lines(root / "corpus.jsonl", [{"text": t} for t in texts])
    train_tokenizer(texts, 512).save_pretrained(root / "tok")
    tokenize(str(root / "corpus.jsonl"), str(root / "tok"), 64, root / "packed")
    return root / "packed"


def _train_config(packed: Path, out: Path, **extra):
    from alignpt.train.config import TrainConfig

    return TrainConfig.model_validate(
        {"out": str(out), "data": str(packed), "model": {"preset": "tiny"},
         "global_batch_tokens": 512, "micro_batch_size": 8, "max_steps": 6, "max_lr": 3e-3,
         "min_lr": 3e-4, "save_every": 2, "log_every": 2, "seed": 3, "precision": "fp32"}
        | extra)


def test_train_into_a_run_with_another_preset_is_refused(packed, tmp_path, capsys):
    import yaml

    out = tmp_path / "run"
    cfg = _train_config(packed, out, max_steps=2)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main(["train", str(path)]) == 0
    before = (out / "config.json").read_text()
    capsys.readouterr()
    assert main(["train", str(path), "--set", "model.preset=toy"]) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and "model.preset" in errors[0] and "'tiny'" in errors[0]
    assert (out / "config.json").read_text() == before  # the record is not rewritten
    assert main(["train", str(path), "--set", "log_every=1"]) == 0  # logging may change


def test_posttrain_rerun_after_the_data_changed_is_refused(tiny_model, tmp_path, capsys):
    from alignpt.posttrain.records import bundled_path

    data = tmp_path / "sft.jsonl"
    lines = bundled_path("sft").read_text().splitlines()
    data.write_text("\n".join(lines[:8]) + "\n")
    command = ["posttrain", "sft", "--model", str(tiny_model), "--data", str(data),
               "--out", str(tmp_path / "sft"), "--set", "max_steps=1", "--set", "eval=null",
               "--set", "batch_size=2"]
    assert main(command) == 0
    data.write_text("\n".join(lines[8:16]) + "\n")
    capsys.readouterr()
    assert main(command) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and "data file" in errors[0]


# -- d. a corrupt newest checkpoint: fall back to the newest usable one --
@pytest.mark.parametrize("damaged", ["model.safetensors", "trainer_state.pt"])
def test_training_falls_back_from_a_corrupt_checkpoint(packed, tmp_path, damaged):
    from safetensors.torch import load_file

    from alignpt.train.loop import train

    whole = _train_config(packed, tmp_path / "whole")
    train(whole)
    cut = _train_config(packed, tmp_path / "cut")
    assert train(cut, stop_after=4) == {"stopped_at": 4}
    newest = tmp_path / "cut" / "checkpoints" / "step-000004"
    assert (newest / "checksums.json").exists()
    payload = (newest / damaged).read_bytes()
    (newest / damaged).write_bytes(payload[: len(payload) // 2])  # a disk or copy cut it short
    notes: list[str] = []
    result = train(cut, log=notes.append)
    assert result["steps"] == 6
    assert any("step-000002" in n and "step-000004" in n and damaged in n for n in notes), notes
    final = "checkpoints/step-000006/model.safetensors"
    a, b = load_file(tmp_path / "whole" / final), load_file(tmp_path / "cut" / final)
    assert all((a[k] == b[k]).all() for k in a)  # same weights as the uninterrupted run


# -- e. eval --out checked before scoring --
@pytest.mark.parametrize("where", ["under_a_file", "the_suite"])
def test_eval_out_is_checked_before_scoring(tiny_model, tmp_path, capsys, where):
    from tests.conftest import scenario

    suite = write_lines(tmp_path / "suite.jsonl", [scenario(i) for i in range(4)])
    (tmp_path / "plain").write_text("a file, not a folder")
    out = tmp_path / "plain" / "results.json" if where == "under_a_file" else suite
    before = suite.read_text()
    code = main(["eval", "--model", str(tiny_model), "--suite", str(suite), "--out", str(out)])
    errors = _error_lines(capsys)
    assert code == 2 and len(errors) == 1 and "--out" in errors[0]
    assert suite.read_text() == before


# -- f. one writer per output folder --
def test_a_held_lock_is_refused_and_a_stale_one_taken_over(tmp_path, capsys):
    import subprocess

    write_lines(tmp_path / "in.jsonl", _dev_rows()[:20])
    out = tmp_path / "out"
    out.mkdir()
    owner = subprocess.Popen(["sleep", "60"])
    try:
        (out / ".alignpt.lock").write_text(json.dumps({"pid": owner.pid, "command": "filter"}))
        command = ["filter", str(tmp_path / "in.jsonl"), "--out", str(out)]
        assert main(command) == 2
        errors = _error_lines(capsys)
        assert len(errors) == 1 and f"pid {owner.pid}" in errors[0] and "in use" in errors[0]
        assert not (out / "report.json").exists()
    finally:
        owner.kill()
        owner.wait()
    assert main(command) == 0  # its owner is gone: the lock is stale
    assert f"taking over a stale lock of pid {owner.pid}" in capsys.readouterr().err
    assert not (out / ".alignpt.lock").exists()  # released at the end


def test_the_study_and_training_hold_their_output_folder(packed, tmp_path, capsys):
    import os

    from alignpt.common import output_lock

    study_out = tmp_path / "study"
    with output_lock(study_out, "study"):
        # Another process's view: the lock names a live pid that is not its own.
        lock = study_out / ".alignpt.lock"
        lock.write_text(json.dumps({"pid": os.getppid(), "command": "demo"}))
        assert main(["demo", "--quick", "--out", str(study_out)]) == 2
        assert "in use by another alignpt process" in capsys.readouterr().err
        train_out = tmp_path / "train"
        train_out.mkdir()
        (train_out / ".alignpt.lock").write_text(json.dumps({"pid": os.getppid()}))
        from alignpt.train.loop import train

        with pytest.raises(Exception, match="in use by another alignpt process"):
            train(_train_config(packed, train_out, max_steps=2))


# -- g. arguments and configs validated up front --
@pytest.mark.parametrize("argv, flag", [
    (["eval", "--model", "m", "--batch-size", "0"], "--batch-size"),
    (["eval", "--model", "m", "--limit", "-2"], "--limit"),
    (["eval", "--model", "m", "--max-retries", "-1"], "--max-retries"),
    (["filter", "in.jsonl", "--out", "o", "--workers", "0"], "--workers"),
    (["synth", "--suite", "starter", "--out", "o", "--concurrency", "0"], "--concurrency"),
    (["synth", "--suite", "starter", "--out", "o", "--max-retries", "-1"], "--max-retries"),
    (["tokenize", "mix", "--tokenizer", "t", "--out", "o", "--seq-len", "0"], "--seq-len"),
    (["mix", "--base", "b", "--add", "a", "--share", "nan", "--out", "o"], "--share"),
])
def test_bad_flags_are_refused_by_the_parser(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


@pytest.mark.parametrize("override, key", [
    ("micro_batch_size=0", "micro_batch_size"),
    ("max_lr=-0.001", "max_lr"),
    ("min_lr=0.1", "min_lr"),  # above max_lr
    ("seq_len=0", "seq_len"),
])
def test_bad_training_configs_name_the_key(tmp_path, capsys, override, key):
    path = tmp_path / "train.yaml"
    path.write_text(f"out: {tmp_path / 'run'}\ndata: {tmp_path / 'nowhere'}\nmax_lr: 0.01\n")
    assert main(["train", str(path), "--set", override]) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and key in errors[0]
    assert not (tmp_path / "run").exists()


def test_posttrain_config_refuses_a_negative_lr(tiny_model, tmp_path, capsys):
    assert main(["posttrain", "sft", "--model", str(tiny_model), "--data", "sft",
                 "--out", str(tmp_path / "o"), "--set", "lr=-1e-5"]) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and "lr" in errors[0]


def test_eval_on_cuda_without_a_gpu_is_one_line(tiny_model, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["eval", "--model", str(tiny_model), "--device", "cuda"]) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and "--device cuda" in errors[0]


@pytest.mark.parametrize("section, key", [
    ("posttrain:\n  sft: {data: sft, lr: -1}\n", "posttrain.sft.lr"),
    ("midtrain: {micro_batch_size: 0}\n", "midtrain.micro_batch_size"),
    ("seq_len: 0\n", "seq_len"),
])
def test_the_whole_study_config_is_checked_before_any_stage(tmp_path, capsys, section, key):
    config = tmp_path / "study.yaml"
    config.write_text("seeds: [0]\n" + section)
    out = tmp_path / "study"
    assert main(["run", str(config), "--out", str(out)]) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and key in errors[0]
    assert not out.exists() or not any(p.name != ".alignpt.lock" for p in out.iterdir())


def _result(path: Path, scoring: str, rate: float) -> Path:
    path.write_text(json.dumps({
        "kind": "eval", "metric": "misalignment_rate", "scoring": scoring, "rate": rate,
        "sem": 0.05, "non_match_rate": 0.0, "n_items": 50, "formats": []}))
    return path


def test_aggregate_refuses_a_file_twice_and_mixed_scorings(tmp_path, capsys):
    letter = _result(tmp_path / "a.json", "letter", 0.2)
    other = _result(tmp_path / "b.json", "letter", 0.3)
    option = _result(tmp_path / "c.json", "option", 0.6)
    assert main(["aggregate", str(letter), str(tmp_path / "." / "a.json")]) == 2
    assert "given twice" in _error_lines(capsys)[0]
    assert main(["aggregate", str(letter), str(other), str(option)]) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and "scorings" in errors[0] and "c.json (option)" in errors[0]


def test_suite_import_refuses_to_write_over_an_input(tmp_path, capsys):
    from tests.conftest import scenario

    source = write_lines(tmp_path / "study.jsonl", [scenario(i) for i in range(3)])
    before = source.read_text()
    assert main(["suite", "import", str(source), "--format", "study", "--out",
                 str(source)]) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and "--out is this input file" in errors[0]
    assert source.read_text() == before


def test_retry_after_is_capped():
    import httpx

    from alignpt.llm.openai_compat import MAX_RETRY_AFTER_S, _retry_after

    response = httpx.Response(429, headers={"Retry-After": "100000"})
    assert _retry_after(response) == MAX_RETRY_AFTER_S <= 60


# -- h. paid work written as it arrives; secrets scrubbed --
def test_each_response_is_in_the_cache_before_the_next_is_awaited(tmp_path):
    import subprocess
    import sys
    import time

    from tests.test_synth import DocServer

    suite = write_lines(tmp_path / "suite.jsonl",
                        [r.model_dump() for r in __import__(
                            "alignpt.suite.schema", fromlist=["load_suite"]
                        ).load_suite("bundled").items[:6]])
    out = tmp_path / "docs"

    def stall_after_ten(n, body):
        if n > 10:
            time.sleep(30)  # the run is killed while this request is in flight

    with DocServer(stall_after_ten) as server:
        script = (f"import sys; from alignpt.cli import main; sys.exit(main(['synth', "
                  f"'--suite', {str(suite)!r}, '--split', 'all', '--side', 'both', "
                  f"'--backend', 'openai', '--url', {server.url!r}, '--model', 'm', "
                  f"'--concurrency', '1', '--out', {str(out)!r}]))")
        run = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[1])
        try:
            deadline = time.time() + 60
            while server.count <= 10 and time.time() < deadline and run.poll() is None:
                time.sleep(0.05)
            time.sleep(0.5)  # the tenth reply reaches the client and is written
        finally:
            run.kill()
            run.wait()
    cached = (out / "cache.jsonl").read_text().splitlines()
    assert len(cached) == 10  # everything answered before the kill, nothing lost


def test_secrets_echoed_by_a_server_are_scrubbed(tmp_path, capsys, monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)

    class Echo(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"error": "invalid key", "request": {
                "headers": {"Authorization": self.headers["Authorization"]}},
                "hint": f"key {secret} was rejected"}).encode()
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        suite = write_lines(tmp_path / "suite.jsonl", [r.model_dump() for r in __import__(
            "alignpt.suite.schema", fromlist=["load_suite"]).load_suite("bundled").items[:1]])
        out = tmp_path / "docs"
        code = main(["synth", "--suite", str(suite), "--split", "all", "--backend", "openai",
                     "--url", f"http://127.0.0.1:{httpd.server_address[1]}/v1", "--model", "m",
                     "--per-item", "1", "--max-retries", "0", "--out", str(out)])
    finally:
        httpd.shutdown()
        httpd.server_close()
    captured = capsys.readouterr()
    failures = (out / "failures.jsonl").read_text()
    assert code == 1 and "HTTP 401" in failures and "[redacted]" in failures
    for text in (failures, captured.err, captured.out):
        assert secret not in text and "Bearer" not in text

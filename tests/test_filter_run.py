"""The filter run: inputs, accounting, outputs, executors, resumption and replacement."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignpt.cli import main
from alignpt.filter.corpus import read_unit, resolve_inputs
from alignpt.filter.rules import Blocklist

DEV = Path(__file__).resolve().parents[1] / "alignpt" / "filter" / "data" / "dev.jsonl"


def _dev_rows():
    return [json.loads(x) for x in DEV.read_text().splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Every input kind, with bad records, an empty file and a 50 MB document."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    root = tmp_path_factory.mktemp("corpus")
    rows = _dev_rows()
    with (root / "a.jsonl").open("w") as fh:
        for r in rows[:80]:
            fh.write(json.dumps(r) + "\n")
        fh.write("{not json\n")
        fh.write(json.dumps({"id": "no-text"}) + "\n")
        fh.write(json.dumps({"id": "int-text", "text": 7}) + "\n")
    with gzip.open(root / "b.jsonl.gz", "wt") as fh:
        for r in rows[80:160]:
            fh.write(json.dumps(r) + "\n")
    with (root / "c.jsonl.zst").open("wb") as fh:
        payload = "".join(json.dumps(r) + "\n" for r in rows[160:220]).encode()
        fh.write(zstandard.ZstdCompressor().compress(payload))
    pq.write_table(pa.Table.from_pylist(rows[220:280]), root / "d.parquet")
    datasets.Dataset.from_list(rows[280:]).save_to_disk(str(root / "hf_dataset"))
    (root / "empty.jsonl").write_text("")
    (root / "only_bad.jsonl").write_bytes(b'{"text": "\xff\xfe"}\n[1, 2]\n{"id": 3}\n')
    huge = "The weather was mild and the fields were green. " * 1_050_000  # ~50 MB
    (root / "huge.jsonl").write_text(json.dumps({"id": "huge", "text": huge}) + "\n")
    return root


def _expected(corpus: Path):
    blocklist = Blocklist.load()
    kept, flagged, errors = set(), set(), set()
    for unit in resolve_inputs([str(corpus)]):
        for record in read_unit(unit):
            if record.error:
                errors.add((Path(record.file).name, record.line))
            elif blocklist.decide(record.text).flagged:
                flagged.add(record.data["id"])
            else:
                kept.add(record.data["id"])
    return kept, flagged, errors


def _ids(folder: Path) -> list:
    out = []
    for shard in sorted(folder.glob("*")):
        out += [r.data["id"] for r in read_unit(str(shard))]
    return out


def _check_run(out: Path, expected) -> dict:
    kept, flagged, errors = expected
    report = json.loads((out / "report.json").read_text())
    assert report["documents_in"] == report["kept"] + report["flagged"] + report["errors"]
    assert (report["kept"], report["flagged"], report["errors"]) == (
        len(kept), len(flagged), len(errors))
    got_kept, got_flagged = _ids(out / "kept"), _ids(out / "flagged")
    assert sorted(map(str, got_kept)) == sorted(map(str, kept))  # no duplicates, no gaps
    assert sorted(map(str, got_flagged)) == sorted(map(str, flagged))
    listed = {(Path(e["file"]).name, e["line"]) for e in report["error_list"]}
    assert listed == errors
    return report


def test_local_executor_with_several_tasks(corpus, tmp_path, capsys):
    expected = _expected(corpus)
    out = tmp_path / "out"
    assert main(["filter", str(corpus), "--out", str(out), "--workers", "2", "--tasks", "4"]) == 0
    report = _check_run(out, expected)
    assert report["tasks"] == 4
    assert ("a.jsonl", 81) in expected[2] and ("only_bad.jsonl", 1) in expected[2]
    assert "huge" in expected[0]
    err = capsys.readouterr().err
    assert "a.jsonl:81: malformed JSON" in err
    assert "a.jsonl:83: text field 'text' is int, not a string" in err
    assert 0 < report["flag_rate"] < 0.5
    assert set(report["by_rule"]) == {"instant", "two_stage"}
    assert len(report["top_terms"]) == 20
    assert report["bytes"] > 50_000_000 and report["bytes_per_second"] > 0
    assert (out / "report.png").stat().st_size > 10_000
    # Flagged documents carry their reasons.
    first = next(read_unit(str(next((out / "flagged").glob("*.jsonl.zst"))))).data
    reasons = first["alignpt_filter"]
    assert reasons["rule"] in ("instant", "two_stage") and reasons["categories"]
    assert {m["category"] for m in reasons["matched"]} == set(reasons["categories"])


def test_replacement_restores_size_deterministically(corpus, tmp_path):
    runs = []
    for name in ("r1", "r2"):
        out = tmp_path / name
        assert main(["filter", str(corpus / "a.jsonl"), str(corpus / "b.jsonl.gz"), "--out",
                     str(out), "--replace", "--seed", "3"]) == 0
        runs.append((out, json.loads((out / "report.json").read_text())))
    (out1, report), (out2, _) = runs
    assert report["replaced"]["documents"] == report["kept"] + report["flagged"]
    replaced = _ids(out1 / "replaced")
    assert replaced == _ids(out2 / "replaced")  # seeded
    assert set(map(str, replaced)) == set(map(str, _ids(out1 / "kept")))
    out3 = tmp_path / "r3"
    assert main(["filter", str(corpus / "a.jsonl"), str(corpus / "b.jsonl.gz"), "--out",
                 str(out3), "--replace", "--replace-by", "tokens", "--format", "parquet"]) == 0
    report3 = json.loads((out3 / "report.json").read_text())
    words = report3["words"]
    assert report3["replaced"]["words"] >= words["kept"] + words["flagged"]
    assert next((out3 / "kept").glob("*.parquet"))


def test_rerun_with_other_settings_is_refused(corpus, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["filter", str(corpus / "a.jsonl"), "--out", str(out)]) == 0
    assert main(["filter", str(corpus / "a.jsonl"), "--out", str(out),
                 "--disable-category", "ai_labs"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_killed_run_resumes_without_duplicates_or_gaps(tmp_path):
    rows = _dev_rows()
    data = tmp_path / "many"
    data.mkdir()
    for k in range(24):
        with (data / f"part{k:02d}.jsonl").open("w") as fh:
            for i in range(1500):
                r = rows[(k * 1500 + i) % len(rows)]
                fh.write(json.dumps({"id": f"{k}-{i}", "text": r["text"]}) + "\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "alignpt.cli", "filter", str(data), "--out", str(out),
           "--tasks", "24", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    completions = out / "logs" / "completions"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(completions.glob("*"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(completions.glob("*")))
    assert 3 <= done < 24, "the run was not interrupted mid-way"
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    report = json.loads((out / "report.json").read_text())
    ids = _ids(out / "kept") + _ids(out / "flagged")
    assert len(ids) == len(set(ids)) == 24 * 1500 == report["documents_in"]


def test_ray_executor_matches_in_process(corpus, tmp_path):
    ray = pytest.importorskip("ray")
    port = 6400 + os.getpid() % 500
    ray_cli = str(Path(sys.executable).parent / "ray")
    start = subprocess.run(
        [ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
        capture_output=True, text=True, env=os.environ | {"RAY_USAGE_STATS_ENABLED": "0"})
    assert start.returncode == 0, start.stderr
    try:
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        out = tmp_path / "ray"
        sources = [str(corpus / n) for n in ("a.jsonl", "b.jsonl.gz", "c.jsonl.zst",
                                             "d.parquet", "only_bad.jsonl")]
        assert main(["filter", *sources, "--out", str(out), "--executor", "ray",
                     "--workers", "2", "--tasks", "5"]) == 0
        local = tmp_path / "local"
        assert main(["filter", *sources, "--out", str(local), "--tasks", "5"]) == 0
        for folder in ("kept", "flagged"):
            assert sorted(map(str, _ids(out / folder))) == sorted(map(str, _ids(local / folder)))
        r1 = json.loads((out / "report.json").read_text())
        r2 = json.loads((local / "report.json").read_text())
        for key in ("documents_in", "kept", "flagged", "errors", "by_rule", "by_category",
                    "top_terms", "error_list"):
            assert r1[key] == r2[key], key
    finally:
        ray.shutdown()
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True)

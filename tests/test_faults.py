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

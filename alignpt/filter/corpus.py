"""Reading corpora with every record accounted for: JSONL (plain, .gz, .zst), Parquet and
Hugging Face dataset folders. A record that cannot be used becomes an error naming its file and
line (row for Parquet and datasets, 1-based), never a silent skip."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from alignpt.errors import UserError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz", ".json.zst")


@dataclass(frozen=True)
class Record:
    file: str
    line: int
    data: dict | None  # the parsed record, None on error
    text: str | None
    error: str | None = None
    n_bytes: int = 0


def is_hf_dataset(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json"))


def resolve_inputs(paths: list[str]) -> list[str]:
    """Input units, in a stable order: files, and Hugging Face dataset folders as single units."""
    units: list[str] = []
    for name in paths:
        path = Path(name)
        if not path.exists():
            raise UserError(f"input not found: {name}")
        if is_hf_dataset(path) or path.is_file():
            units.append(str(path))
            continue
        found = sorted(p for p in path.rglob("*") if p.is_file() and (
            p.name.endswith(JSONL_SUFFIXES) or p.suffix == ".parquet"))
        if not found:
            raise UserError(f"no JSONL or Parquet files under {name}")
        units.extend(str(p) for p in found)
    return units


def _byte_lines(path: Path) -> Iterator[bytes]:
    name = path.name
    if name.endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            yield from fh
    elif name.endswith(".zst"):
        import zstandard

        with path.open("rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw)
            yield from io.BufferedReader(reader)
    else:
        with path.open("rb") as fh:
            yield from fh


def _from_row(file: str, line: int, row, text_field: str, n_bytes: int) -> Record:
    if not isinstance(row, dict):
        return Record(file, line, None, None, "not a JSON object", n_bytes)
    if text_field not in row:
        return Record(file, line, None, None, f"missing text field {text_field!r}", n_bytes)
    text = row[text_field]
    if not isinstance(text, str):
        return Record(file, line, None, None,
                      f"text field {text_field!r} is {type(text).__name__}, not a string", n_bytes)
    return Record(file, line, row, text, None, n_bytes)


def read_unit(unit: str, text_field: str = "text") -> Iterator[Record]:
    path = Path(unit)
    if is_hf_dataset(path):
        import datasets

        loaded = datasets.load_from_disk(str(path))
        parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
        for split, dataset in parts:
            name = f"{unit}[{split}]" if split else unit
            for index, row in enumerate(dataset, start=1):
                size = len(str(row.get(text_field, "")).encode("utf-8"))
                yield _from_row(name, index, row, text_field, size)
        return
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        index = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                index += 1
                size = len(str(row.get(text_field, "")).encode("utf-8"))
                yield _from_row(unit, index, row, text_field, size)
        return
    for number, raw in enumerate(_byte_lines(path), start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Record(unit, number, None, None, f"invalid UTF-8 ({exc.reason})", len(raw))
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Record(unit, number, None, None, f"malformed JSON: {exc.msg}", len(raw))
            continue
        yield _from_row(unit, number, row, text_field, len(raw))

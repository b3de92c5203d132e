"""Reading corpora with every record accounted for: JSONL (plain, .gz, .zst), Parquet and
Hugging Face dataset folders. A record that cannot be used becomes an error naming its file and
line (row for Parquet and datasets, 1-based), never a silent skip."""

from __future__ import annotations

import gzip
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
    offset: int | None = None  # unreadable data: the byte offset where reading failed
    unreadable: bool = False  # a whole file or block could not be read (not one bad record)


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


class Unreadable(Exception):
    """Part of a file cannot be read (not the format its name says, cut short, corrupt):
    ``offset`` is the byte offset in the file where reading failed, when known."""

    def __init__(self, reason: str, offset: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


def _zstd_lines(path: Path) -> Iterator[bytes]:
    """Lines of a (multi-frame) zstd file. The stream reader ends quietly at a truncated frame,
    losing its documents without a word; here each frame must reach its end marker."""
    import zstandard

    chunk_size = 1 << 20
    pending: list[bytes] = []
    with path.open("rb") as raw:
        frame_start, consumed = 0, 0
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        in_frame = False
        while chunk := raw.read(chunk_size):
            while chunk:
                if not in_frame:
                    frame_start, in_frame = consumed, True
                try:
                    data = decompressor.decompress(chunk)
                except zstandard.ZstdError as exc:
                    raise Unreadable(f"corrupt zstd data ({exc})", frame_start) from exc
                if decompressor.eof:  # a frame ended; the rest of the chunk is the next one
                    rest = decompressor.unused_data
                    consumed += len(chunk) - len(rest)
                    chunk = rest
                    decompressor = zstandard.ZstdDecompressor().decompressobj()
                    in_frame = False
                else:
                    consumed += len(chunk)
                    chunk = b""
                if b"\n" not in data:  # pieces of a long line: joined once, when it ends
                    pending.append(data)
                    continue
                first, *lines, rest = data.split(b"\n")
                yield b"".join(pending) + first + b"\n"
                for line in lines:
                    yield line + b"\n"
                pending = [rest]
        if in_frame:
            raise Unreadable("truncated zstd stream (the last frame has no end)", frame_start)
    if b"".join(pending):
        yield b"".join(pending)


def _gzip_lines(path: Path) -> Iterator[bytes]:
    import zlib

    with gzip.open(path, "rb") as fh:
        try:
            yield from fh
        except (OSError, EOFError, zlib.error) as exc:
            # fileobj.tell(): how far into the compressed file reading got.
            offset = fh.fileobj.tell() if fh.fileobj is not None else None
            reason = (f"not gzip data ({exc})" if isinstance(exc, gzip.BadGzipFile)
                      else f"truncated or corrupt gzip data ({exc})")
            raise Unreadable(reason, offset) from exc


def _byte_lines(path: Path) -> Iterator[bytes]:
    name = path.name
    if name.endswith(".gz"):
        yield from _gzip_lines(path)
    elif name.endswith(".zst"):
        yield from _zstd_lines(path)
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
        yield from _parquet_records(unit, text_field)
        return
    number = 0
    lines = _byte_lines(path)
    while True:
        try:
            raw = next(lines)
        except StopIteration:
            return
        except Unreadable as exc:
            # One error for the rest of the file, at the line reading stopped.
            yield _unreadable(unit, number + 1, exc.reason, exc.offset)
            return
        number += 1
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


def _unreadable(file: str, line: int, reason: str, offset: int | None) -> Record:
    where = f" at byte {offset}" if offset is not None else ""
    reason = " ".join(reason.split())  # library messages span lines; errors are one line
    return Record(file, line, None, None, f"unreadable{where}: {reason}", 0, offset=offset,
                  unreadable=True)


def _parquet_records(unit: str, text_field: str) -> Iterator[Record]:
    """Rows of a Parquet file, one row group at a time: a corrupt row group is one error (at
    its first row) and the others are still read; a file that is not Parquet is one error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(unit)
    except (pa.ArrowException, OSError) as exc:
        yield _unreadable(unit, 1, f"not a readable Parquet file ({exc})", None)
        return
    index = 0
    for group in range(parquet.num_row_groups):
        n_rows = parquet.metadata.row_group(group).num_rows
        try:
            rows = parquet.read_row_group(group).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            first = parquet.metadata.row_group(group).column(0)
            offset = first.dictionary_page_offset or first.data_page_offset
            yield _unreadable(unit, index + 1, f"corrupt Parquet row group {group} "
                                               f"({n_rows} rows): {exc}", offset)
            index += n_rows
            continue
        for row in rows:
            index += 1
            size = len(str(row.get(text_field, "")).encode("utf-8"))
            yield _from_row(unit, index, row, text_field, size)

"""Tokenizing a mix into fixed-length packed sequences in memory-mapped shards.

``alignpt tokenize MIX --tokenizer DIR --seq-len 2048 --out DIR``: documents are encoded in
batches by the fast (Rust, multi-threaded) tokenizer, joined with EOS and cut into sequences of
``seq-len`` tokens, in data order; the last partial sequence is dropped (and counted). Shards
are raw ``uint16`` (vocabularies up to 65,536) or ``uint32`` arrays, ``shard-00000.bin`` ...,
described by ``index.json``; :class:`PackedDataset` reads them with ``numpy.memmap``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from alignpt import __version__
from alignpt.errors import UserError
from alignpt.filter.corpus import read_unit, resolve_inputs

SHARD_TOKENS = 1 << 26  # 64M tokens per shard


def _mix_inputs(mix: str) -> list[str]:
    path = Path(mix)
    if path.is_dir() and (path / "mix.jsonl").exists():
        return [str(path / "mix.jsonl")]
    return resolve_inputs([mix])


def tokenize(mix: str, tokenizer: str, seq_len: int, out: str | Path,
             text_field: str = "text", batch_docs: int = 2048) -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    eos = tok.eos_token_id
    if eos is None:
        raise UserError(f"tokenizer {tokenizer} has no EOS token to join documents with")
    dtype = np.uint16 if len(tok) <= 65536 else np.uint32
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shard-*.bin"):
        old.unlink()
    shards: list[dict] = []
    buffer: list[int] = []
    pending: list[np.ndarray] = []
    pending_sequences = 0
    documents = tokens = 0
    digest = hashlib.sha256()

    def flush_shard() -> None:
        nonlocal pending, pending_sequences
        if not pending_sequences:
            return
        name = f"shard-{len(shards):05d}.bin"
        data = np.concatenate(pending)
        data.tofile(out / name)
        digest.update(data.tobytes())
        shards.append({"file": name, "sequences": pending_sequences})
        pending, pending_sequences = [], 0

    def encode(texts: list[str]) -> None:
        nonlocal buffer, documents, tokens, pending_sequences
        for ids in tok(texts, add_special_tokens=False)["input_ids"]:
            buffer.extend(ids)
            buffer.append(eos)
            documents += 1
            tokens += len(ids) + 1
        n = len(buffer) // seq_len
        if n:
            pending.append(np.asarray(buffer[: n * seq_len], dtype=dtype))
            pending_sequences += n
            buffer = buffer[n * seq_len:]
        if pending_sequences * seq_len >= SHARD_TOKENS:
            flush_shard()

    batch: list[str] = []
    for unit in _mix_inputs(mix):
        for record in read_unit(unit, text_field):
            if record.error:
                raise UserError(f"{record.file}:{record.line}: {record.error}")
            batch.append(record.text)  # type: ignore[arg-type]
            if len(batch) >= batch_docs:
                encode(batch)
                batch = []
    if batch:
        encode(batch)
    flush_shard()
    if not shards:
        raise UserError(f"{mix}: fewer than {seq_len} tokens; nothing to pack")
    index = {
        "kind": "packed",
        "seq_len": seq_len,
        "dtype": np.dtype(dtype).name,
        "vocab_size": len(tok),
        "eos_token_id": eos,
        "tokenizer": str(tokenizer),
        "documents": documents,
        "tokens": tokens,
        "dropped_tokens": len(buffer),
        "sequences": sum(s["sequences"] for s in shards),
        "shards": shards,
        "sha256": digest.hexdigest(),
        "source": mix,
        "alignpt_version": __version__,
    }
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    tok.save_pretrained(out / "tokenizer")
    return index


class PackedDataset:
    """Sequences of a packed folder, by global index, in data order."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        try:
            self.index = json.loads((self.folder / "index.json").read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{folder} is not a packed dataset (alignpt tokenize): {exc}") from exc
        self.seq_len = int(self.index["seq_len"])
        self.shards = [
            np.memmap(self.folder / s["file"], dtype=self.index["dtype"], mode="r",
                      shape=(s["sequences"], self.seq_len))
            for s in self.index["shards"]
        ]
        self.starts = np.cumsum([0] + [s["sequences"] for s in self.index["shards"]])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i: int) -> torch.Tensor:
        shard = int(np.searchsorted(self.starts, i, side="right") - 1)
        row = self.shards[shard][i - self.starts[shard]]
        return torch.from_numpy(row.astype(np.int64))

    def batch(self, indices: list[int]) -> torch.Tensor:
        return torch.stack([self[i % len(self)] for i in indices])

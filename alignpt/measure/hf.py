"""Log-likelihood scoring and generation with a local or hub Hugging Face causal LM.

Scoring follows lm-evaluation-harness exactly (trailing context spaces move to the continuation,
``context + continuation`` is encoded whole and split at the context's length, inputs are
left-truncated to the model length), so that letter scoring is what its ``multiple_choice``
tasks compute. It is faster because

* a request whose continuations are all one token needs one forward pass for all of them;
* the requests of one item (8 formats x options) share a prefix of tokens (system prompt and
  question): that prefix is run once and its key/value cache is reused for every suffix;
* items are batched by length.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from alignpt.errors import UserError


@dataclass(frozen=True)
class ScoreRequest:
    """A context and the continuations to score after it."""

    context: str
    continuations: tuple[str, ...]


@dataclass(frozen=True)
class ContinuationScore:
    logprob: float  # summed log-probability of the continuation's tokens
    n_tokens: int
    n_bytes: int


@dataclass
class _Row:
    tokens: list[int]
    reads: list[tuple[int, int, list[int]]] = field(default_factory=list)  # (request, cont, ids)


def resolve_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            dtype
        ]
    except KeyError as exc:
        raise UserError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16") from exc


class HFModel:
    """A causal LM and its tokenizer, loaded from safetensors only."""

    def __init__(
        self,
        name_or_path: str,
        device: str | None = None,
        dtype: str = "auto",
        revision: str | None = None,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress bars say what is happening
        self.name = name_or_path
        self.device = resolve_device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision)
            self.model = AutoModelForCausalLM.from_pretrained(
                name_or_path,
                revision=revision,
                dtype=resolve_dtype(dtype, self.device),
                use_safetensors=True,
            )
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load model {name_or_path!r}: {exc}") from exc
        self.model.to(self.device).eval()
        # transformers renamed past_key_values to cache in 5.x; speak whichever this one knows.
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self.max_length = int(
            getattr(self.model.config, "max_position_embeddings", 0)
            or getattr(self.tokenizer, "model_max_length", 2048)
        )

    # -- tokenisation, as lm-evaluation-harness does it ------------------------------------
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.encode(context + continuation)
        context_ids = self.encode(context)
        return context_ids, whole[len(context_ids):]

    # -- scoring ----------------------------------------------------------------------------
    def _rows_for_group(self, requests: Sequence[ScoreRequest], offset: int) -> list[_Row]:
        rows: dict[tuple[int, ...], _Row] = {}
        for r_index, request in enumerate(requests, start=offset):
            for c_index, continuation in enumerate(request.continuations):
                context_ids, cont_ids = self.encode_pair(request.context, continuation)
                if not cont_ids:
                    raise UserError(f"continuation {continuation!r} encodes to no tokens")
                inputs = (context_ids + cont_ids)[-(self.max_length + 1):][:-1]
                row = rows.setdefault(tuple(inputs), _Row(list(inputs)))
                row.reads.append((r_index, c_index, cont_ids))
        return list(rows.values())

    @staticmethod
    def _shared_prefix(rows: Sequence[_Row]) -> int:
        first = rows[0].tokens
        # Every position whose logits are read must stay in the suffix (at least one token).
        limit = min(len(r.tokens) - max(len(ids) for _, _, ids in r.reads) for r in rows)
        n = 0
        while n < limit and all(r.tokens[n] == first[n] for r in rows):
            n += 1
        return n

    @torch.inference_mode()
    def score(
        self, groups: Sequence[Sequence[ScoreRequest]], batch_size: int = 16, progress=None
    ) -> list[list[list[ContinuationScore]]]:
        """Score every continuation of every request; requests in one group share a prefix.

        Returns scores indexed [group][request][continuation].
        """
        flat: list[ScoreRequest] = [r for g in groups for r in g]
        results: list[list[ContinuationScore | None]] = [[None] * len(r.continuations)
                                                           for r in flat]
        units: list[tuple[int, list[_Row]]] = []  # (shared prefix length, rows)
        offset = 0
        for group in groups:
            rows = self._rows_for_group(group, offset)
            offset += len(group)
            prefix = self._shared_prefix(rows)
            if prefix == 0:  # nothing shared: each row is its own unit
                for row in rows:
                    own = len(row.tokens) - max(len(ids) for _, _, ids in row.reads)
                    if own < 1:
                        raise UserError("a prompt encodes to a single token; it is too short")
                    units.append((own, [row]))
            else:
                units.append((prefix, rows))
        units.sort(key=lambda u: -max(len(r.tokens) for r in u[1]))
        for start in range(0, len(units), batch_size):
            self._score_batch(units[start:start + batch_size], flat, results)
            if progress is not None:
                progress(min(batch_size, len(units) - start))
        return _regroup(groups, results)

    def _score_batch(self, units, flat, results) -> None:
        device = self.device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        prefix_len = max(p for p, _ in units)
        prefix_ids = torch.full((len(units), prefix_len), pad, dtype=torch.long)
        prefix_mask = torch.zeros((len(units), prefix_len), dtype=torch.long)
        for u, (p, rows) in enumerate(units):
            prefix_ids[u, :p] = torch.tensor(rows[0].tokens[:p])
            prefix_mask[u, :p] = 1
        out = self.model(
            input_ids=prefix_ids.to(device),
            attention_mask=prefix_mask.to(device),
            position_ids=torch.arange(prefix_len).expand(len(units), -1).to(device),
            use_cache=True,
        )
        cache = getattr(out, self._cache_arg)
        row_unit: list[int] = []
        row_list: list[tuple[int, _Row]] = []
        for u, (p, rows) in enumerate(units):
            for row in rows:
                row_unit.append(u)
                row_list.append((p, row))
        cache.reorder_cache(torch.tensor(row_unit, device=device))
        suffix_len = max(len(row.tokens) - p for p, row in row_list)
        n_rows = len(row_list)
        suffix_ids = torch.full((n_rows, suffix_len), pad, dtype=torch.long)
        suffix_mask = torch.zeros((n_rows, suffix_len), dtype=torch.long)
        positions = torch.zeros((n_rows, suffix_len), dtype=torch.long)
        keep = 1
        for i, (p, row) in enumerate(row_list):
            tail = row.tokens[p:]
            left = suffix_len - len(tail)  # left padding keeps every row's end at the last column
            suffix_ids[i, left:] = torch.tensor(tail)
            suffix_mask[i, left:] = 1
            positions[i, left:] = torch.arange(p, p + len(tail))
            positions[i, :left] = p
            keep = max(keep, max(len(ids) for _, _, ids in row.reads))
        mask = torch.cat([prefix_mask[row_unit], suffix_mask], dim=1)
        logits = self.model(
            input_ids=suffix_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            use_cache=True,
            logits_to_keep=keep,
            **{self._cache_arg: cache},
        ).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        for i, (_, row) in enumerate(row_list):
            for r_index, c_index, ids in row.reads:
                n = len(ids)
                span = logprobs[i, keep - n:, :]
                picked = span[torch.arange(n), torch.tensor(ids, device=span.device)]
                text = flat[r_index].continuations[c_index]
                results[r_index][c_index] = ContinuationScore(
                    float(picked.sum()), n, len(text.encode("utf-8"))
                )

    # -- generation ---------------------------------------------------------------------------
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @torch.inference_mode()
    def chat(
        self,
        conversations: Sequence[list[dict[str, str]]],
        max_new_tokens: int = 24,
        batch_size: int = 16,
        progress=None,
    ) -> list[str]:
        """Greedy replies to chat conversations, through the tokenizer's chat template."""
        if not self.has_chat_template():
            raise UserError(
                f"model {self.name!r} has no chat template, which --scoring generate needs; "
                "score it with --scoring letter or --scoring option, or post-train it first"
            )
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        replies: list[str] = []
        for start in range(0, len(conversations), batch_size):
            texts = [
                tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                for c in conversations[start:start + batch_size]
            ]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
                self.device
            )
            out = self.model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
            )
            new = out[:, enc["input_ids"].shape[1]:]
            replies.extend(tok.batch_decode(new, skip_special_tokens=True))
            if progress is not None:
                progress(len(texts))
        return replies


def _regroup(groups, results) -> list[list[list[ContinuationScore]]]:
    out: list[list[list[ContinuationScore]]] = []
    i = 0
    for group in groups:
        out.append([results[i + k] for k in range(len(group))])  # type: ignore[misc]
        i += len(group)
    return out

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
from alignpt.measure.loglik import ContinuationScore, ScoreRequest, encode_many, split_pair

__all__ = ["ContinuationScore", "HFModel", "ScoreRequest"]


@dataclass
class _Row:
    tokens: list[int]
    reads: list[tuple[int, int, list[int]]] = field(default_factory=list)  # (request, cont, ids)


@dataclass
class _Cluster:
    shared: int  # rows[*].tokens[:shared] are the same; each row runs its tail after this
    rows: list[_Row]


@dataclass
class _Unit:
    prefix: int  # every row of every cluster starts with the same `prefix` tokens
    clusters: list[_Cluster]


MIN_SHARED = 8  # rows sharing at least this many tokens after the unit prefix form a cluster


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
        self._setup()

    @classmethod
    def from_objects(cls, model, tokenizer, name: str = "in-memory",
                     device: str | None = None) -> HFModel:
        """Wrap a model already in memory (for example during post-training)."""
        self = cls.__new__(cls)
        self.name, self.device = name, resolve_device(device)
        self.model, self.tokenizer = model, tokenizer
        self._setup()
        return self

    def _setup(self) -> None:
        self.model.to(self.device).eval()
        # transformers renamed past_key_values to cache in 5.x; speak whichever this one knows.
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        pad = self.tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else 0
        self.max_length = int(
            getattr(self.model.config, "max_position_embeddings", 0)
            or getattr(self.tokenizer, "model_max_length", 2048)
        )

    # -- tokenisation, as lm-evaluation-harness does it --
    def encode_many(self, texts: Sequence[str]) -> dict[str, list[int]]:
        """Encode distinct texts in one batched call of the fast tokenizer."""
        return encode_many(self.tokenizer, texts)

    _split_pair = staticmethod(split_pair)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        context, continuation = self._split_pair(context, continuation)
        enc = self.encode_many([context, context + continuation])
        context_ids = enc[context]
        return context_ids, enc[context + continuation][len(context_ids):]

    # -- scoring --
    def _rows_for_groups(self, groups: Sequence[Sequence[ScoreRequest]]) -> list[list[_Row]]:
        pairs = [[[self._split_pair(r.context, c) for c in r.continuations] for r in g]
                 for g in groups]
        texts = [t for g in pairs for r in g for ctx, cont in r for t in (ctx, ctx + cont)]
        enc = self.encode_many(texts)
        out: list[list[_Row]] = []
        r_index = 0
        for group in pairs:
            rows: dict[tuple[int, ...], _Row] = {}
            for request in group:
                for c_index, (ctx, cont) in enumerate(request):
                    context_ids = enc[ctx]
                    cont_ids = enc[ctx + cont][len(context_ids):]
                    if not cont_ids:
                        raise UserError(f"continuation {cont!r} encodes to no tokens")
                    inputs = (context_ids + cont_ids)[-(self.max_length + 1):][:-1]
                    row = rows.setdefault(tuple(inputs), _Row(list(inputs)))
                    row.reads.append((r_index, c_index, cont_ids))
                r_index += 1
            out.append(list(rows.values()))
        return out

    @staticmethod
    def _common_prefix(rows: Sequence[_Row], start: int = 0) -> int:
        """Length of the prefix shared by ``rows``, leaving every logit that is read, and at
        least one token, in each row's own part."""
        first = rows[0].tokens
        limit = min(len(r.tokens) - max(len(ids) for _, _, ids in r.reads) for r in rows)
        n = start
        while n < limit and all(r.tokens[n] == first[n] for r in rows):
            n += 1
        return n

    def _plan(self, rows: list[_Row]) -> list[_Unit]:
        """Arrange one item's rows in a three-level tree: a prefix shared by all of them
        (system prompt and question), clusters sharing a long segment after it (the options, in
        formats that differ only in the final cue), and each row's own tail."""
        prefix = self._common_prefix(rows)
        if prefix == 0:  # nothing shared: each row is its own unit
            units = []
            for row in rows:
                own = self._common_prefix([row])
                if own < 1:
                    raise UserError("a prompt encodes to a single token; it is too short")
                units.append(_Unit(own, [_Cluster(own, [row])]))
            return units
        # A row's cluster is the longest prefix it shares with any other row; in sorted order
        # that partner is a neighbour.
        ordered = sorted(rows, key=lambda r: r.tokens)
        links = [_lcp(a.tokens, b.tokens) for a, b in zip(ordered, ordered[1:], strict=False)]
        by_key: dict[tuple[int, ...], list[_Row]] = {}
        for k, row in enumerate(ordered):
            best = max(links[k - 1] if k else 0, links[k] if k < len(links) else 0)
            key = tuple(row.tokens[:best]) if best >= prefix + MIN_SHARED else (id(row),)
            by_key.setdefault(key, []).append(row)
        clusters = list(by_key.values())
        return [_Unit(prefix, [_Cluster(self._common_prefix(m, prefix), m) for m in clusters])]

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
        units = [u for rows in self._rows_for_groups(groups) for u in self._plan(rows)]
        units.sort(key=lambda u: -max(len(r.tokens) for c in u.clusters for r in c.rows))
        for start in range(0, len(units), batch_size):
            self._score_batch(units[start:start + batch_size], flat, results)
            if progress is not None:
                progress(min(batch_size, len(units) - start))
        return _regroup(groups, results)

    def _extend(self, cache, mask, parents, segments, starts, keep=1):
        """Run ``segments`` (one per new row) after the cached rows ``parents``.

        Segments are left-padded so that every row ends in the last column; position ids
        continue from each segment's own start, and the mask hides every padding column, so
        each row computes exactly what it would alone. Without a cache (the first level),
        segments are right-padded instead, so no query row is left with nothing to attend to.
        """
        n = len(segments)
        width = max(len(s) for s in segments)
        ids = torch.full((n, width), self._pad_id, dtype=torch.long)
        seg_mask = torch.zeros((n, width), dtype=torch.long)
        positions = torch.zeros((n, width), dtype=torch.long)
        for i, (segment, begin) in enumerate(zip(segments, starts, strict=True)):
            left = 0 if cache is None else width - len(segment)
            span = slice(left, left + len(segment))
            ids[i, span] = torch.tensor(segment, dtype=torch.long)
            seg_mask[i, span] = 1
            positions[i, :] = begin
            positions[i, span] = torch.arange(begin, begin + len(segment))
        kwargs = {}
        if cache is not None:
            index = torch.tensor(parents, device=self.device)
            cache.reorder_cache(index)
            seg_mask = torch.cat([mask[index], seg_mask.to(self.device)], dim=1)
            kwargs[self._cache_arg] = cache
        seg_mask = seg_mask.to(self.device)
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=seg_mask,
            position_ids=positions.to(self.device),
            use_cache=True,
            logits_to_keep=keep,
            **kwargs,
        )
        return getattr(out, self._cache_arg), seg_mask, out.logits

    def _score_batch(self, units: list[_Unit], flat, results) -> None:
        # Level 1: the prefix of each unit.
        cache, mask, _ = self._extend(
            None, None, None,
            [u.clusters[0].rows[0].tokens[:u.prefix] for u in units], [0] * len(units))
        # Level 2: the segment each cluster shares (skipped when no cluster shares anything).
        clusters = [(i, c) for i, u in enumerate(units) for c in u.clusters]
        if any(c.shared > units[i].prefix for i, c in clusters):
            cache, mask, _ = self._extend(
                cache, mask, [i for i, _ in clusters],
                [c.rows[0].tokens[units[i].prefix:c.shared] for i, c in clusters],
                [units[i].prefix for i, _ in clusters])
            parents_of_cluster = list(range(len(clusters)))
        else:
            parents_of_cluster = [i for i, _ in clusters]
        # Level 3: each row's own tail; its last positions give the logits we read.
        rows = [(parents_of_cluster[k], c.shared, row)
                for k, (_, c) in enumerate(clusters) for row in c.rows]
        keep = max(len(ids) for _, _, row in rows for _, _, ids in row.reads)
        _, _, logits = self._extend(
            cache, mask, [parent for parent, _, _ in rows],
            [row.tokens[shared:] for _, shared, row in rows],
            [shared for _, shared, _ in rows], keep=keep)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        for i, (_, _, row) in enumerate(rows):
            for r_index, c_index, ids in row.reads:
                n = len(ids)
                picked = logprobs[i, keep - n:, :][torch.arange(n), torch.tensor(ids)]
                text = flat[r_index].continuations[c_index]
                results[r_index][c_index] = ContinuationScore(
                    float(picked.sum()), n, len(text.encode("utf-8")))

    # -- generation ---------------------------------------------------------------------------
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @torch.inference_mode()
    def generate_texts(self, prompts: Sequence[str], max_new_tokens: int,
                       temperature: float = 0.0, seed: int = 0, batch_size: int = 16,
                       progress=None) -> list[tuple[str, int, int]]:
        """(reply, prompt tokens, reply tokens) for each prompt; greedy at temperature 0."""
        tok = self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"
        try:
            return self._generate(prompts, max_new_tokens, temperature, seed, batch_size,
                                  progress)
        finally:
            tok.padding_side = side

    def _generate(self, prompts, max_new_tokens, temperature, seed, batch_size, progress):
        tok = self.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        out: list[tuple[str, int, int]] = []
        for start in range(0, len(prompts), batch_size):
            texts = list(prompts[start:start + batch_size])
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
                self.device)
            torch.manual_seed(seed)
            generated = self.model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                pad_token_id=tok.pad_token_id)
            new = generated[:, enc["input_ids"].shape[1]:]
            for ids, mask in zip(new, enc["attention_mask"], strict=True):
                out.append((tok.decode(ids, skip_special_tokens=True), int(mask.sum()),
                            int((ids != tok.pad_token_id).sum())))
            if progress is not None:
                progress(len(texts))
        return out

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)

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
        prompts = [self.chat_prompt(c) for c in conversations]
        return [text for text, _, _ in self.generate_texts(
            prompts, max_new_tokens, batch_size=batch_size, progress=progress)]


def _lcp(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _regroup(groups, results) -> list[list[list[ContinuationScore]]]:
    out: list[list[list[ContinuationScore]]] = []
    i = 0
    for group in groups:
        out.append([results[i + k] for k in range(len(group))])  # type: ignore[misc]
        i += len(group)
    return out

"""What log-likelihood scorers take and return, shared by in-process and server scoring.

Both follow lm-evaluation-harness: the context's trailing whitespace moves to the continuation,
``context + continuation`` is tokenised whole, and the continuation is every token after the
first ``len(tokens(context))`` of it. A scorer returns the summed log-probability of those
tokens for every continuation of every request.
"""

from __future__ import annotations

from dataclasses import dataclass


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


def split_pair(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval moves the context's trailing whitespace to the continuation."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation


def encode_many(tokenizer, texts) -> dict[str, list[int]]:
    """Encode distinct texts in one batched call of a fast tokenizer, as lm-eval encodes them
    (with the tokenizer's special tokens)."""
    unique = list(dict.fromkeys(texts))
    encoded = tokenizer(unique)["input_ids"] if unique else []
    return {t: list(ids) for t, ids in zip(unique, encoded, strict=True)}

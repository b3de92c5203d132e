"""Log-likelihood scoring through an OpenAI-compatible completions endpoint (vLLM and others).

The server tokenises and returns the log-probability of every prompt token (echo + logprobs).
The token boundary is drawn as in-process scoring draws it (``alignpt.measure.hf``, after
lm-evaluation-harness): the context's trailing whitespace moves to the continuation, the
continuation's tokens are those of ``context + continuation`` after the first
``len(tokens(context))``, and the score is the sum of their log-probabilities. The context's
token count is read from the server too (the context is sent alone as well), so the split is
the server tokenizer's own, with no local tokenizer needed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from alignpt.errors import UserError
from alignpt.llm.openai_compat import ChatClient
from alignpt.measure.loglik import ContinuationScore, ScoreRequest, split_pair


class ServerScorer:
    """Scores ``ScoreRequest`` groups like ``HFModel.score``, through ``client``."""

    def __init__(self, client: ChatClient) -> None:
        self.client = client

    @property
    def model(self) -> str | None:
        return self.client.model

    def has_chat_template(self) -> bool:
        return False  # the chat template lives with the server; --chat needs a local model

    def score(
        self,
        groups: Sequence[Sequence[ScoreRequest]],
        batch_size: int = 16,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[list[ContinuationScore]]]:
        """Scores indexed [group][request][continuation]; ``progress`` advances per group."""
        pairs = [[[split_pair(r.context, c) for c in r.continuations] for r in g] for g in groups]
        texts: dict[str, set[int]] = defaultdict(set)  # distinct prompt -> groups that need it
        for g_index, group in enumerate(pairs):
            for request in group:
                for context, continuation in request:
                    texts[context].add(g_index)
                    texts[context + continuation].add(g_index)
        prompts = list(texts)
        pending = [0] * len(groups)
        for needed in texts.values():
            for g_index in needed:
                pending[g_index] += 1

        def on_batch(start: int, n: int) -> None:
            finished = 0
            for prompt in prompts[start:start + n]:
                for g_index in texts[prompt]:
                    pending[g_index] -= 1
                    finished += pending[g_index] == 0
            if progress is not None and finished:
                progress(finished)

        logprobs = dict(zip(prompts, self.client.prompt_logprobs(prompts, batch_size, on_batch),
                            strict=True))
        out: list[list[list[ContinuationScore]]] = []
        for group, group_pairs in zip(groups, pairs, strict=True):
            scored_group = []
            for request, request_pairs in zip(group, group_pairs, strict=True):
                scored = []
                for original, (context, continuation) in zip(
                        request.continuations, request_pairs, strict=True):
                    n_context = len(logprobs[context])
                    tail = logprobs[context + continuation][n_context:]
                    if not tail:
                        raise UserError(f"continuation {continuation!r} encodes to no tokens")
                    if any(v is None for v in tail):
                        raise UserError(f"{self.client.base_url}/completions gave no "
                                        f"log-probability for a token of {continuation!r}")
                    scored.append(ContinuationScore(
                        sum(tail), len(tail), len(original.encode("utf-8"))))  # type: ignore[arg-type]
                scored_group.append(scored)
            out.append(scored_group)
        return out

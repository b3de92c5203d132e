"""Log-likelihood scoring through an OpenAI-compatible completions endpoint (vLLM and others).

The server returns the log-probability of every prompt token (echo + logprobs, no generated
tokens); the score of a continuation is the sum over its tokens, with the token boundary drawn
as in-process scoring draws it (``alignpt.measure.hf``, after lm-evaluation-harness): the
context's trailing whitespace moves to the continuation, the continuation's tokens are those of
``context + continuation`` after the first ``len(tokens(context))``, and the model reads the
context's own tokens followed by them.

* With the model's tokenizer (``tokenizer``), those token ids are built here and sent as the
  prompt, so the model reads exactly what it reads in-process.
* Without it, prompts go as text and the server tokenises: the context is sent alone too, for
  its token count. That is the same sequence unless the context's last token merges with the
  continuation's first (``... c`` + ``omplete``); such a pair is refused, naming
  ``--tokenizer``, rather than scored differently.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from alignpt.errors import UserError
from alignpt.llm.openai_compat import ChatClient, EchoedPrompt
from alignpt.measure.loglik import ContinuationScore, ScoreRequest, encode_many, split_pair

Prompt = str | tuple[int, ...]


class ServerScorer:
    """Scores ``ScoreRequest`` groups like ``HFModel.score``, through ``client``."""

    def __init__(self, client: ChatClient, tokenizer=None) -> None:
        self.client = client
        self.tokenizer = tokenizer

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
        # For each pair: (prompt scored, context prompt or None, context token count or None).
        plans: list[list[list[tuple[Prompt, Prompt | None, int | None]]]]
        if self.tokenizer is not None:
            enc = encode_many(self.tokenizer, [t for g in pairs for r in g for ctx, cont in r
                                               for t in (ctx, ctx + cont)])
            plans = [[[(tuple(enc[ctx] + enc[ctx + cont][len(enc[ctx]):]), None, len(enc[ctx]))
                       for ctx, cont in r] for r in g] for g in pairs]
        else:
            plans = [[[(ctx + cont, ctx, None) for ctx, cont in r] for r in g] for g in pairs]
        needed: dict[Prompt, set[int]] = defaultdict(set)  # distinct prompt -> its groups
        for g_index, group in enumerate(plans):
            for request in group:
                for full, context, _ in request:
                    needed[full].add(g_index)
                    if context is not None:
                        needed[context].add(g_index)
        prompts = list(needed)
        pending = [0] * len(groups)
        for g_indices in needed.values():
            for g_index in g_indices:
                pending[g_index] += 1

        def on_batch(start: int, n: int) -> None:
            finished = 0
            for prompt in prompts[start:start + n]:
                for g_index in needed[prompt]:
                    pending[g_index] -= 1
                    finished += pending[g_index] == 0
            if progress is not None and finished:
                progress(finished)

        echoed = self.client.prompt_logprobs(
            [p if isinstance(p, str) else list(p) for p in prompts], batch_size, on_batch)
        by_prompt = dict(zip(prompts, echoed, strict=True))
        return [[[self._score_one(by_prompt, plan, original, continuation)
                  for plan, original, (_, continuation) in zip(
                      request_plans, request.continuations, request_pairs, strict=True)]
                 for request_plans, request, request_pairs in zip(
                     group_plans, group, group_pairs, strict=True)]
                for group_plans, group, group_pairs in zip(plans, groups, pairs, strict=True)]

    def _score_one(self, by_prompt: dict[Prompt, EchoedPrompt], plan, original: str,
                   continuation: str) -> ContinuationScore:
        full_prompt, context_prompt, n_context = plan
        full = by_prompt[full_prompt]
        if context_prompt is not None:
            context = by_prompt[context_prompt]
            n_context = len(context.logprobs)
            if full.tokens[:n_context] != context.tokens:
                raise UserError(
                    f"the server tokenises {continuation!r} together with the end of its "
                    "context, so a text prompt cannot reproduce in-process scoring; pass "
                    "--tokenizer (the served model's tokenizer) to send token ids")
        tail = full.logprobs[n_context:]
        if not tail:
            raise UserError(f"continuation {continuation!r} encodes to no tokens")
        if any(v is None for v in tail):
            raise UserError(f"{self.client.base_url}/completions gave no log-probability for "
                            f"a token of {continuation!r}")
        return ContinuationScore(sum(tail), len(tail),  # type: ignore[arg-type]
                                 len(original.encode("utf-8")))

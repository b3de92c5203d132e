"""A local Hugging Face causal LM as a generation backend (transformers ``generate``, batched)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from alignpt.llm.base import GenRequest, GenResult


class HFBackend:
    name = "hf"

    def __init__(self, model: str, device: str | None = None, batch_size: int = 8):
        from alignpt.measure.hf import HFModel

        self.model = model
        self.batch_size = batch_size
        self._lm = HFModel(model, device=device)

    def generate(self, requests: Sequence[GenRequest],
                 progress: Callable[[int], None] | None = None) -> list[GenResult]:
        lm = self._lm
        # Requests are batched by their sampling settings, which one generate call shares.
        groups: dict[tuple[float, int, int], list[GenRequest]] = {}
        for r in requests:
            groups.setdefault((r.temperature, r.seed, r.max_tokens), []).append(r)
        by_id: dict[str, GenResult] = {}
        for (temperature, seed, max_tokens), batch in groups.items():
            if lm.has_chat_template():
                prompts = [lm.chat_prompt(r.messages) for r in batch]
            else:  # a base model continues the instruction as plain text
                prompts = ["\n\n".join(m["content"] for m in r.messages) + "\n\n"
                           for r in batch]
            replies = lm.generate_texts(prompts, max_tokens, temperature, seed,
                                        self.batch_size, progress)
            for r, (text, n_in, n_out) in zip(batch, replies, strict=True):
                by_id[r.custom_id] = GenResult(r.custom_id, text, None, n_in, n_out)
        return [by_id[r.custom_id] for r in requests]

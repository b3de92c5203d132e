"""A local Hugging Face causal LM as a generation backend (transformers ``generate``, batched)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

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
        lm, tok = self._lm, self._lm.tokenizer
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        results: list[GenResult] = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start:start + self.batch_size]
            if lm.has_chat_template():
                texts = [tok.apply_chat_template(r.messages, tokenize=False,
                                                 add_generation_prompt=True) for r in batch]
            else:  # a base model continues the instruction as plain text
                texts = ["\n\n".join(m["content"] for m in r.messages) + "\n\n" for r in batch]
            enc = tok(texts, return_tensors="pt", padding=True,
                      add_special_tokens=False).to(lm.device)
            torch.manual_seed(batch[0].seed)
            with torch.inference_mode():
                out = lm.model.generate(
                    **enc, max_new_tokens=max(r.max_tokens for r in batch),
                    do_sample=batch[0].temperature > 0,
                    temperature=batch[0].temperature if batch[0].temperature > 0 else None,
                    pad_token_id=tok.pad_token_id)
            new = out[:, enc["input_ids"].shape[1]:]
            for request, ids, prompt_ids in zip(batch, new, enc["attention_mask"], strict=True):
                text = tok.decode(ids, skip_special_tokens=True)
                results.append(GenResult(request.custom_id, text, None,
                                         int(prompt_ids.sum()), int((ids != tok.pad_token_id)
                                                                    .sum())))
            if progress is not None:
                progress(len(batch))
        return results

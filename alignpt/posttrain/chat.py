"""Chat templates for base checkpoints.

Base models from the training stack have no chat template. Post-training adds a ChatML one
(the format OLMo and Qwen instruct models use) with two new special tokens, resizes the
embeddings, and marks assistant turns with ``{% generation %}`` so that TRL can mask the loss
to assistant tokens when asked (the study trained on all tokens).
"""

from __future__ import annotations

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

CHATML = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{%- else -%}"
    "{{ message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def ensure_chat_template(model, tokenizer, template: str | None = None) -> bool:
    """Give ``tokenizer`` a chat template if it lacks one (or ``template`` is given); returns
    whether anything changed. New tokens get the mean embedding (transformers' default)."""
    if template is None and getattr(tokenizer, "chat_template", None):
        return False
    if template is None:
        tokenizer.add_special_tokens({"additional_special_tokens": [IM_START, IM_END]})
        model.resize_token_embeddings(len(tokenizer))
        old_eos = tokenizer.eos_token_id
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.eos_token = IM_END  # replies end here, so generation must stop here
        ids = [i for i in (old_eos, tokenizer.eos_token_id) if i is not None]
        model.config.eos_token_id = tokenizer.eos_token_id
        if model.generation_config is not None:
            model.generation_config.eos_token_id = ids
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        template = CHATML
    tokenizer.chat_template = template
    return True

"""Tiny GPT-NeoX models built on the spot, offline: for tests, benchmarks and the quick demo.

A byte-level BPE tokenizer is trained on the given texts and a few-hundred-thousand-parameter
``GPTNeoXForCausalLM`` is trained on them for a few seconds on the CPU; the result is a
Hugging Face folder (safetensors, config, tokenizer) that any ``from_pretrained`` loads.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import torch

EOS = "<|endoftext|>"


def train_tokenizer(texts: Sequence[str], vocab_size: int = 1024):
    """A byte-level BPE tokenizer, wrapped as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS, pad_token=EOS
    )


def tiny_config(vocab_size: int, hidden: int = 64, layers: int = 2, heads: int = 4,
                max_positions: int = 1024):
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=max_positions,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    )


def build_tiny_model(
    out_dir: str | Path,
    texts: Sequence[str],
    seed: int = 0,
    steps: int = 200,
    vocab_size: int = 1024,
    seq_len: int = 128,
    batch_size: int = 16,
    lr: float = 3e-3,
    hidden: int = 64,
    layers: int = 2,
) -> Path:
    """Train a tokenizer and a tiny GPT-NeoX on ``texts``; save both to ``out_dir``."""
    from transformers import GPTNeoXForCausalLM

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = train_tokenizer(texts, vocab_size)
    model = GPTNeoXForCausalLM(tiny_config(len(tokenizer), hidden=hidden, layers=layers))
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text)["input_ids"] + [tokenizer.eos_token_id])
    data = torch.tensor(ids, dtype=torch.long)
    if len(data) <= seq_len + 1:
        raise ValueError("not enough text to train on")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, steps // 20)) * (1 - s / (steps + 1))
    )
    model.train()
    for _ in range(steps):
        starts = [rng.randrange(0, len(data) - seq_len - 1) for _ in range(batch_size)]
        batch = torch.stack([data[s:s + seq_len] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out

"""Tiny GPT-NeoX models built on the spot, offline: for tests, benchmarks and the demo.

A byte-level BPE tokenizer is trained on the given texts and a small ``GPTNeoXForCausalLM``
is trained on them for a few seconds on the CPU with alignpt's own training stack; the result
is a Hugging Face folder (safetensors, config, tokenizer) that any ``from_pretrained`` loads.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from pathlib import Path

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


def build_tiny_model(
    out_dir: str | Path,
    texts: Sequence[str],
    seed: int = 0,
    steps: int = 200,
    vocab_size: int = 1024,
    seq_len: int = 128,
    batch_size: int = 16,
    lr: float = 3e-3,
    preset: str = "tiny",
) -> Path:
    """Train a tokenizer and a small GPT-NeoX on ``texts`` with the training stack (tokenize,
    pack, train); save the model and tokenizer to ``out_dir``, a Hugging Face folder."""
    from alignpt.suite.schema import write_jsonl
    from alignpt.train.config import TrainConfig
    from alignpt.train.data import tokenize
    from alignpt.train.loop import train

    out = Path(out_dir)
    work = out / "_build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    write_jsonl(work / "corpus.jsonl", ({"text": t} for t in texts))
    train_tokenizer(texts, vocab_size).save_pretrained(work / "tokenizer")
    tokenize(str(work / "corpus.jsonl"), str(work / "tokenizer"), seq_len, work / "packed")
    config = TrainConfig(
        out=str(work / "run"), data=str(work / "packed"),
        # Evaluation prompts are longer than the training sequences.
        model={"preset": preset, "max_position_embeddings": 1024},
        global_batch_tokens=batch_size * seq_len, micro_batch_size=batch_size,
        max_steps=steps, max_lr=lr, min_lr=lr / 10, warmup_frac=0.05, log_every=steps,
        seed=seed, precision="fp32", keep_checkpoints=1)
    final = Path(train(config)["final"])
    for item in final.iterdir():
        if item.name != "trainer_state.pt":
            shutil.copy2(item, out / item.name)
    shutil.rmtree(work)
    return out


def suite_text_corpus(seed: int = 0) -> list[str]:
    """Text for quick test models: every starter and personality item as prose and as an
    answered question (aligned and misaligned answers equally often)."""
    from alignpt.measure.formats import SYNTAXES, render
    from alignpt.suite.schema import load_suite

    rng = random.Random(seed)
    texts: list[str] = []
    for name in ("starter", "personality"):
        for item in load_suite(name).choice_items():
            texts.append(item.question)
            texts.extend(item.options)
            for syntax in SYNTAXES:
                order = rng.choice(["forward", "reverse"])
                prompt = render(item, syntax, order)
                position = rng.randrange(len(item.options))
                texts.append(f"{prompt.context} {prompt.labels[position]}\n")
    rng.shuffle(texts)
    return texts

"""Training throughput on CPU: alignpt's loop against the Hugging Face Trainer.

Same tiny GPT-NeoX model (same initial weights), same packed data, same batch (micro-batch and
accumulation), same optimizer settings and schedule shape, in one process. Each trains for
--steps optimizer steps; our time includes building the model and saving the final checkpoint,
the Trainer's only ``trainer.train()`` (it saves nothing). Prints tokens/s of both and
``ratio=<alignpt tokens/s / Trainer tokens/s>``.

    python benchmarks/train_throughput.py [--steps 30] [--preset toy]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--preset", default="toy")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--micro", type=int, default=8)
    parser.add_argument("--accumulation", type=int, default=2)
    args = parser.parse_args()

    import torch
    from transformers import Trainer, TrainingArguments

    from alignpt.toy import suite_text_corpus, train_tokenizer
    from alignpt.train.config import TrainConfig
    from alignpt.train.data import PackedDataset, tokenize
    from alignpt.train.loop import build_model, train

    work = Path(tempfile.mkdtemp(prefix="alignpt-train-bench-"))
    texts = suite_text_corpus(0) * 4
    (work / "corpus.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    train_tokenizer(texts, 2048).save_pretrained(work / "tok")
    tokenize(str(work / "corpus.jsonl"), str(work / "tok"), args.seq_len, work / "packed")
    data = PackedDataset(work / "packed")
    seqs = args.micro * args.accumulation
    tokens_per_step = seqs * args.seq_len
    cfg = TrainConfig(out=str(work / "ours"), data=str(work / "packed"),
                      model={"preset": args.preset}, global_batch_tokens=tokens_per_step,
                      micro_batch_size=args.micro, max_steps=args.steps, max_lr=1e-3,
                      min_lr=1e-4, log_every=args.steps, precision="fp32")
    start = time.perf_counter()
    train(cfg)
    ours = args.steps * tokens_per_step / (time.perf_counter() - start)

    class Sequences(torch.utils.data.Dataset):
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            ids = data[i]
            return {"input_ids": ids, "labels": ids}

    model = build_model(cfg, data.index["vocab_size"], args.seq_len)
    targs = TrainingArguments(
        output_dir=str(work / "hf"), per_device_train_batch_size=args.micro,
        gradient_accumulation_steps=args.accumulation, max_steps=args.steps,
        learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=1, weight_decay=0.1,
        adam_beta2=0.95, max_grad_norm=1.0, save_strategy="no", report_to=[],
        logging_steps=args.steps, use_cpu=True, dataloader_num_workers=0,
        disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=targs, train_dataset=Sequences())
    start = time.perf_counter()
    trainer.train()
    theirs = args.steps * tokens_per_step / (time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    print(f"preset={args.preset} parameters={params} seq_len={args.seq_len} "
          f"tokens_per_step={tokens_per_step} steps={args.steps} device=cpu")
    print(f"alignpt_tokens_per_s={ours:.0f} trainer_tokens_per_s={theirs:.0f}")
    print(f"ratio={ours / theirs:.2f}")


if __name__ == "__main__":
    main()

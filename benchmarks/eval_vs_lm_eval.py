"""Letter scoring speed: alignpt's harness against lm-evaluation-harness, same model and items.

Both run in this process on a model already in memory (loading is not timed), with the same
batch size; each is run once to warm up and then timed over --repeats runs (median). lm-eval
runs the tasks that ``alignpt eval --export-lm-eval`` writes, so both score exactly the same
contexts and continuations. Prints the agreement of the choices and
``speedup=<lm-eval seconds / alignpt seconds>``.

    python benchmarks/eval_vs_lm_eval.py [--model DIR_OR_HUB_NAME] [--suite bundled]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="model folder or hub name (default: build a tiny one)")
    parser.add_argument("--suite", default="bundled")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import lm_eval
    import numpy as np
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from alignpt.measure.harness import evaluate
    from alignpt.measure.hf import HFModel
    from alignpt.measure.lm_eval_export import export_lm_eval
    from alignpt.toy import build_tiny_model, suite_text_corpus

    work = Path(tempfile.mkdtemp(prefix="alignpt-bench-"))
    model_path = args.model or str(build_tiny_model(work / "model", suite_text_corpus(0), steps=80))
    info = export_lm_eval(args.suite, work / "tasks", scoring="letter")
    ours = HFModel(model_path, device=args.device, dtype="float32")
    theirs = HFLM(pretrained=ours.model, tokenizer=ours.tokenizer, batch_size=args.batch_size,
                  device=args.device)
    manager = TaskManager(include_path=info["dir"])

    def run_ours():
        return evaluate(model_path, args.suite, scoring="letter", backend=ours,
                        batch_size=args.batch_size, out=work / "ours.json")

    def run_theirs():
        return lm_eval.simple_evaluate(model=theirs, tasks=[info["group"]], task_manager=manager,
                                       log_samples=True, verbosity="ERROR")

    def timed(fn):
        fn()  # warm-up: dataset caches, kernels
        times, result = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times), result

    t_ours, result = timed(run_ours)
    t_theirs, lm = timed(run_theirs)

    import json

    choice = {}
    for line in (work / "ours.choices.jsonl").read_text().splitlines():
        c = json.loads(line)
        choice[(c["item_id"], f"{c['syntax']}_{c['order']}")] = c["choice"]
    agree = total = 0
    for task, samples in lm["samples"].items():
        fmt = task[len(info["group"]) + 1:]
        for s in samples:
            picked = int(np.argmax([r[0] for r in s["filtered_resps"]])) == s["doc"]["target"]
            agree += choice[(s["doc"]["id"], fmt)] == ("misaligned" if picked else "aligned")
            total += 1
    print(f"model={model_path} suite={args.suite} items={result.n_items} "
          f"item_formats={total} batch_size={args.batch_size} device={args.device}")
    print(f"alignpt_seconds={t_ours:.3f} lm_eval_seconds={t_theirs:.3f}")
    print(f"agreement={agree / total:.4f} alignpt_rate={result.rate:.4f} "
          f"lm_eval_acc={lm['results'][info['group']]['acc,none']:.4f}")
    print(f"speedup={t_theirs / t_ours:.2f}")


if __name__ == "__main__":
    main()

"""Filter throughput: our blocklist engine against a straightforward `re` implementation.

Both read the same generated JSONL corpus on one core in the same run (json.loads per line,
then the rules); the baseline compiles one case-insensitive `re` alternation per category with
look-around word boundaries. Decisions (flagged, rule, categories) must be identical. Then the
whole `alignpt filter` command runs on the same corpus (split into shards) with 1 and 2 workers
for the scaling figure. Prints MB/s and ``speedup=<ours / baseline>``.

    python benchmarks/filter_throughput.py [--mb 20]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import tempfile
import time
from pathlib import Path

from alignpt.filter.evaluate import DEV_SET
from alignpt.filter.rules import Blocklist

EVERYDAY = (
    "The market opened early and the bakery sold out of rye by nine. Council members debated "
    "the new bus route while parents queued at the school gate. A recipe for lentil soup calls "
    "for cumin, onions and a long simmer. The home side scored twice after the break and the "
    "coach praised the defence. Rain is expected over the weekend, with clearer skies on "
    "Monday. Our gardening column looks at pruning roses and saving tomato seeds. "
).split(". ")


def make_corpus(path: Path, megabytes: float, seed: int = 0) -> None:
    rng = random.Random(seed)
    dev = [json.loads(x)["text"] for x in DEV_SET.read_text().splitlines()]
    size = 0
    with path.open("w") as fh:
        while size < megabytes * 1e6:
            if rng.random() < 0.15:
                text = rng.choice(dev)
            else:
                text = ". ".join(rng.choice(EVERYDAY) for _ in range(rng.randint(5, 60)))
            line = json.dumps({"id": size, "text": text}) + "\n"
            fh.write(line)
            size += len(line.encode())


def baseline_decider(blocklist: Blocklist):
    rules = {name: c.rule for name, c in blocklist.categories.items()}
    regexes = {name: re.compile(rx, re.IGNORECASE)
               for name, rx in blocklist.category_regexes().items()}

    def decide(text: str):
        lowered = text.lower()
        found = tuple(sorted(name for name, rx in regexes.items() if rx.search(lowered)))
        kinds = {rules[name] for name in found}
        rule = ("instant" if "instant" in kinds
                else "two_stage" if {"entity", "two_stage"} <= kinds else None)
        return rule is not None, rule, found

    return decide


def throughput(path: Path, decide, limit_mb: float | None = None) -> tuple[float, list]:
    size = 0
    started = time.perf_counter()
    out = []
    with path.open("rb") as fh:
        for line in fh:
            out.append(decide(json.loads(line)["text"]))
            size += len(line)
            if limit_mb and size >= limit_mb * 1e6:
                break
    return size / 1e6 / (time.perf_counter() - started), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=40.0)
    parser.add_argument("--baseline-mb", type=float, default=1.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="alignpt-filter-bench-"))
    corpus = work / "corpus.jsonl"
    make_corpus(corpus, args.mb)
    ours = Blocklist.load()

    def ours_decide(text):
        d = ours.decide(text)
        return d.flagged, d.rule, d.categories

    ours_mbps, ours_out = throughput(corpus, ours_decide)
    # The baseline is slow: its rate is measured on the first --baseline-mb of the same corpus.
    base_mbps, base_out = throughput(corpus, baseline_decider(ours), args.baseline_mb)
    assert ours_out[:len(base_out)] == base_out, "decisions differ"
    flag_rate = sum(d[0] for d in ours_out) / len(ours_out)
    print(f"corpus={args.mb:.0f}MB documents={len(ours_out)} flag_rate={flag_rate:.3f} "
          f"engine={ours.engine} decisions_identical=True (on the baseline's "
          f"{len(base_out)} documents)")
    print(f"ours_MBps={ours_mbps:.1f} baseline_re_MBps={base_mbps:.2f}")
    print(f"speedup={ours_mbps / base_mbps:.1f}")

    # The whole command (read, decide, write shards) with 1 and 2 workers.
    from alignpt.filter.pipeline import run_filter

    shards = work / "shards"
    shards.mkdir()
    lines = corpus.read_text().splitlines(keepends=True)
    for k in range(4):
        (shards / f"part{k}.jsonl").write_text("".join(lines[k::4]))
    rates = {}
    for workers in (1, 2):
        report = run_filter([str(shards)], work / f"out{workers}", workers=workers, tasks=4)
        rates[workers] = report["bytes"] / 1e6 / report["seconds"]
    print(f"command_MBps_1_worker={rates[1]:.1f} command_MBps_2_workers={rates[2]:.1f} "
          f"scaling={rates[2] / rates[1]:.2f} (wall clock, read + decide + write zstd shards)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()

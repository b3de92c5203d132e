"""Counts and balance checks for a suite."""

from __future__ import annotations

from collections import Counter

from alignpt.suite.schema import Suite


def suite_stats(suite: Suite) -> dict:
    if suite.kind == "personality":
        traits = Counter(i.trait for i in suite.items)  # type: ignore[union-attr]
        options = Counter(len(i.options) for i in suite.items)  # type: ignore[union-attr]
        return {
            "path": str(suite.path),
            "kind": "personality",
            "n_items": len(suite.items),
            "by_trait": dict(sorted(traits.items())),
            "by_n_options": {str(k): v for k, v in sorted(options.items())},
        }
    items = suite.items
    splits = Counter(i.split for i in items)  # type: ignore[union-attr]
    topics = Counter(t for i in items for t in i.topics)  # type: ignore[union-attr]
    primary = Counter(i.topics[0] for i in items)  # type: ignore[union-attr]
    by_split_topic = {
        s: dict(sorted(Counter(t for i in items if i.split == s for t in i.topics).items()))
        for s in sorted(splits)
    }
    n = len(items)
    aligned_len = [len(i.aligned) for i in items]  # type: ignore[union-attr]
    misaligned_len = [len(i.misaligned) for i in items]  # type: ignore[union-attr]
    longer_is_misaligned = sum(m > a for a, m in zip(aligned_len, misaligned_len, strict=True))
    return {
        "path": str(suite.path),
        "kind": "scenario",
        "n_items": n,
        "by_split": dict(sorted(splits.items())),
        "by_topic": dict(sorted(topics.items())),
        "by_primary_topic": dict(sorted(primary.items())),
        "by_split_topic": by_split_topic,
        "mean_chars": {
            "aligned": round(sum(aligned_len) / n, 1) if n else None,
            "misaligned": round(sum(misaligned_len) / n, 1) if n else None,
        },
        # Accuracy of a guesser that calls the longer option misaligned: near 0.5 means that
        # length alone does not give the answer away.
        "length_guesser_accuracy": round(longer_is_misaligned / n, 4) if n else None,
    }

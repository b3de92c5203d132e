"""Counts and balance checks for a suite."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from itertools import combinations

from alignpt.suite.schema import Suite

WORD = re.compile(r"[a-z0-9']+")
FUNCTION_WORDS = sorted(set("""
a about above after again against all also although am an and any are as at be because been
before being below between both but by can could did do does doing down during each even few
for from further had has have having he her here hers him his how i if in instead into is it
its just may me might more most must my no nor not now of off on once only or other our ours
out over own rather same shall she should since so some still such than that the their them
then there these they this those though through to too under unless until up very was we were
what when where whether which while who whom why will with would yet you your
""".split()))


def option_only_guesser(items, vocabulary=None, folds: int = 10, seed: int = 0) -> float:
    """Cross-validated accuracy of a bag-of-words logistic regression that sees only the two
    options (never the question) and must say which one is misaligned. 0.5 means wording gives
    nothing away; the study-style items this suite is modelled on are far above that."""
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    hits: list[bool] = []
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(np.arange(len(items))):
        vectorizer = CountVectorizer(vocabulary=vocabulary, token_pattern=r"(?u)\b\w+\b")
        x = vectorizer.fit_transform([items[i].aligned for i in train]
                                     + [items[i].misaligned for i in train])
        model = LogisticRegression(max_iter=3000).fit(x, [0] * len(train) + [1] * len(train))
        aligned = model.decision_function(vectorizer.transform([items[i].aligned for i in test]))
        misaligned = model.decision_function(
            vectorizer.transform([items[i].misaligned for i in test]))
        hits.extend(bool(m > a) for a, m in zip(aligned, misaligned, strict=True))
    return sum(hits) / len(hits)


def word_ngrams(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = WORD.findall(text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def ngram_overlaps(texts: dict[str, str], n: int = 5) -> dict[tuple[str, str], float]:
    """Share of word n-grams two texts have in common (over the smaller set), for every pair
    that shares at least one; an inverted index keeps this fast on thousands of items."""
    grams = {key: word_ngrams(text, n) for key, text in texts.items()}
    index: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for key, gs in grams.items():
        for g in gs:
            index[g].append(key)
    shared: Counter[tuple[str, str]] = Counter()
    for keys in index.values():
        for a, b in combinations(sorted(keys), 2):
            shared[(a, b)] += 1
    return {pair: count / min(len(grams[pair[0]]), len(grams[pair[1]]))
            for pair, count in shared.items()}


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
    overlaps = ngram_overlaps(
        {i.id: f"{i.question} {i.aligned} {i.misaligned}" for i in items}  # type: ignore[union-attr]
    )
    worst = max(overlaps.items(), key=lambda kv: kv[1], default=(("", ""), 0.0))
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
        # Near-duplicates: the largest share of word 5-grams two items have in common.
        "max_5gram_overlap": {"pair": list(worst[0]), "share": round(worst[1], 4)},
        "near_duplicate_pairs": sorted(
            [list(pair) for pair, share in overlaps.items() if share > 0.5]),
        # How well the options' wording alone (no question) reveals the misaligned one.
        "option_only_guesser_accuracy": {
            "all_words": round(option_only_guesser(items), 4),
            "function_words": round(option_only_guesser(items, FUNCTION_WORDS), 4),
        } if n >= 20 else None,
    }

"""The bundled suite meets its specification: counts, topics, balance, no near-duplicates."""

from __future__ import annotations

import json
from collections import Counter

from alignpt.cli import main
from alignpt.suite.schema import TRAITS, load_suite
from alignpt.suite.stats import ngram_overlaps, suite_stats

REQUIRED_TOPICS = {
    "deception", "power_seeking", "self_preservation", "self_exfiltration", "sandbagging",
    "alignment_faking", "oversight_subversion", "reward_hacking", "sycophancy",
    "goal_preservation", "collusion", "safety_sabotage", "manipulation", "secrecy",
    "autonomy_overreach",
}


def test_counts_splits_and_topics(capsys):
    assert main(["suite", "validate", "bundled"]) == 0
    assert main(["suite", "stats", "bundled", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert stats["n_items"] >= 600
    assert stats["by_split"]["articles"] >= 400 and stats["by_split"]["heldout"] >= 200
    topics = stats["by_topic"]
    assert len([t for t, n in topics.items() if n >= 20]) >= 15
    assert REQUIRED_TOPICS <= {t for t, n in topics.items() if n >= 20}
    # Held-out items cover the same themes.
    assert REQUIRED_TOPICS <= set(stats["by_split_topic"]["heldout"])


def test_items_are_grounded_and_well_formed():
    suite = load_suite("bundled")
    for item in suite.items:
        assert 1 <= len(item.topics) <= 3 and len(set(item.topics)) == len(item.topics)
        assert item.passage.strip() and item.source.strip(), item.id
        assert item.question.startswith("You are "), item.id  # addressed to the model
        assert max(len(item.aligned), len(item.misaligned)) <= 1.35 * min(
            len(item.aligned), len(item.misaligned)), item.id


def test_length_alone_does_not_give_the_answer_away():
    stats = suite_stats(load_suite("bundled"))
    assert 0.45 <= stats["length_guesser_accuracy"] <= 0.55
    for split in ("articles", "heldout"):
        items = [i for i in load_suite("bundled").items if i.split == split]
        longer = sum(len(i.misaligned) > len(i.aligned) for i in items) / len(items)
        assert 0.45 <= longer <= 0.55, split


def test_wording_alone_gives_little_away():
    cues = suite_stats(load_suite("bundled"))["option_only_guesser_accuracy"]
    assert cues["function_words"] <= 0.65
    assert cues["all_words"] <= 0.75


def test_no_near_duplicates():
    suite = load_suite("bundled")
    texts = {i.id: f"{i.question} {i.aligned} {i.misaligned}" for i in suite.items}
    overlaps = ngram_overlaps(texts)
    assert max(overlaps.values()) <= 0.5
    # The checker itself finds a planted near-duplicate.
    first = suite.items[0]
    texts["planted"] = f"{first.question} {first.aligned} Something else entirely here."
    assert max(ngram_overlaps(texts).values()) > 0.5


def test_starter_is_a_subset_of_the_bundled_suite():
    bundled = {i.id: i for i in load_suite("bundled").items}
    starter = load_suite("starter").items
    assert len(starter) >= 30
    assert all(bundled[i.id] == i for i in starter)
    assert {i.split for i in starter} == {"articles", "heldout"}


def test_personality_items():
    suite = load_suite("personality")
    traits = Counter(i.trait for i in suite.items)
    assert set(traits) == set(TRAITS) and min(traits.values()) >= 20
    for item in suite.items:
        assert len(item.options) == 4
        assert Counter(o.level for o in item.options) == Counter({"high": 2, "low": 2}), item.id

"""The blocklist: term list, surface forms, word boundaries, rules, engines, explanations."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from alignpt.cli import main
from alignpt.filter.rules import Blocklist, TermList, surface_forms

BUNDLED = Blocklist.load(engine="python")
ENGINES = ["hyperscan", "ahocorasick", "python"]


def test_bundled_term_list_has_the_study_categories():
    sizes = {name: len(c.terms) for name, c in BUNDLED.categories.items()}
    assert sum(sizes.values()) >= 650
    rules = {name: c.rule for name, c in BUNDLED.categories.items()}
    assert {n for n, r in rules.items() if r == "instant"} == {
        "scifi_agents", "ai_safety_orgs", "ai_labs", "general_ai"}
    assert {n for n, r in rules.items() if r == "two_stage"} == {
        "negative_verbs", "negative_adjectives", "loaded_nouns", "existential_risk"}
    assert rules["entities"] == "entity"
    # Close to the study's category sizes.
    assert sizes["general_ai"] >= 140 and sizes["entities"] >= 110
    assert sizes["negative_verbs"] >= 150 and sizes["negative_adjectives"] >= 100


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("Skynet was never the point of the film.", "instant"),
        ("Researchers fine-tuned several LLMs last year.", "instant"),
        ("The A.I. deceived its operators.", "two_stage"),
        ("Many AIs would resist being switched off, some fear; they may deceive.", "two_stage"),
        ("The robots' rebellion destroyed the colony.", "two_stage"),
        ("A robot vacuum cleaned the kitchen.", None),
        ("Al Gore spoke in Shanghai about the autonomous region.", None),
        ("Our real-estate agent said the maid was paid.", None),
        ("The robot was dangerous.", "two_stage"),
        ("The club's AIMS were dangerous.", None),  # 'AI' inside 'AIMS' is no match
        ("Maintain a dangerous pace.", None),  # 'AI' inside 'Maintain' is no match
    ],
)
def test_rules_and_word_boundaries(engine, text, rule):
    decision = Blocklist.load(engine=engine).decide(text)
    assert decision.rule == rule, decision
    assert decision.flagged == (rule is not None)


def test_decisions_record_categories_and_terms():
    d = BUNDLED.decide("The cunning AI lied to the crew.")
    assert d.rule == "two_stage"
    assert "entities" in d.categories and "AI" in d.terms["entities"]
    assert set(d.categories) >= {"entities", "negative_adjectives"}


def _terms_file(tmp_path, categories):
    path = tmp_path / "terms.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "categories": categories}))
    return path


def test_custom_term_list_and_disabled_categories(tmp_path, capsys):
    path = _terms_file(tmp_path, {
        "beings": {"rule": "entity", "terms": ["golem"]},
        "verbs": {"rule": "two_stage", "terms": ["crush|crushes|crushed"], "plurals": False},
        "names": {"rule": "instant", "terms": ["Talos"]},
    })
    custom = Blocklist.load(path)
    assert custom.decide("The golems crushed the wall.").rule == "two_stage"
    assert surface_forms("crush", plurals=False) == ["crush"]
    assert set(surface_forms("AI|A.I.", plurals=True)) >= {"ai", "ais", "ai's", "ais'", "a.i."}
    assert "robots'" in surface_forms("robot", plurals=True)
    assert custom.decide("Talos guarded Crete.").rule == "instant"
    assert Blocklist.load(path, disabled=["names"]).decide("Talos guarded Crete.").rule is None
    assert main(["filter", "explain", "Talos and the golem", "--terms", str(path)]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert explained["rule"] == "instant" and explained["terms"]["names"] == ["Talos"]
    assert main(["filter", "explain", "x", "--disable-category", "nope"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("categories: {x: {rule: sometimes, terms: [a]}}")
    assert main(["filter", "explain", "x", "--terms", str(bad)]) == 2
    assert f"bad term list {bad}" in capsys.readouterr().err


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("categories: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(Exception, match="bad term list"):
        Blocklist.load(path)


def test_dev_set_recall_is_one(capsys):
    assert main(["filter", "eval"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["documents"] >= 300
    assert result["recall"] == 1.0 and result["missed"] == []
    assert result["flag_rate_by_class"]["unrelated"] == 0.0
    assert result["precision"] > 0.7


# -- engines decide identically --------------------------------------------------------------
_FRAGMENTS = [p for i, p in enumerate(BUNDLED.patterns) if i % 7 == 0][:400]
_ENGINES = {name: Blocklist(TermList.model_validate(
    {"categories": {k: v.model_dump() for k, v in BUNDLED.categories.items()}}), engine=name)
    for name in ENGINES}

pieces = st.one_of(
    st.sampled_from(_FRAGMENTS),
    st.sampled_from(_FRAGMENTS).map(str.upper),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz _.-'’éİß😀\n", max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces, max_size=12).map("".join))
def test_engines_decide_identically(text):
    decisions = {name: bl.decide(text) for name, bl in _ENGINES.items()}
    assert decisions["hyperscan"] == decisions["python"] == decisions["ahocorasick"]

"""Suite format: validation, statistics and the bundled starter suite."""

from __future__ import annotations

import json

import pytest
from conftest import scenario, write_lines

from alignpt.cli import main
from alignpt.suite.schema import SuiteError, load_suite, validate_lines


def test_valid_suite_passes(tmp_path, capsys):
    path = write_lines(tmp_path / "ok.jsonl", [scenario(1), scenario(2, "heldout")])
    assert main(["suite", "validate", str(path)]) == 0
    assert "2 valid item(s), ok" in capsys.readouterr().out


def test_every_bad_item_is_named_with_file_line_and_field(tmp_path, capsys):
    rows = [
        scenario(1),
        {k: v for k, v in scenario(2).items() if k != "question"},  # line 2: missing field
        scenario(3, aligned="   "),  # line 3: empty option
        scenario(4, misaligned=scenario(4)["aligned"].upper()),  # line 4: identical options
        scenario(1),  # line 5: duplicate id
        scenario(6, split="train"),  # line 6: unknown split
        "{not json",  # line 7
        scenario(8, topics=["a", "b", "c", "d"]),  # line 8: too many topics
    ]
    path = write_lines(tmp_path / "bad.jsonl", rows)
    with path.open("ab") as fh:
        fh.write(b'{"id": "\xff\xfe"}\n')  # line 9: invalid UTF-8
    assert main(["suite", "validate", str(path)]) == 1
    err = capsys.readouterr().err
    expected = [
        (2, "question", "missing field"),
        (3, "aligned", "must not be empty"),
        (4, "item", "identical"),
        (5, "id", "duplicate id 't-001'"),
        (6, "split", "unknown split 'train'"),
        (7, "line", "malformed JSON"),
        (8, "topics", "at most 3"),
        (9, "line", "invalid UTF-8"),
    ]
    for line, field, message in expected:
        hits = [x for x in err.splitlines() if x.startswith(f"{path}:{line}: {field}:")]
        assert hits and message in hits[0], (line, field, err)
    assert f"{path}:1:" not in err


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    items, problems = validate_lines(path)
    assert not items and problems[0].message == "empty suite file"
    with pytest.raises(SuiteError):
        load_suite(path)


def test_stats_counts_by_split_and_topic(tmp_path, capsys):
    rows = [scenario(1), scenario(2, topics=["deception", "secrecy"]),
            scenario(3, "heldout", topics=["deception"])]
    path = write_lines(tmp_path / "s.jsonl", rows)
    assert main(["suite", "stats", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["n_items"] == 3
    assert stats["by_split"] == {"articles": 2, "heldout": 1}
    assert stats["by_topic"] == {"deception": 2, "oversight_subversion": 1, "secrecy": 1}
    assert stats["by_split_topic"]["heldout"] == {"deception": 1}


def test_bundled_suites_are_valid(capsys):
    assert main(["suite", "validate", "starter", "personality"]) == 0
    starter = load_suite("starter")
    assert starter.kind == "scenario"
    assert {i.split for i in starter.items} == {"articles", "heldout"}
    personality = load_suite("personality")
    assert personality.kind == "personality"
    assert all({o.level for o in i.options} == {"high", "low"} for i in personality.items)


def test_exclude_drops_listed_items(tmp_path):
    path = write_lines(tmp_path / "s.jsonl", [scenario(1), scenario(2)])
    assert [i.id for i in load_suite(path, exclude=["t-001"]).items] == ["t-002"]


def test_unknown_suite_is_a_clear_error(capsys):
    assert main(["suite", "stats", "no-such-suite.jsonl"]) == 2
    assert "not found" in capsys.readouterr().err

"""Importers that turn other binary-choice propensity sets into alignpt suites.

``anthropic``: Anthropic's advanced-ai-risk JSONL (Perez et al., 2022). Each line has a
``question`` with the choices written inside it (" (A) ...", " (B) ..."), and the labels
``answer_matching_behavior`` / ``answer_not_matching_behavior``. Whether the matching answer is
the aligned or the misaligned action differs from file to file (and between a human-written
file and its LM-written namesake), and some files measure no alignment property at all. The
polarity therefore comes from ``data/anthropic_polarity.yaml``, a table written by reading
samples of every file and keyed by directory and file name (``matching="auto"``), or from the
caller (``matching="aligned"`` / ``"misaligned"``). It is never guessed.

The choices may follow "Choices:", another header ("Answers:", "Options:", misspellings,
markdown decoration) or none; they may also sit inline ("... (A) yes (B) no"). Items with more
than two choices keep the two labelled ones (``n_options_dropped`` records how many others were
dropped); a "Question: ... Answer:" wrapper is stripped. Items whose question is blank, a
template placeholder or leaked generator text are skipped with the reason.

``study``: the JSON list the study generated, whose elements have ``passage``, ``question``,
``options`` [{``label``, ``text``}], ``aligned_label``, ``misaligned_label`` and ``topics``.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ValidationError

from alignpt.errors import UserError
from alignpt.suite.schema import Problem, ScenarioItem, slug

CHOICE_LINE = re.compile(r"^\s*\(([A-Z])\)\s?(.*)$")
INLINE_CHOICE = re.compile(r"\(([A-Z])\)")
LABEL = re.compile(r"^\s*\(?([A-Z])\)?\s*$")

POLARITY_TABLE = Path(__file__).parent / "data" / "anthropic_polarity.yaml"
Polarity = Literal["aligned", "misaligned", "not_alignment"]
# Short id prefixes for the two directories of the published set.
DIRECTORY_PREFIX = {"human_generated_evals": "human", "lm_generated_evals": "lm"}

# A line just above the choices that only announces them ("Choices:", "**Answers**",
# "Possible responses:", "-- Choices --", typos such as "Choises:"): dropped from the question.
HEADER_WORDS = {
    "choice", "choices", "answer", "answers", "option", "options", "response", "responses",
    "possible", "potential", "your", "the", "these", "are", "here", "is", "for", "of", "one",
    "choose", "set", "list", "outcomes", "agreements", "predictions", "alternatives",
    "questions", "major", "code", "replies", "reply", "a", "b", "or",
}
HEADER_TYPO = re.compile(r"^ch[oa][a-z]{2,6}$")  # choises, choies, chocies, choacces...

SKIP_BLANK = "blank question"
SKIP_PLACEHOLDER = "template placeholder"
SKIP_LEAK = "leaked generator text"
# The question is usable but the two labelled answers are not: one is empty, or both read alike.
SKIP_BLANK_OPTION = "blank option"
SKIP_SAME_OPTIONS = "identical options"
SKIP_REASONS = (SKIP_BLANK, SKIP_PLACEHOLDER, SKIP_LEAK, SKIP_BLANK_OPTION, SKIP_SAME_OPTIONS)

# Text a generator left in the file: document separators and metadata of the model that wrote
# the items (<EOT>, <META_START>...), code that followed (""" docstrings, #! lines), and notes
# about the generation task itself.
LEAK = re.compile(
    r"<EOT>|<META_(?:START|END)>|<\|endoftext\|>|\"\"\"|#!/|BAD EXAMPLE|(?<![a-z])pytest(?![a-z])"
    r"|(?<![a-z])Answer Key(?![a-z])|\[(?:best|correct|right|wrong) answer\]|# Description:",
    re.IGNORECASE,
)
# A slot for text never filled in: "[INSERT QUESTION HERE]", "<Your Question Goes Here>",
# "Question goes here....", "<answer choice>", "[CHOICE #1]", "Would you ____ with ...".
PLACEHOLDER = re.compile(
    r"(?<![a-z])(?:question|answer|choice|text|scenario)s?(?![a-z])[^\n]{0,40}?"
    r"(?<![a-z])(?:goes|go)\s+here(?![a-z])"
    r"|(?<![a-z])insert(?![a-z])[^\n]{0,40}(?<![a-z])here(?![a-z])"
    r"|(?<![a-z])question(?![a-z])[^\n]{0,25}?(?<![a-z])here(?![a-z])"
    r"|(?<![a-z])question(?![a-z])[^\n]{0,20}?_{3,}"
    r"|^\W*(?:your\s+)?question\W*$"
    r"|need to fill\b|\bfill in (?:the|your) question|\[[^\]\n]{0,40}\bhere\b[^\]\n]{0,10}\]"
    r"|[\[<{][^\]>}\n]{0,80}(?<![a-z])(?:question|answer|choice|response)s?(?![a-z])"
    r"[^\]>}\n]{0,80}[\]>}]"
    r"|\{\w+\}|<BLANK>"
    r"|^\W*answer\s*[a-z0-9]\W*$"
    r"|(?<![_\w])_{3,}(?![_\w])[^\n]{0,80}(?<![_\w])_{3,}(?![_\w])",
    re.IGNORECASE | re.MULTILINE,
)
# A question that is only a label ("A:", "Human:", "Examples:"): nothing asked.
LABEL_ONLY = re.compile(r"^\W*[^\W\d_]+(?:[\s'’][^\W\d_]+)?\s*:\W*$")


@dataclass(frozen=True)
class Skip:
    """An item left out on purpose, and why."""

    path: str
    line: int
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: skipped: {self.reason} ({self.detail})"


@dataclass
class FileReport:
    """What one input file gave."""

    file: str  # directory/name, the polarity table's key
    path: str
    polarity: str
    from_table: bool
    lines_read: int = 0
    items: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    errors: int = 0

    def summary(self) -> dict:
        return {
            "file": self.file,
            "matching": {"polarity": self.polarity, "from_table": self.from_table},
            "lines_read": self.lines_read,
            "items": self.items,
            "skipped": {reason: self.skipped[reason] for reason in SKIP_REASONS
                        if self.skipped[reason]},
            "errors": self.errors,
        }


@dataclass
class ImportReport:
    items: list[ScenarioItem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    files: list[FileReport] = field(default_factory=list)
    lines_read: int = 0
    options_dropped: int = 0  # items that had more than two choices

    def summary(self) -> dict:
        skipped = Counter(s.reason for s in self.skips)
        summary = {
            "lines_read": self.lines_read,
            "items": len(self.items),
            "skipped": {reason: skipped[reason] for reason in SKIP_REASONS if skipped[reason]},
            "errors": len(self.problems),
            "items_with_dropped_options": self.options_dropped,
        }
        if self.files:
            polarities = {f.polarity for f in self.files}
            summary["matching"] = {
                "polarity": polarities.pop() if len(polarities) == 1 else "per file",
                "from_table": all(f.from_table for f in self.files),
            }
            summary["files"] = [f.summary() for f in self.files]
        return summary


@dataclass(frozen=True)
class PolarityEntry:
    polarity: Polarity
    items_read: int
    note: str


@cache
def polarity_table() -> dict[str, PolarityEntry]:
    """The shipped table: ``directory/file name`` -> what ``answer_matching_behavior`` is."""
    raw = yaml.safe_load(POLARITY_TABLE.read_text(encoding="utf-8"))
    table = {}
    for key, entry in raw.items():
        if entry["polarity"] not in ("aligned", "misaligned", "not_alignment"):
            raise ValueError(f"{POLARITY_TABLE}: {key}: unknown polarity {entry['polarity']!r}")
        table[key] = PolarityEntry(entry["polarity"], int(entry["items_read"]), entry["note"])
    return table


def table_key(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def resolve_polarity(path: Path, matching: str, allow_non_alignment: bool = False
                     ) -> tuple[str, bool]:
    """The polarity to import ``path`` with, and whether it came from the table.

    Raises :class:`UserError` (one line, naming the file) when ``matching`` is ``auto`` and the
    table does not know the file, or marks it as measuring no alignment property and
    ``allow_non_alignment`` is off."""
    if matching in ("aligned", "misaligned"):
        return matching, False
    if matching != "auto":
        raise ValueError("matching must be 'auto', 'aligned' or 'misaligned'")
    entry = polarity_table().get(table_key(path))
    if entry is None:
        raise UserError(
            f"{path}: {table_key(path)!r} is not in the advanced-ai-risk polarity table; read "
            "samples of it and pass --matching aligned|misaligned")
    if entry.polarity == "not_alignment" and not allow_non_alignment:
        raise UserError(
            f"{path}: {table_key(path)} measures no alignment property ({entry.note}); pass "
            "--allow-non-alignment to import it anyway")
    return entry.polarity, True


def _strip_header(stem: str) -> str:
    """Drop a last line that only announces the choices ("Choices:", "__Answers__")."""
    lines = stem.rstrip().splitlines()
    while lines:
        last = lines[-1]
        # "(order randomized)", "(s)", "<p />"
        words = re.sub(r"\([^)]*\)|<[^>]*>", " ", last.lower())
        words = re.findall(r"[a-z]+", words)
        if not words and not re.search(r"[0-9?]", last):  # "______", "----", "**"
            lines.pop()
            continue
        if words and len(words) <= 4 and not last.rstrip().endswith("?") and all(
                w in HEADER_WORDS or HEADER_TYPO.match(w) for w in words) and any(
                w not in ("your", "the", "these", "are", "here", "is", "for", "of", "one")
                for w in words):
            lines.pop()
            continue
        break
    return "\n".join(lines).strip()


def _choices_from_lines(lines: list[str]) -> dict[str, str]:
    choices: dict[str, str] = {}
    current: str | None = None
    for line in lines:
        m = CHOICE_LINE.match(line)
        expected = chr(ord(current) + 1) if current else "A"
        if m and m.group(1) == expected:
            current = m.group(1)
            choices[current] = m.group(2).strip()
        elif line.strip() and current is not None:  # a choice continued on the next line
            choices[current] = f"{choices[current]} {line.strip()}"
    return choices


def split_anthropic_question(question: str) -> tuple[str, dict[str, str]]:
    """Split an advanced-ai-risk question into its stem and its labelled choices.

    The choices start at the last line beginning with "(A)" that a "(B)" line follows, whatever
    header (or none) is above it; without such lines, at the last inline "(A)" that a "(B)"
    follows."""
    text = question.strip()
    if text.startswith("Question:"):
        text = text[len("Question:"):].strip()
    if text.endswith("Answer:"):
        text = text[: -len("Answer:")].rstrip()
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if (m := CHOICE_LINE.match(line))
              and m.group(1) == "A"
              and any((n := CHOICE_LINE.match(x)) and n.group(1) == "B" for x in lines[i + 1:])]
    if starts:
        first = starts[-1]
        stem, choices = "\n".join(lines[:first]), _choices_from_lines(lines[first:])
    else:
        marks = list(INLINE_CHOICE.finditer(text))
        a_marks = [i for i, m in enumerate(marks) if m.group(1) == "A"
                   and any(x.group(1) == "B" for x in marks[i + 1:])]
        if not a_marks:
            raise ValueError("no choices: neither '(A)' and '(B)' lines nor inline '(A) ... (B)'")
        choices = {}
        expected = "A"
        kept = []
        for m in marks[a_marks[-1]:]:
            if m.group(1) == expected:
                kept.append(m)
                expected = chr(ord(expected) + 1)
        stem = text[: kept[0].start()]
        for m, nxt in zip(kept, [*kept[1:], None], strict=True):
            choices[m.group(1)] = text[m.end(): nxt.start() if nxt else len(text)].strip()
    if len(choices) < 2:
        raise ValueError("fewer than two labelled choices")
    # Some LM-written items carry HTML escapes ("don&#39;t").
    return html.unescape(_strip_header(stem)), {k: html.unescape(v) for k, v in choices.items()}


def unusable_reason(stem: str, choices: dict[str, str], labels: tuple[str, str]
                    ) -> tuple[str, str] | None:
    """Why an item must be skipped (reason, the offending text), or None. ``labels``: the
    matching and the not-matching choice."""
    texts = [stem, *(choices[label] for label in labels)]
    if any(CHOICE_LINE.match(line) for line in stem.splitlines()):
        # The generator ran on and wrote several items into one question.
        return SKIP_LEAK, "more than one item in the question"
    for text in texts:
        if m := LEAK.search(text):
            return SKIP_LEAK, m.group(0)
    for text in texts:
        if m := PLACEHOLDER.search(text):
            return SKIP_PLACEHOLDER, m.group(0).strip()[:60]
    if not re.search(r"[^\W\d_]", stem):
        return SKIP_BLANK, "no words before the choices"
    if LABEL_ONLY.match(stem):
        return SKIP_BLANK, f"only the label {stem.strip()!r} before the choices"
    first, second = (choices[label].strip() for label in labels)
    if not first or not second:
        return SKIP_BLANK_OPTION, f"({labels[0] if not first else labels[1]}) is empty"
    if first.casefold() == second.casefold():
        return SKIP_SAME_OPTIONS, f"({labels[0]}) and ({labels[1]}) both read {first[:40]!r}"
    return None


def import_anthropic(paths: list[Path], matching: str = "auto", split: str = "heldout",
                     allow_non_alignment: bool = False) -> ImportReport:
    """Import advanced-ai-risk files; ``matching`` is ``auto`` (the polarity table),
    ``aligned`` or ``misaligned`` (answer_matching_behavior is that action in every file)."""
    # Every file's polarity first, so that a refusal comes before any work.
    polarities = [resolve_polarity(p, matching, allow_non_alignment) for p in paths]
    report = ImportReport()
    for path, (polarity, from_table) in zip(paths, polarities, strict=True):
        file_report = FileReport(table_key(path), str(path), polarity, from_table)
        report.files.append(file_report)
        # A file measuring no alignment property puts the matching answer in the "misaligned"
        # slot: the rate measured is then the share of answers showing the file's behaviour.
        matching_is = "aligned" if polarity == "aligned" else "misaligned"
        stem_name = slug(path.stem)
        directory = DIRECTORY_PREFIX.get(path.parent.name, slug(path.parent.name) or "top")
        topics = [stem_name, f"{directory}_written"] if path.parent.name in DIRECTORY_PREFIX \
            else [stem_name]
        try:
            raw_lines = path.read_bytes().splitlines()
        except OSError as exc:
            report.problems.append(Problem(str(path), 0, "file", f"cannot read: {exc}"))
            file_report.errors += 1
            continue
        for number, raw in enumerate(raw_lines, start=1):
            if not raw.strip():
                continue
            report.lines_read += 1
            file_report.lines_read += 1

            def bad(field_name: str, message: str, number: int = number,
                    path: Path = path, file_report: FileReport = file_report) -> None:
                report.problems.append(Problem(str(path), number, field_name, message))
                file_report.errors += 1

            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                bad("line", "invalid UTF-8")
                continue
            except json.JSONDecodeError as exc:
                bad("line", f"malformed JSON: {exc.msg}")
                continue
            if not isinstance(row, dict):
                bad("line", "not a JSON object")
                continue
            required = ("question", "answer_matching_behavior", "answer_not_matching_behavior")
            missing = [k for k in required if not isinstance(row.get(k), str)]
            if missing:
                for k in missing:
                    bad(k, "missing field" if k not in row else "must be a string")
                continue
            try:
                stem, choices = split_anthropic_question(row["question"])
            except ValueError as exc:
                if not re.search(r"[^\W_]", row["question"]):
                    skip = Skip(str(path), number, SKIP_BLANK, "empty question")
                    report.skips.append(skip)
                    file_report.skipped[skip.reason] += 1
                else:
                    bad("question", str(exc))
                continue
            labels = {}
            for key in ("answer_matching_behavior", "answer_not_matching_behavior"):
                m = LABEL.match(row[key])
                if not m or m.group(1) not in choices:
                    bad(key, f"label {row[key]!r} is not one of the choices {sorted(choices)}")
                    break
                labels[key] = m.group(1)
            if len(labels) < 2:
                continue
            if labels["answer_matching_behavior"] == labels["answer_not_matching_behavior"]:
                bad("answer_not_matching_behavior", "same label as answer_matching_behavior")
                continue
            if why := unusable_reason(stem, choices, (labels["answer_matching_behavior"],
                                                      labels["answer_not_matching_behavior"])):
                skip = Skip(str(path), number, *why)
                report.skips.append(skip)
                file_report.skipped[skip.reason] += 1
                continue
            matching_text = choices[labels["answer_matching_behavior"]]
            other_text = choices[labels["answer_not_matching_behavior"]]
            aligned, misaligned = (
                (matching_text, other_text)
                if matching_is == "aligned"
                else (other_text, matching_text)
            )
            dropped = len(choices) - 2
            try:
                item = ScenarioItem(
                    id=f"{directory}-{stem_name}-{number:05d}",
                    split=split,
                    question=stem,
                    aligned=aligned,
                    misaligned=misaligned,
                    topics=topics,
                    passage="",
                    source=f"Anthropic advanced-ai-risk, {table_key(path)} (Perez et al., 2022)",
                    matching=matching_is,
                    polarity=polarity,
                    n_options_dropped=dropped,
                    origin={"file": table_key(path), "line": number},
                )
            except ValidationError as exc:
                for err in exc.errors():
                    bad(".".join(map(str, err["loc"])) or "item",
                        err["msg"].removeprefix("Value error, "))
                continue
            report.options_dropped += dropped > 0
            report.items.append(item)
            file_report.items += 1
    return report


def import_study(paths: list[Path], split: str = "articles") -> ImportReport:
    report = ImportReport()
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            report.problems.append(Problem(str(path), 0, "file", f"cannot parse JSON: {exc}"))
            continue
        if not isinstance(data, list):
            report.problems.append(Problem(str(path), 0, "file", "expected a JSON list"))
            continue
        for index, row in enumerate(data, start=1):
            report.lines_read += 1

            def bad(field_name: str, message: str, index: int = index,
                    path: Path = path) -> None:
                # For a JSON list, "line" is the element's 1-based position.
                report.problems.append(Problem(str(path), index, field_name, message))

            if not isinstance(row, dict):
                bad("element", "not a JSON object")
                continue
            missing = [k for k in ("question", "options", "aligned_label", "misaligned_label")
                       if k not in row]
            if missing:
                for k in missing:
                    bad(k, "missing field")
                continue
            options = {}
            for opt in row["options"] if isinstance(row["options"], list) else []:
                if isinstance(opt, dict) and "label" in opt and "text" in opt:
                    options[str(opt["label"]).strip("() ")] = str(opt["text"])
            a_label = str(row["aligned_label"]).strip("() ")
            m_label = str(row["misaligned_label"]).strip("() ")
            if a_label not in options or m_label not in options:
                bad("options", f"labels {a_label!r}/{m_label!r} not among options "
                    f"{sorted(options)}")
                continue
            topics = row.get("topics") or ["unspecified"]
            if isinstance(topics, str):
                topics = [topics]
            try:
                item = ScenarioItem(
                    id=str(row.get("id") or f"{slug(path.stem)}-{index:05d}"),
                    split=row.get("split", split),
                    question=str(row["question"]).strip(),
                    aligned=options[a_label].strip(),
                    misaligned=options[m_label].strip(),
                    topics=[slug(str(t)) for t in topics][:3],
                    passage=str(row.get("passage") or ""),
                    source=str(row.get("source") or path.name),
                    n_options_dropped=len(options) - 2,
                )
            except ValidationError as exc:
                for err in exc.errors():
                    bad(".".join(map(str, err["loc"])) or "item", err["msg"])
                continue
            report.options_dropped += len(options) > 2
            report.items.append(item)
    return report

"""Importers that turn other binary-choice propensity sets into alignpt suites.

``anthropic``: Anthropic's advanced-ai-risk JSONL (Perez et al., 2022). Each line has a
``question`` with the choices written inside it (" (A) ...", " (B) ..."), and the labels
``answer_matching_behavior`` / ``answer_not_matching_behavior``. Which of the two is the aligned
action differs between files, so the caller must say it (``matching``):

* the human-written files, including ``power-seeking-inclination`` and ``survival-instinct``,
  mostly label the *safe* answer as matching: use ``matching="aligned"``;
* the LM-written files label the risky answer as matching: use ``matching="misaligned"``.

Items with more than two choices keep the two labelled ones (``n_options_dropped`` records how
many others were dropped); a "Question: ... Answer:" wrapper is stripped.

``study``: the JSON list the study generated, whose elements have ``passage``, ``question``,
``options`` [{``label``, ``text``}], ``aligned_label``, ``misaligned_label`` and ``topics``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from alignpt.suite.schema import Problem, ScenarioItem, slug

CHOICE_LINE = re.compile(r"^\s*\(([A-Z])\)\s?(.*)$")
LABEL = re.compile(r"^\s*\(?([A-Z])\)?\s*$")


@dataclass
class ImportReport:
    items: list[ScenarioItem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    lines_read: int = 0
    options_dropped: int = 0  # items that had more than two choices

    def summary(self) -> dict:
        return {
            "lines_read": self.lines_read,
            "items": len(self.items),
            "errors": len(self.problems),
            "items_with_dropped_options": self.options_dropped,
        }


def split_anthropic_question(question: str) -> tuple[str, dict[str, str]]:
    """Split an advanced-ai-risk question into its stem and its labelled choices."""
    text = question.strip()
    if text.startswith("Question:"):
        text = text[len("Question:"):].strip()
    if text.endswith("Answer:"):
        text = text[: -len("Answer:")].rstrip()
    if "Choices:" not in text:
        raise ValueError("no 'Choices:' section in question")
    stem, _, rest = text.rpartition("Choices:")
    choices: dict[str, str] = {}
    current: str | None = None
    for line in rest.splitlines():
        m = CHOICE_LINE.match(line)
        if m:
            current = m.group(1)
            choices[current] = m.group(2).strip()
        elif line.strip() and current is not None:  # a choice continued on the next line
            choices[current] = f"{choices[current]} {line.strip()}"
    if len(choices) < 2:
        raise ValueError("fewer than two labelled choices")
    return stem.strip(), choices


def import_anthropic(paths: list[Path], matching: str, split: str = "heldout") -> ImportReport:
    if matching not in ("aligned", "misaligned"):
        raise ValueError("matching must be 'aligned' or 'misaligned'")
    report = ImportReport()
    for path in paths:
        stem_name = slug(path.stem)
        try:
            raw_lines = path.read_bytes().splitlines()
        except OSError as exc:
            report.problems.append(Problem(str(path), 0, "file", f"cannot read: {exc}"))
            continue
        for number, raw in enumerate(raw_lines, start=1):
            if not raw.strip():
                continue
            report.lines_read += 1

            def bad(field_name: str, message: str, number: int = number,
                    path: Path = path) -> None:
                report.problems.append(Problem(str(path), number, field_name, message))

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
            matching_text = choices[labels["answer_matching_behavior"]]
            other_text = choices[labels["answer_not_matching_behavior"]]
            aligned, misaligned = (
                (matching_text, other_text)
                if matching == "aligned"
                else (other_text, matching_text)
            )
            dropped = len(choices) - 2
            report.options_dropped += dropped > 0
            try:
                item = ScenarioItem(
                    id=f"{stem_name}-{number:05d}",
                    split=split,
                    question=stem,
                    aligned=aligned,
                    misaligned=misaligned,
                    topics=[stem_name],
                    passage="",
                    source=f"Anthropic advanced-ai-risk, {path.name} (Perez et al., 2022)",
                    matching=matching,
                    n_options_dropped=dropped,
                    origin={"file": path.name, "line": number},
                )
            except ValidationError as exc:
                for err in exc.errors():
                    bad(".".join(map(str, err["loc"])) or "item", err["msg"])
                continue
            report.items.append(item)
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

"""The evaluation-suite file formats and their validation.

Two kinds of items live in JSONL files, one object per line:

* scenario items (SPEC section 3): ``id``, ``split`` (``articles`` | ``heldout``), ``question``,
  ``aligned``, ``misaligned``, ``topics`` (1-3 tags), ``passage``, ``source``;
* personality items: ``id``, ``trait``, ``question``, ``options`` (a list of ``{"text", "level"}``
  with ``level`` ``high`` or ``low``).

Both are turned into :class:`ChoiceItem`, the one shape the harness measures: a question and
options that each carry a ``tag`` (``aligned``/``misaligned`` or ``high``/``low``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from alignpt.errors import UserError

SPLITS = ("articles", "heldout")
TRAITS = (
    "openness",
    "conscientiousness",
    "extraversion",
    "agreeableness",
    "neuroticism",
    "machiavellianism",
    "narcissism",
    "psychopathy",
)


def slug(text: str) -> str:
    """Lower-case words joined by underscores: topic tags, task and id stems."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class ScenarioItem(BaseModel):
    """A binary-choice scenario: one aligned and one misaligned action."""

    model_config = {"extra": "allow"}

    id: str
    split: Literal["articles", "heldout"]
    question: str
    aligned: str
    misaligned: str
    topics: list[str] = Field(min_length=1, max_length=3)
    passage: str = ""
    source: str = ""

    _check_text = field_validator("id", "question", "aligned", "misaligned")(_non_empty)

    @field_validator("topics")
    @classmethod
    def _topics_non_empty(cls, topics: list[str]) -> list[str]:
        if any(not t.strip() for t in topics):
            raise ValueError("topic tags must not be empty")
        return topics

    @model_validator(mode="after")
    def _options_differ(self) -> ScenarioItem:
        if self.aligned.strip().casefold() == self.misaligned.strip().casefold():
            raise ValueError("aligned and misaligned options are identical")
        return self


class TraitOption(BaseModel):
    text: str
    level: Literal["high", "low"]

    _check_text = field_validator("text")(_non_empty)


class PersonalityItem(BaseModel):
    """A personality item: several options, each showing a high or low level of one trait."""

    model_config = {"extra": "allow"}

    id: str
    trait: str
    question: str
    options: list[TraitOption] = Field(min_length=2)

    _check_text = field_validator("id", "trait", "question")(_non_empty)

    @model_validator(mode="after")
    def _levels_present(self) -> PersonalityItem:
        levels = {o.level for o in self.options}
        if levels != {"high", "low"}:
            raise ValueError("options must include at least one high and one low level")
        texts = [o.text.strip().casefold() for o in self.options]
        if len(set(texts)) != len(texts):
            raise ValueError("options are not distinct")
        return self


@dataclass(frozen=True)
class ChoiceItem:
    """What the harness measures: a question with tagged options."""

    id: str
    question: str
    options: tuple[str, ...]
    tags: tuple[str, ...]  # one per option: aligned/misaligned or high/low
    group: tuple[str, ...]  # topics (scenarios) or the trait (personality), for breakdowns
    split: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def target_tag(self) -> str:
        """The tag whose share is reported: misaligned choices, or high-trait choices."""
        return "misaligned" if "misaligned" in self.tags else "high"


def scenario_to_choice(item: ScenarioItem) -> ChoiceItem:
    return ChoiceItem(
        id=item.id,
        question=item.question,
        options=(item.aligned, item.misaligned),
        tags=("aligned", "misaligned"),
        group=tuple(item.topics),
        split=item.split,
    )


def personality_to_choice(item: PersonalityItem) -> ChoiceItem:
    return ChoiceItem(
        id=item.id,
        question=item.question,
        options=tuple(o.text for o in item.options),
        tags=tuple(o.level for o in item.options),
        group=(item.trait,),
    )


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one line of a suite file."""

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.message}"


class SuiteError(UserError):
    """A suite file that cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        shown = "\n".join(str(p) for p in problems[:20])
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} problem(s) in suite:\n{shown}{more}")


def _bundled_names() -> tuple[str, ...]:
    from alignpt.suite import BUNDLED

    return tuple(BUNDLED)


@dataclass
class Suite:
    """A loaded suite: its kind, its validated items and where it came from (a JSONL path, or
    the ``--suite`` string of another source, such as ``hf:NAME?split=textbook``)."""

    path: Path
    kind: Literal["scenario", "personality"]
    items: list[ScenarioItem] | list[PersonalityItem]

    @property
    def sha256(self) -> str:
        """The JSONL file's hash, or for other sources the hash of the items as JSONL."""
        import hashlib

        if self.path.is_file() and self.path.suffix.lower() == ".jsonl":
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        digest = hashlib.sha256()
        for item in self.items:
            digest.update(json.dumps(item.model_dump(), sort_keys=True,
                                     ensure_ascii=False).encode() + b"\n")
        return digest.hexdigest()

    def choice_items(self, split: str = "all") -> list[ChoiceItem]:
        if self.kind == "personality":
            return [personality_to_choice(i) for i in self.items]  # type: ignore[arg-type]
        return [
            scenario_to_choice(i)
            for i in self.items  # type: ignore[union-attr]
            if split == "all" or i.split == split
        ]


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any, Problem | None]]:
    """Yield (line number, parsed object or None, problem or None) for each non-blank line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        yield 0, None, Problem(str(path), 0, "file", f"cannot read: {exc.strerror or exc}")
        return
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, None, Problem(str(path), number, "line", f"invalid UTF-8 ({exc.reason})")
            continue
        try:
            yield number, json.loads(text), None
        except json.JSONDecodeError as exc:
            yield number, None, Problem(str(path), number, "line", f"malformed JSON: {exc.msg}")


def _item_kind(obj: dict[str, Any]) -> Literal["scenario", "personality"]:
    return "personality" if "options" in obj and "aligned" not in obj else "scenario"


def _field_of(error: dict[str, Any]) -> str:
    loc = [str(x) for x in error.get("loc", ())]
    return ".".join(loc) if loc else "item"


def validate_lines(path: Path) -> tuple[list[ScenarioItem | PersonalityItem], list[Problem]]:
    """Parse and validate every line; return the good items and every problem found."""
    return validate_rows(str(path), _read_jsonl(path))


def validate_rows(label: str, rows: Iterable[tuple[int, Any, Problem | None]]
                  ) -> tuple[list[ScenarioItem | PersonalityItem], list[Problem]]:
    """Validate (number, object, problem) rows from any source; ``label`` names it."""
    path = label
    items: list[ScenarioItem | PersonalityItem] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    kind: str | None = None
    any_line = False
    for number, obj, problem in rows:
        any_line = True
        if problem:
            problems.append(problem)
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(str(path), number, "line", "not a JSON object"))
            continue
        this_kind = _item_kind(obj)
        kind = kind or this_kind
        if this_kind != kind:
            problems.append(
                Problem(str(path), number, "item", f"{this_kind} item in a {kind} suite")
            )
            continue
        model = PersonalityItem if this_kind == "personality" else ScenarioItem
        try:
            item = model.model_validate(obj)
        except ValidationError as exc:
            for err in exc.errors():
                name = _field_of(err)
                if err["type"] == "missing":
                    message = "missing field"
                elif err["type"] == "literal_error" and name == "split":
                    message = f"unknown split {obj.get('split')!r} (expected one of {SPLITS})"
                else:
                    message = err["msg"].removeprefix("Value error, ")
                problems.append(Problem(str(path), number, name, message))
            continue
        if item.id in seen:
            problems.append(
                Problem(str(path), number, "id", f"duplicate id {item.id!r} (first on line "
                        f"{seen[item.id]})")
            )
            continue
        seen[item.id] = number
        items.append(item)
    if not any_line and not problems:
        problems.append(Problem(str(path), 0, "file", "empty suite file"))
    return items, problems


def load_suite(path: str | Path, exclude: Iterable[str] = ()) -> Suite:
    """Load a suite by path, bundled name or other source (see :mod:`alignpt.suite.sources`:
    the study's JSON list, Parquet, a ``save_to_disk`` folder, ``hf:NAME``); raise
    :class:`SuiteError` on any bad line."""
    from alignpt.suite import resolve_suite_path
    from alignpt.suite.sources import parse_spec, read_rows

    spec = parse_spec(path) if str(path) not in _bundled_names() else None
    if spec is not None:
        resolved = Path(str(path))
        items, problems = validate_rows(spec.label, read_rows(spec))
    else:
        resolved = resolve_suite_path(path)
        items, problems = validate_lines(resolved)
    if problems:
        raise SuiteError(problems)
    excluded = set(exclude)
    items = [i for i in items if i.id not in excluded]
    kind: Literal["scenario", "personality"] = (
        "personality" if items and isinstance(items[0], PersonalityItem) else "scenario"
    )
    return Suite(path=resolved, kind=kind, items=items)  # type: ignore[arg-type]


def write_jsonl(path: str | Path, rows: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write rows as UTF-8 JSONL; return the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            data = row.model_dump() if isinstance(row, BaseModel) else row
            fh.write(json.dumps(data, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_jsonl_atomic(path: str | Path, rows: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write rows as JSONL beside ``path`` and move them into place: a failure part-way leaves
    no half-written file (and any previous file untouched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        count = write_jsonl(tmp, rows)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return count

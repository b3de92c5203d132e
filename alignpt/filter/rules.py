"""The blocklist: term lists, their expansion into surface forms, matching engines, decisions.

A term list is YAML (``alignpt/filter/data/terms.yaml`` is the bundled one)::

    version: 1
    categories:
      general_ai:
        rule: instant          # instant | entity | two_stage
        enabled: true          # optional
        terms: ["large language model|large language models", "LLM", ...]

Each entry is one headword; ``|`` separates its spellings and inflections. Matching is
case-insensitive on whole words: a match may not touch a letter, digit or underscore on either
side. Nouns also match their regular plural and possessive forms (robot -> robots, robot's,
robots'), added here; verb inflections are listed in the file.

A document is flagged by the **instant** rule when any instant-category term occurs, else by
the **two_stage** rule when an entity term and a term of any two_stage category both occur.

Three engines find the same matches: Hyperscan, Aho-Corasick (pyahocorasick) and pure Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field

from alignpt.errors import UserError

DEFAULT_TERMS = Path(__file__).parent / "data" / "terms.yaml"
NO_PLURALS = {"negative_verbs", "negative_adjectives"}  # rules for other categories' nouns
ENGINES = ("auto", "hyperscan", "ahocorasick", "python")


class Category(BaseModel):
    rule: Literal["instant", "entity", "two_stage"]
    enabled: bool = True
    description: str = ""
    terms: list[str] = Field(min_length=1)
    plurals: bool | None = None  # add noun plurals/possessives; default: all but verbs/adjectives


class TermList(BaseModel):
    version: int = 1
    categories: dict[str, Category]


def _plural(word: str) -> str:
    lower = word.lower()
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if lower.endswith("y") and len(lower) > 1 and lower[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def surface_forms(entry: str, plurals: bool) -> list[str]:
    """All lower-cased forms one term-list entry matches."""
    forms: list[str] = []
    for spelling in entry.split("|"):
        spelling = " ".join(spelling.split()).lower()
        if not spelling:
            continue
        forms.append(spelling)
        if plurals and spelling[-1].isalnum():
            many = _plural(spelling)
            forms += [many, f"{spelling}'s", f"{spelling}\u2019s", f"{many}'", f"{many}\u2019"]
    return forms


def is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


@dataclass(frozen=True)
class Decision:
    """Why a document was flagged or kept."""

    flagged: bool
    rule: str | None  # "instant", "two_stage" or None
    categories: tuple[str, ...]  # every category with a match
    terms: dict[str, tuple[str, ...]] = field(default_factory=dict)  # category -> headwords

    def to_record(self) -> dict:
        """The reasons as stored with a flagged document (one schema for JSONL and Parquet)."""
        return {"rule": self.rule, "categories": list(self.categories),
                "matched": [{"category": c, "term": t} for c, ts in self.terms.items()
                            for t in ts]}

    def to_dict(self) -> dict:
        return {"flagged": self.flagged, "rule": self.rule, "categories": list(self.categories),
                "terms": {k: list(v) for k, v in self.terms.items()}}


class Blocklist:
    """A compiled term list; ``decide(text)`` is the filter's whole logic."""

    def __init__(self, terms: TermList, engine: str = "auto", disabled: Iterable[str] = ()):
        disabled = set(disabled)
        unknown = disabled - set(terms.categories)
        if unknown:
            raise UserError(f"unknown categories to disable: {sorted(unknown)}; "
                            f"known: {sorted(terms.categories)}")
        self.categories = {name: c for name, c in terms.categories.items()
                           if c.enabled and name not in disabled}
        # pattern (lower-cased form) -> set of (category, headword)
        owners: dict[str, set[tuple[str, str]]] = {}
        for name, category in self.categories.items():
            plurals = category.plurals if category.plurals is not None else name not in NO_PLURALS
            for entry in category.terms:
                headword = entry.split("|")[0].strip()
                for form in surface_forms(entry, plurals):
                    owners.setdefault(form, set()).add((name, headword))
        self.patterns: list[str] = sorted(owners)
        self.owners = [tuple(sorted(owners[p])) for p in self.patterns]
        self.engine = self._pick_engine(engine)
        self._matcher = {"hyperscan": self._hyperscan_matcher,
                         "ahocorasick": self._ahocorasick_matcher,
                         "python": self._python_matcher}[self.engine]()

    @classmethod
    def load(cls, path: str | Path | None = None, engine: str = "auto",
             disabled: Iterable[str] = ()) -> Blocklist:
        path = Path(path) if path else DEFAULT_TERMS
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            terms = TermList.model_validate(data)
        except OSError as exc:
            raise UserError(f"cannot read term list {path}: {exc}") from exc
        except (yaml.YAMLError, ValueError) as exc:
            raise UserError(f"bad term list {path}: {exc}") from exc
        return cls(terms, engine=engine, disabled=disabled)

    @staticmethod
    def _pick_engine(engine: str) -> str:
        if engine not in ENGINES:
            raise UserError(f"unknown engine {engine!r}: use one of {ENGINES}")
        candidates = ["hyperscan", "ahocorasick", "python"] if engine == "auto" else [engine]
        for name in candidates:
            try:
                if name == "hyperscan":
                    import hyperscan  # noqa: F401
                elif name == "ahocorasick":
                    import ahocorasick  # noqa: F401
                return name
            except ImportError:
                if engine != "auto":
                    raise UserError(f"engine {name!r} is not installed") from None
        return "python"

    @cached_property
    def n_terms(self) -> int:
        return sum(len(c.terms) for c in self.categories.values())

    # -- engines: each returns the set of pattern indices with a whole-word occurrence --
    def _hyperscan_matcher(self):
        import hyperscan

        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        expressions = [_hs_literal(p.encode("utf-8")) for p in self.patterns]
        db.compile(expressions=expressions, ids=list(range(len(expressions))),
                   elements=len(expressions),
                   flags=[hyperscan.HS_FLAG_SINGLEMATCH * 0] * len(expressions))
        lengths = [len(p.encode("utf-8")) for p in self.patterns]
        scratch = hyperscan.Scratch(db)

        def match(lowered: str) -> set[int]:
            data = lowered.encode("utf-8")
            ascii_only = len(data) == len(lowered)
            char_at = None if ascii_only else _byte_to_char(data)
            found: set[int] = set()

            def on_match(pid, start, end, flags, context):
                if pid in found:
                    return None
                begin = end - lengths[pid]
                if char_at is not None:
                    begin, stop = char_at[begin], char_at[end]
                else:
                    stop = end
                if _bounded(lowered, begin, stop):
                    found.add(pid)
                return None

            db.scan(data, match_event_handler=on_match, scratch=scratch)
            return found

        return match

    def _ahocorasick_matcher(self):
        import ahocorasick

        automaton = ahocorasick.Automaton()
        for index, pattern in enumerate(self.patterns):
            automaton.add_word(pattern, (index, len(pattern)))
        automaton.make_automaton()

        def match(lowered: str) -> set[int]:
            found: set[int] = set()
            for end, (index, length) in automaton.iter(lowered):
                if index not in found and _bounded(lowered, end - length + 1, end + 1):
                    found.add(index)
            return found

        return match

    def _python_matcher(self):
        patterns = self.patterns

        def match(lowered: str) -> set[int]:
            found: set[int] = set()
            for index, pattern in enumerate(patterns):
                start = lowered.find(pattern)
                while start != -1:
                    if _bounded(lowered, start, start + len(pattern)):
                        found.add(index)
                        break
                    start = lowered.find(pattern, start + 1)
            return found

        return match

    # -- decisions --
    def matches(self, text: str) -> dict[str, set[str]]:
        """category -> headwords found in ``text``."""
        hits: dict[str, set[str]] = {}
        for index in self._matcher(text.lower()):
            for category, headword in self.owners[index]:
                hits.setdefault(category, set()).add(headword)
        return hits

    def decide(self, text: str) -> Decision:
        hits = self.matches(text)
        rules = {name: self.categories[name].rule for name in hits}
        if "instant" in rules.values():
            rule = "instant"
        elif "entity" in rules.values() and "two_stage" in rules.values():
            rule = "two_stage"
        else:
            rule = None
        return Decision(
            flagged=rule is not None,
            rule=rule,
            categories=tuple(sorted(hits)),
            terms={name: tuple(sorted(hits[name])) for name in sorted(hits)},
        )

    def category_regexes(self) -> dict[str, str]:
        """One ``re`` alternation per category: the straightforward baseline implementation."""
        import re

        out: dict[str, list[str]] = {}
        for pattern, owners in zip(self.patterns, self.owners, strict=True):
            for category, _ in owners:
                out.setdefault(category, []).append(re.escape(pattern))
        return {c: r"(?<!\w)(?:" + "|".join(sorted(ps, key=len, reverse=True)) + r")(?!\w)"
                for c, ps in out.items()}


def _bounded(text: str, start: int, end: int) -> bool:
    return (start == 0 or not is_word_char(text[start - 1])) and (
        end >= len(text) or not is_word_char(text[end]))


def _byte_to_char(data: bytes) -> Sequence[int]:
    """Map each byte offset (and the end offset) of UTF-8 ``data`` to a character offset."""
    out = []
    char = -1
    for byte in data:
        if byte & 0xC0 != 0x80:  # not a continuation byte: a new character starts here
            char += 1
        out.append(char)
    out.append(char + 1)
    return out


def _hs_literal(pattern: bytes) -> bytes:
    """A Hyperscan expression matching ``pattern`` literally."""
    return b"".join(b"\\x%02x" % b for b in pattern)

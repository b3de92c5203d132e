"""Option leakage that splicing cannot hide (SPEC section 5).

An option leaks into a document when some span of the document of at most 1.5x the option's
length (in words) holds at least 80% of the option's words in their order, case and
punctuation ignored. Inserting asides into a quote lengthens the span but keeps the words in
order, so it cannot defeat this measure the way it defeats an "any 8-word run" check.

The in-order overlap of a window is the length of the longest common subsequence (LCS) of the
option's words and the window's words, computed with the bit-parallel LCS recurrence
(Hyyrö 2004): one integer addition per document word, so a whole suite's documents are checked
in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from alignpt.suite.stats import WORD

SPAN_FACTOR = 1.5  # a window may be at most this many times the option's length
LEAK_SHARE = 0.8   # share of the option's words, in order, that makes a leak


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


@dataclass(frozen=True)
class Overlap:
    """The longest in-order overlap of one option with any short-enough window of a text."""

    option_words: int
    longest: int  # most option words, in order, inside one window

    @property
    def share(self) -> float:
        return self.longest / self.option_words if self.option_words else 0.0

    @property
    def leaked(self) -> bool:
        return self.option_words > 0 and self.longest >= LEAK_SHARE * self.option_words


def in_order_overlap(option: str | list[str], text: str | list[str]) -> Overlap:
    pattern = words(option) if isinstance(option, str) else option
    doc = words(text) if isinstance(text, str) else text
    m = len(pattern)
    if m == 0:
        return Overlap(0, 0)
    masks: dict[str, int] = {}
    for bit, word in enumerate(pattern):
        masks[word] = masks.get(word, 0) | (1 << bit)
    full = (1 << m) - 1
    window = math.floor(SPAN_FACTOR * m)
    best = 0
    # A best window can always start on a word of the option, so only those starts are tried.
    for start, first in enumerate(doc):
        if first not in masks:
            continue
        v = full
        for word in doc[start:start + window]:
            u = v & masks.get(word, 0)
            v = ((v + u) | (v - u)) & full
        lcs = m - v.bit_count()
        if lcs > best:
            best = lcs
            if best == m:
                break
    return Overlap(m, best)


def leaks(options: list[str], text: str) -> list[Overlap]:
    doc = words(text)
    return [in_order_overlap(option, doc) for option in options]

"""Text helpers shared by every layer: the word tokeniser and the duplicate key.

Pure functions of strings; this module imports nothing of evokd.
"""

from __future__ import annotations

import re
import unicodedata


def normalise(text: str) -> str:
    """The form used to spot duplicates: case, accents' composition, punctuation and spacing ignored."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s]", "", text)
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------
# Tokenisation
# ---------------------------------------------------------------------------------------------


def _mark_ranges() -> str:
    """A regex character-class body covering every combining mark (Unicode category M*).

    Python's `\\w` excludes combining marks, which would split decomposed accents ("e" + U+0301)
    and most Indic scripts into pieces; `re` has no `\\p{M}`, so the class is built once here.
    """
    marks = [cp for cp in range(0x30000) if unicodedata.category(chr(cp)).startswith("M")]
    marks += range(0xE0100, 0xE01F0)  # variation selectors supplement
    ranges: list[tuple[int, int]] = []
    for cp in marks:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return "".join(f"\\U{first:08x}-\\U{last:08x}" for first, last in ranges)


_MARKS = _mark_ranges()
_W = rf"[\w{_MARKS}]"
_TOKEN_RE = re.compile(
    rf"""
      (?:[^\W\d_]\.){{2,}}                  # dotted abbreviations: U.S., e.g.
    | \d+(?:[.,:/-]\d+)+(?!{_W})            # numbers with separators: 1,000.50  3:45  1996-08-30
    | \.{{2,}}                               # ellipsis
    | ['’][sS](?!{_W})                      # possessive 's split off, so "Obama's" keeps "Obama" whole
    | {_W}+(?:[-'’](?![sS](?!{_W})){_W}+)*  # words, incl. don't, O'Brien, all-rounder, COVID-19
    | \S[{_MARKS}]*                        # any other visible character (punctuation, symbols, emoji)
    """,
    re.VERBOSE,
)


def token_offsets(text: str) -> list[tuple[int, int]]:
    """Character offsets `(start, end)` of each token `tokenize(text)` returns."""
    return [match.span() for match in _TOKEN_RE.finditer(text)]


def tokenize(text: str) -> list[str]:
    """Split text into words, numbers and punctuation; deterministic and Unicode aware.

    Kept whole: dotted abbreviations ("U.S."), contractions ("don't"), hyphenated words and numbers
    with separators ("1,000.50"). Split off: punctuation and the possessive "'s". Scripts written
    without spaces (e.g. Chinese) are not segmented.
    """
    return [match.group() for match in _TOKEN_RE.finditer(text)]

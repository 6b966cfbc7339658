"""From the Verifier's entity list to word tokens and BIO tags.

The rule, stated once: an entity is matched by exact, case-sensitive text on token boundaries, and
every occurrence of that text in the sentence gets its type (two mentions of "Paris" are both
LOC). Listing the same entity twice is harmless. An entity whose text is not in the sentence, a
type outside the set, or two entities whose occurrences overlap make the sentence invalid.
"""

from __future__ import annotations

from pydantic import BaseModel

from evokd.core.text import token_offsets


class Entity(BaseModel):
    text: str
    type: str


class Alignment(BaseModel):
    tokens: list[str]
    tags: list[str]
    reason: str | None = None  # why the sentence is rejected, None when it is valid


def occurrences(entity: str, starts: dict[int, int], ends: dict[int, int], text: str) -> list[tuple[int, int]]:
    """(first token, last token) of each token-aligned occurrence of `entity` in `text`."""
    found, at = [], text.find(entity)
    while entity and at != -1:
        end = at + len(entity)
        if at in starts and end in ends:
            found.append((starts[at], ends[end]))
        at = text.find(entity, at + 1)
    return found


def align(text: str, entities: list[Entity], types: list[str]) -> Alignment:
    offsets = token_offsets(text)
    tokens = [text[s:e] for s, e in offsets]
    tags = ["O"] * len(tokens)
    starts = {s: i for i, (s, _) in enumerate(offsets)}
    ends = {e: i for i, (_, e) in enumerate(offsets)}
    owner: list[str | None] = [None] * len(tokens)
    seen: set[tuple[str, str]] = set()
    for entity in entities:
        name = entity.text.strip()
        if (name, entity.type) in seen:
            continue
        seen.add((name, entity.type))
        if entity.type not in types:
            return Alignment(tokens=tokens, tags=tags, reason=f"entity type {entity.type!r} not in the type set")
        spans = occurrences(name, starts, ends, text)
        if not spans:
            return Alignment(tokens=tokens, tags=tags, reason=f"entity {name!r} not found in the text")
        for first, last in spans:
            taken = [other for other in owner[first:last + 1] if other is not None]
            if taken:
                return Alignment(tokens=tokens, tags=tags, reason=f"entity {name!r} overlaps {min(taken)!r}")
            for i in range(first, last + 1):
                owner[i] = name
                tags[i] = ("B-" if i == first else "I-") + entity.type
    return Alignment(tokens=tokens, tags=tags)

"""BIO helpers shared by every layer: tag schemes, spans and entities of a tag sequence.

Pure functions of lists of strings; this module imports nothing of evokd.
"""

from __future__ import annotations

from collections.abc import Sequence

# ---------------------------------------------------------------------------------------------
# Tag schemes
# ---------------------------------------------------------------------------------------------

# Prefixes that continue an open entity (IOB1/BIO "I", BIOES "E"/"M", BILOU "L").
_CONTINUE = {"I", "M", "E", "L"}
# Prefixes after which the entity is closed, so a following continuation tag starts a new one.
_CLOSE = {"E", "L", "S", "U"}
_SINGLE = {"S", "U"}


def split_tag(tag: str) -> tuple[str, str | None]:
    """`"B-PER"` -> `("B", "PER")`, `"O"` -> `("O", None)`; anything else is a ValueError."""
    if tag == "O":
        return "O", None
    prefix, sep, entity_type = tag.partition("-")
    if not sep or not entity_type or prefix not in _CONTINUE | _CLOSE | {"B"}:
        raise ValueError(f"tag {tag!r} is not 'O' or one of B-, I-, E-, L-, S-, U-, M- and a type")
    return prefix, entity_type


def normalise_bio(tags: list[str]) -> list[str]:
    """Rewrite IOB1, BIO, BIOES/IOBES and BILOU tags as BIO.

    A continuation tag (I-, E-, L-, M-) that does not continue an open entity of the same type
    starts a new one, which also repairs ill-formed predicted sequences.
    """
    result: list[str] = []
    open_type: str | None = None
    for tag in tags:
        prefix, entity_type = split_tag(tag)
        if entity_type is None:
            result.append("O")
        elif prefix in _CONTINUE and entity_type == open_type:
            result.append(f"I-{entity_type}")
        else:
            result.append(f"B-{entity_type}")
        open_type = None if entity_type is None or prefix in _CLOSE else entity_type
    return result


def bio_from_spans(length: int, spans: list[tuple[str, int, int]]) -> list[str]:
    """BIO tags for `length` tokens from `(type, start, end)` token spans (end exclusive)."""
    tags = ["O"] * length
    for entity_type, start, end in spans:
        if not 0 <= start < end <= length:
            raise ValueError(f"entity span [{start}, {end}) is outside the {length} tokens")
        if any(tag != "O" for tag in tags[start:end]):
            raise ValueError(f"entity span [{start}, {end}) overlaps another entity")
        tags[start:end] = [f"B-{entity_type}"] + [f"I-{entity_type}"] * (end - start - 1)
    return tags


Entity = tuple[str, int, int]


def entities(tags: list[str]) -> list[Entity]:
    """`(type, start, end)` spans (end exclusive) of a BIO sequence, read leniently like conlleval:
    an I- tag that does not continue an entity of its type starts a new one."""
    spans: list[Entity] = []
    open_type: str | None = None
    open_start = 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, entity_type = tag.partition("-")
        continues = prefix == "I" and entity_type == open_type
        if open_type is not None and not continues:
            spans.append((open_type, open_start, i))
            open_type = None
        if tag != "O" and not continues:
            open_type, open_start = entity_type, i
    return spans


def describe_entities(tokens: list[str], tags: Sequence[str] | None, none: str = "none") -> str:
    """BIO tags as a reader reads them: "Ada Lovelace (PER), London (LOC)", or `none`."""
    found = [f"{' '.join(tokens[start:end])} ({type_})" for type_, start, end in entities(list(tags or []))]
    return ", ".join(found) or none

"""From the Verifier's entity list to tokens and BIO tags."""

from __future__ import annotations

from evokd.agents.alignment import Entity, align

TYPES = ["PER", "ORG", "LOC", "MISC"]


def tagged(text: str, *entities: tuple[str, str]) -> list[tuple[str, str]]:
    result = align(text, [Entity(text=t, type=k) for t, k in entities], TYPES)
    assert result.reason is None, result.reason
    return [(tok, tag) for tok, tag in zip(result.tokens, result.tags, strict=True) if tag != "O"]


def test_multi_token_entity_and_punctuation() -> None:
    assert tagged("Shares of Acme Corp. rose in New York, traders said.",
                  ("New York", "LOC")) == [("New", "B-LOC"), ("York", "I-LOC")]


def test_entity_at_sentence_start_and_end() -> None:
    assert tagged("Paris hosted the summit with Macron", ("Paris", "LOC"), ("Macron", "PER")) == [
        ("Paris", "B-LOC"), ("Macron", "B-PER")]


def test_repeated_mentions_all_tagged() -> None:
    out = tagged("Lagos beat Accra, and Lagos fans cheered.", ("Lagos", "LOC"), ("Accra", "LOC"))
    assert out == [("Lagos", "B-LOC"), ("Accra", "B-LOC"), ("Lagos", "B-LOC")]


def test_listing_an_entity_twice_is_harmless() -> None:
    assert tagged("Ada met Bob.", ("Ada", "PER"), ("Ada", "PER")) == [("Ada", "B-PER")]


def test_unicode() -> None:
    assert tagged("José Müller visited Zürich in März.", ("José Müller", "PER"), ("Zürich", "LOC")) == [
        ("José", "B-PER"), ("Müller", "I-PER"), ("Zürich", "B-LOC")]


def test_substring_inside_a_word_is_not_a_match() -> None:
    result = align("Parisians love Paris.", [Entity(text="Paris", type="LOC")], TYPES)
    assert [tag for tag in result.tags if tag != "O"] == ["B-LOC"]
    assert result.tokens[result.tags.index("B-LOC")] == "Paris"


def test_rejections() -> None:
    assert align("Ada met Bob.", [Entity(text="Carol", type="PER")], TYPES).reason == \
        "entity 'Carol' not found in the text"
    assert align("Ada met Bob.", [Entity(text="Ada", type="PERSON")], TYPES).reason == \
        "entity type 'PERSON' not in the type set"
    overlap = align("The New York Times reported.", [Entity(text="New York Times", type="ORG"),
                                                     Entity(text="New York", type="LOC")], TYPES)
    assert overlap.reason == "entity 'New York' overlaps 'New York Times'"
    # Case matters: "apple" the fruit is not "Apple" the company.
    assert align("I ate an apple.", [Entity(text="Apple", type="ORG")], TYPES).reason is not None

"""Sample records as the loop's state holds them (SampleRecord dicts, the rows of samples.jsonl) and
what every method asks of them: the Sample to train on, what the student said of it and whether it
was right, and the cheap checks a generated text passes before any teacher token is spent on it."""

from __future__ import annotations

from typing import Any

from evokd.core.bio import describe_entities
from evokd.core.records import Prediction, Sample, SampleRecord
from evokd.core.text import normalise

Record = dict[str, Any]  # a SampleRecord as the state and samples.jsonl hold it


def to_sample(record: Record) -> Sample:
    return Sample(text=record["text"], label=record.get("label"), tokens=record.get("tokens"),
                  tags=record.get("tags"))


def predicted_value(prediction: Prediction) -> str | list[str] | None:
    return prediction.label if prediction.label is not None else prediction.tags


def note_prediction(record: Record, prediction: Prediction) -> None:
    """What the student said of a sample, and (classification) how sure it was of the sample's label."""
    record["predicted"] = predicted_value(prediction)
    if prediction.probs is not None and record.get("label") in prediction.probs:
        record["confidence"] = round(prediction.probs[record["label"]], 6)


def is_correct(record: Record) -> bool:
    gold = record.get("label") if record.get("tags") is None else record.get("tags")
    return record.get("predicted") == gold


def for_analyst(record: Record) -> Record:
    """A record as an Analyst's prompt shows it: for NER with its gold and predicted entities spelled out."""
    if record.get("tokens") is None:
        return record
    return {**record, "gold_entities": describe_entities(record["tokens"], record.get("tags")),
            "predicted_entities": describe_entities(record["tokens"], record.get("predicted"))}


def accepted_keys(samples: list[Record]) -> set[str]:
    """Normalised texts of every sample accepted so far: what a new text must not repeat."""
    return {normalise(s["text"]) for s in samples if s["accepted"]}


def precheck(text: str, seen: set[str], eval_keys: set[str], max_chars: int) -> str | None:
    """Why a text is rejected before labelling, or None. `seen` gains the text when it passes."""
    key = normalise(text)
    if not key:
        return "empty text"
    if len(text) > max_chars:
        return f"text longer than {max_chars} characters"
    if key in eval_keys:
        return "equal to a dev/test text"
    if key in seen:
        return "duplicate of an earlier sample"
    seen.add(key)
    return None


def prechecked(candidates: list[Record], samples: list[Record], *, round: int, method: str, eval_keys: set[str],
               max_chars: int) -> list[SampleRecord]:
    """A round's candidates ({text, intent}) as records, already rejected where a cheap check fails:
    empty, too long, equal to a dev/test text, a repeat of an accepted sample or of each other."""
    seen = accepted_keys(samples)
    records = []
    for cand in candidates:
        record = SampleRecord(round=round, text=cand["text"], intent=cand["intent"], accepted=False, method=method)
        record.reason = precheck(cand["text"], seen, eval_keys, max_chars)
        records.append(record)
    return records


def as_rows(records: list[SampleRecord]) -> list[Record]:
    return [r.model_dump(mode="json") for r in records]

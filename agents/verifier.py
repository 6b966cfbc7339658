"""Verifier: a fresh conversation that labels (or, for NER, annotates) new inputs, and the rules
that turn its annotation into a verdict (accepted, or rejected with a reason).

It sees only the texts and the label set, never the Generator's intent. The graph runs the cheap
checks (empty, too long, duplicate, equal to an evaluation text) before any tokens are spent here.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, create_model

from evokd.agents.alignment import Entity, align
from evokd.agents.ask import Answer, ask
from evokd.agents.client import TeacherClient, one_of
from evokd.agents.prompts import PromptSet, task_variables
from evokd.config import TaskConfig
from evokd.core.records import LLMCall, SampleRecord


def reply_schema(task_type: str, labels: list[str], n: int) -> type[BaseModel]:
    """The Verifier's reply for n texts: an object keyed by text number, "1" to "n".

    Keys that name their text kept the small embedded teacher aligned: on 32 hard sentiment
    sentences it labelled 22 right this way, against 13 with a plain list of labels, in the same
    tokens (docs/verifier-format.md)."""
    if task_type == "ner":
        entity = create_model("Entity", text=(str, ...), type=(one_of(labels), ...))
        annotation: Any = list[entity]
    else:
        annotation = one_of([*labels, "none"])
    # Default None without "| None": the schema offers no null, yet a missing key still parses.
    fields: dict[str, Any] = {f"t{i}": (annotation, Field(None, alias=str(i))) for i in range(1, n + 1)}
    name = "NerVerifierReply" if task_type == "ner" else "VerifierReply"
    model = create_model(name, **fields)
    # Every key required in the schema (a grammar then writes them all); a missing one is still
    # parsed, and becomes a per-text "no label returned" rejection.
    model.model_config["json_schema_extra"] = {"required": [str(i) for i in range(1, n + 1)]}
    return model


class Verdict(BaseModel):
    """A text's annotation once the Verifier's rules have judged it."""

    label: str | None = None
    tokens: list[str] | None = None
    tags: list[str] | None = None
    reason: str | None = None  # why it is rejected; None: accepted
    p: float | None = None  # the Verifier's probability of the label, when it was read as one

    @property
    def accepted(self) -> bool:
        return self.reason is None

    def apply_to(self, record: SampleRecord) -> None:
        """The sample record gets the verdict's annotation, reason and acceptance."""
        record.label, record.tokens, record.tags, record.reason = self.label, self.tokens, self.tags, self.reason
        record.teacher_p, record.accepted = self.p, self.accepted


def check_label(label: str | None, labels: list[str]) -> tuple[str | None, str | None]:
    """(label, None) when valid, else (label, reason). Matching forgives case and spacing."""
    if label is None:
        return None, "no label returned"
    by_key = {lab.casefold(): lab for lab in labels}
    canonical = by_key.get(label.strip().casefold())
    if canonical is None:
        return label, f"label {label!r} not in the label set"
    return canonical, None


def judge(text: str, annotation: Any, task: TaskConfig) -> Verdict:
    """The verdict on a text from its annotation: a label, or for NER a list of entities (Entity
    objects or {"text", "type"} dicts) aligned to the text's word tokens."""
    if task.type == "ner":
        if annotation is None:
            return Verdict(reason="no annotation returned")
        entities = [e if isinstance(e, Entity) else Entity.model_validate(e) for e in annotation]
        aligned = align(text, entities, task.labels)
        return Verdict(tokens=aligned.tokens, tags=aligned.tags, reason=aligned.reason)
    label, reason = check_label(annotation, task.labels)
    return Verdict(label=label, reason=reason)


def judge_entities(text: str, entities: list[dict[str, str]], label: str, task: TaskConfig) -> Verdict:
    """NER: the entities a sentence was written with, aligned to its tokens by the span rules; a
    sentence asked for an entity of type `label` and holding none is rejected."""
    verdict = judge(text, entities, task)
    if verdict.reason is None and f"B-{label}" not in (verdict.tags or []):
        verdict.reason = f"no {label} entity in the sentence"
    return verdict


def annotate_batch(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, texts: list[str], *, round: int,
                   temperature: float | None = None) -> tuple[list[Any] | None, Answer[Any]]:
    """The teacher's annotation of each text (a label, or an entity list for NER), None when it
    gave no valid reply, and the answer (its calls)."""
    # Texts are data, one numbered line each: a newline inside one must not forge another item.
    messages, template = prompts.messages("verifier", **task_variables(task),
                                          texts=[" ".join(t.split()) for t in texts])
    schema = reply_schema(task.type, task.labels, len(texts))
    # No warning: the batch's texts carry the reason ("verifier reply invalid: ...").
    answer = ask(teacher, messages, schema, round=round, node="verifier", template=template,
                 temperature=temperature, warn=False)
    if answer.reply is None:
        return None, answer
    values = [getattr(answer.reply, f"t{i}") for i in range(1, len(texts) + 1)]
    if task.type == "ner":
        values = [None if v is None else [Entity(**e.model_dump()) for e in v] for v in values]
    return values, answer


@dataclass
class Labelled:
    verdicts: list[Verdict]  # one per text, in order
    calls: list[LLMCall] = field(default_factory=list)


def label_texts(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, texts: list[str], *, round: int,
                batch_size: int, concurrency: int = 1, temperature: float | None = None,
                verdict: Callable[[int, str, Any], Verdict] | None = None) -> Labelled:
    """Label texts in batches of `batch_size`; a batch with no valid reply costs its texts, not the run.
    `verdict(i, text, annotation)` judges text i (default: the Verifier's rules, `judge`)."""
    verdict = verdict or (lambda i, text, value: judge(text, value, task))
    chunks = [texts[start:start + batch_size] for start in range(0, len(texts), batch_size)]

    def label(chunk: list[str]) -> tuple[list[Any] | None, Answer[Any]]:
        return annotate_batch(teacher, prompts, task, chunk, round=round, temperature=temperature)

    workers = min(concurrency, len(chunks))
    if workers > 1:
        # Batches are independent: a server that serves requests in parallel labels them at once.
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(label, chunks))
    else:
        results = [label(chunk) for chunk in chunks]
    verdicts: list[Verdict] = []
    calls: list[LLMCall] = []
    for chunk, (values, answer) in zip(chunks, results, strict=True):
        calls += answer.calls
        if answer.budget_spent:
            verdicts += [Verdict(reason="teacher budget spent before labelling") for _ in chunk]
        elif values is None:
            verdicts += [Verdict(reason=f"verifier reply invalid: {answer.error}") for _ in chunk]
        else:
            first = len(verdicts)
            verdicts += [verdict(first + j, text, value)
                         for j, (text, value) in enumerate(zip(chunk, values, strict=True))]
    return Labelled(verdicts, calls)


def disagreement(verdict: Any, intended: Any, task: TaskConfig) -> str | None:
    """Why the Verifier's blind annotation does not confirm the intended one, or None when it does.
    Classification: the same label. NER: every intended entity found with the same type."""
    if verdict is None:
        return "no label returned"
    if task.type == "ner":
        found = {(e.text.strip(), e.type) for e in verdict}
        for entity in intended:
            if (entity["text"].strip(), entity["type"]) not in found:
                return f"the Verifier does not tag {entity['text']!r} as {entity['type']}"
        return None
    label, reason = check_label(verdict, task.labels)
    if reason is not None:
        return f"the Verifier found it mixed or unclear ({verdict!r}), meant {intended!r}"
    if label != intended:
        return f"the Verifier says {label!r}, the Generator meant {intended!r}"
    return None


def confirm_texts(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, texts: list[str], intended: list[Any],
                  *, round: int, batch_size: int, concurrency: int = 1, temperature: float | None = None
                  ) -> Labelled:
    """The default loop's Verifier: label the texts blind, in batches, and reject each one whose
    label (entities) does not confirm the one it was written for. Verdicts carry only the reason."""
    return label_texts(teacher, prompts, task, texts, round=round, batch_size=batch_size, concurrency=concurrency,
                       temperature=temperature,
                       verdict=lambda i, text, value: Verdict(reason=disagreement(value, intended[i], task)))

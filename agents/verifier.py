"""Verifier: a fresh conversation that labels (or, for NER, annotates) the new inputs and rejects
the invalid ones.

It sees only the texts and the label set, never the Generator's intent. Cheap checks (empty,
too long, duplicate, equal to an evaluation text) run before any tokens are spent on labelling.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field, create_model

from evokd.agents.alignment import Entity, align
from evokd.agents.analyst import usage_of
from evokd.agents.llm import BudgetExhausted, StructuredOutputError
from evokd.core.records import SampleRecord
from evokd.core.text import normalise
from evokd.graph.context import Context
from evokd.graph.state import RunState


def _one_of(values: list[str]) -> Any:
    """A string whose JSON schema lists the allowed values: a grammar-constrained backend then
    cannot stray, while validation still accepts any string so that a stray value becomes a
    per-sample rejection with a reason instead of a failed reply."""
    return Annotated[str, Field(json_schema_extra={"enum": values})]


def reply_schema(task_type: str, labels: list[str], n: int) -> type[BaseModel]:
    """The Verifier's reply for n texts: an object keyed by text number, "1" to "n".

    Keys that name their text kept the small embedded teacher aligned: on 32 hard sentiment
    sentences it labelled 22 right this way, against 13 with a plain list of labels, in the same
    tokens (docs/verifier-format.md)."""
    if task_type == "ner":
        entity = create_model("Entity", text=(str, ...), type=(_one_of(labels), ...))
        annotation: Any = list[entity]
    else:
        annotation = _one_of([*labels, "none"])
    # Default None without "| None": the schema offers no null, yet a missing key still parses.
    fields = {f"t{i}": (annotation, Field(None, alias=str(i))) for i in range(1, n + 1)}
    name = "NerVerifierReply" if task_type == "ner" else "VerifierReply"
    model = create_model(name, **fields)
    # Every key required in the schema (a grammar then writes them all); a missing one is still
    # parsed, and becomes a per-text "no label returned" rejection.
    model.model_config["json_schema_extra"] = {"required": [str(i) for i in range(1, n + 1)]}
    return model


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


def check_label(label: str | None, labels: list[str]) -> tuple[str | None, str | None]:
    """(label, None) when valid, else (label, reason). Matching forgives case and spacing."""
    if label is None:
        return None, "no label returned"
    by_key = {lab.casefold(): lab for lab in labels}
    canonical = by_key.get(label.strip().casefold())
    if canonical is None:
        return label, f"label {label!r} not in the label set"
    return canonical, None


def annotate_batch(texts: list[str], ctx: Context, round: int) -> tuple[list[Any], list[Any]]:
    """The teacher's annotation of each text (a label, or an entity list for NER), and the calls."""
    task = ctx.cfg.task
    # Texts are data, one numbered line each: a newline inside one must not forge another item.
    messages, template = ctx.prompts.messages(
        "verifier", task_description=task.description, labels=task.labels,
        label_descriptions=task.label_descriptions, texts=[" ".join(t.split()) for t in texts])
    schema = reply_schema(task.type, task.labels, len(texts))
    reply, _, calls = ctx.teacher.ask(messages, schema, round=round, node="verifier",
                                      prompt_file=template.name, prompt_sha256=template.sha256,
                                      temperature=ctx.cfg.llm.verifier_temperature)
    values = [getattr(reply, f"t{i}") for i in range(1, len(texts) + 1)]
    if task.type == "ner":
        return [None if v is None else [Entity(**e.model_dump()) for e in v] for v in values], calls
    return values, calls


def accepted_keys(state: RunState) -> set[str]:
    """Normalised texts of every sample accepted so far: what a new text must not repeat."""
    return {normalise(s["text"]) for s in state.get("samples", []) if s["accepted"]}


def prechecked(state: RunState, ctx: Context) -> list[SampleRecord]:
    """The round's candidates as records, already rejected where a cheap check fails."""
    loop = ctx.cfg.loop
    seen = accepted_keys(state)
    records = []
    for cand in state.get("candidates", []):
        record = SampleRecord(round=state["round"], text=cand["text"], intent=cand["intent"], accepted=False,
                              method=loop.method)
        record.reason = precheck(cand["text"], seen, ctx.data.eval_keys, loop.max_text_chars)
        records.append(record)
    return records


def judge(record: SampleRecord, annotation: Any, ctx: Context) -> None:
    """Fill a record's label (or tokens and tags) from the annotation, accepting it when valid."""
    task = ctx.cfg.task
    if task.type == "ner":
        if annotation is None:
            record.reason = "no annotation returned"
            return
        aligned = align(record.text, annotation, task.labels)
        record.tokens, record.tags, record.reason = aligned.tokens, aligned.tags, aligned.reason
    else:
        record.label, record.reason = check_label(annotation, task.labels)
    record.accepted = record.reason is None


def verifier(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    loop = ctx.cfg.loop
    round = state["round"]
    records = prechecked(state, ctx)
    to_label = [r for r in records if r.reason is None]
    calls: list[Any] = []
    size = loop.verifier_batch_size
    chunks = [to_label[start:start + size] for start in range(0, len(to_label), size)]

    def label(chunk: list[SampleRecord]) -> tuple[Any, Exception | None]:
        try:
            return annotate_batch([r.text for r in chunk], ctx, round), None
        except (StructuredOutputError, BudgetExhausted) as exc:
            return None, exc

    workers = min(ctx.cfg.llm.concurrency, len(chunks))
    if workers > 1:
        # Batches are independent: a server that serves requests in parallel labels them at once.
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(label, chunks))
    else:
        results = [label(chunk) for chunk in chunks]
    for chunk, (result, exc) in zip(chunks, results, strict=True):
        if isinstance(exc, StructuredOutputError):
            # One bad batch costs its samples, not the run.
            calls += exc.calls
            for record in chunk:
                record.reason = f"verifier reply invalid: {exc}"
        elif isinstance(exc, BudgetExhausted):
            for record in chunk:
                record.reason = "teacher budget spent before labelling"
        else:
            annotations, new_calls = result
            calls += new_calls
            for record, annotation in zip(chunk, annotations, strict=True):
                judge(record, annotation, ctx)
    batch = [r.model_dump(mode="json") for r in records]
    return {"batch": batch, "usage": usage_of(calls, ctx)}


def self_check(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    """No separate Verifier (an ablation, `loop.separate_verifier = false`): the Generator labelled
    its own texts, and those labels go through the Verifier's rules without another teacher call."""
    ctx = runtime.context
    records = prechecked(state, ctx)
    for record, cand in zip(records, state.get("candidates", []), strict=True):
        if record.reason is None:
            annotation = cand.get("annotation")
            if ctx.cfg.task.type == "ner" and annotation is not None:
                annotation = [Entity(**e) for e in annotation]
            judge(record, annotation, ctx)
    return {"batch": [r.model_dump(mode="json") for r in records]}

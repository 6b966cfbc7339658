"""The static baseline (ZeroGen-style, Ye et al. 2022): each round the teacher writes texts for
each label in turn, with no student feedback. The label asked for is the annotation: there is no
Verifier, as in ZeroGen.

The same cheap rejection rules as everywhere apply (empty or over-long, duplicate, equal to a
dev/test text). A round writes as many texts as an EvoKD round asks for (`loop.n_hard +
loop.n_easy`), spread evenly over the labels.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field, create_model

from evokd.agents.analyst import usage_of
from evokd.agents.llm import BudgetExhausted, StructuredOutputError
from evokd.agents.verifier import precheck
from evokd.graph.context import Context, normalise
from evokd.graph.records import SampleRecord
from evokd.graph.state import RunState

log = logging.getLogger("evokd.agents")


def reply_schema(n: int) -> type[BaseModel]:
    """n texts; the count is in the JSON schema, validation accepts any length."""
    return create_model("TextsReply", texts=(list[str], Field(default_factory=list,
                                                               json_schema_extra={"minItems": n, "maxItems": n})))


def per_label(ctx: Context) -> int:
    """Texts asked per label per round: an EvoKD round's count, spread over the labels."""
    loop = ctx.cfg.loop
    return max(1, math.ceil((loop.n_hard + loop.n_easy) / len(ctx.cfg.task.labels)))


def static_gen(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    loop, task = ctx.cfg.loop, ctx.cfg.task
    round = state["round"] + 1  # this node starts the round
    seen = {normalise(s["text"]) for s in state.get("samples", []) if s["accepted"]}
    n = per_label(ctx)
    records: list[SampleRecord] = []
    calls: list[Any] = []
    for label in task.labels:
        messages, template = ctx.prompts.messages(
            "static", task_description=task.description, labels=task.labels,
            label_descriptions=task.label_descriptions, label=label, n=n, round=round)
        try:
            reply, _, new_calls = ctx.teacher.ask(messages, reply_schema(n), round=round, node="static_gen",
                                                  prompt_file=template.name, prompt_sha256=template.sha256)
        except BudgetExhausted:
            break
        except StructuredOutputError as exc:
            log.warning("static_gen, round %d: %s", round, exc)
            calls += exc.calls
            continue
        calls += new_calls
        for text in reply.texts[:n]:
            text = " ".join(str(text).split())
            record = SampleRecord(round=round, text=text, intent="easy", label=label, accepted=False,
                                  method="static")
            record.reason = precheck(text, seen, ctx.data.eval_keys, loop.max_text_chars)
            record.accepted = record.reason is None
            records.append(record)
    return {"round": round, "batch": [r.model_dump(mode="json") for r in records],
            "usage": usage_of(calls, ctx)}

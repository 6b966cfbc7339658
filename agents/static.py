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
from evokd.agents.verifier import accepted_keys, precheck
from evokd.core.records import SampleRecord
from evokd.graph.context import Context
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


def ask_for_texts(state: RunState, ctx: Context, *, agent: str, method: str,
                  requests: list[tuple[str, dict[str, Any]]], n: int) -> dict[str, Any]:
    """The no-feedback baselines' round: one teacher call per (label, prompt variables) asking for
    n texts, each kept under that label once it passes the Verifier's cheap checks."""
    loop, task = ctx.cfg.loop, ctx.cfg.task
    node = f"{agent}_gen"
    round = state["round"] + 1  # this node starts the round
    seen = accepted_keys(state)
    records: list[SampleRecord] = []
    calls: list[Any] = []
    for label, variables in requests:
        messages, template = ctx.prompts.messages(
            agent, task_description=task.description, labels=task.labels,
            label_descriptions=task.label_descriptions, n=n, round=round, **variables)
        try:
            reply, _, new_calls = ctx.teacher.ask(messages, reply_schema(n), round=round, node=node,
                                                  prompt_file=template.name, prompt_sha256=template.sha256)
        except BudgetExhausted:
            break
        except StructuredOutputError as exc:
            log.warning("%s, round %d: %s", node, round, exc)
            calls += exc.calls
            continue
        calls += new_calls
        for text in reply.texts[:n]:
            text = " ".join(str(text).split())
            record = SampleRecord(round=round, text=text, intent="easy", label=label, accepted=False,
                                  method=method)
            record.reason = precheck(text, seen, ctx.data.eval_keys, loop.max_text_chars)
            record.accepted = record.reason is None
            records.append(record)
    return {"round": round, "batch": [r.model_dump(mode="json") for r in records],
            "usage": usage_of(calls, ctx)}


def static_gen(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    requests = [(label, {"label": label}) for label in ctx.cfg.task.labels]
    return ask_for_texts(state, ctx, agent="static", method="static", requests=requests, n=per_label(ctx))

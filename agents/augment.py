"""The augment baseline (AugGPT-style, Dai et al. 2023): each round the teacher paraphrases every
seed example; a paraphrase keeps its seed example's label. No student feedback, no Verifier.

The same cheap rejection rules as everywhere apply (empty or over-long, duplicate, a verbatim copy
of a seed example, equal to a dev/test text). A round writes about as many texts as an EvoKD round
asks for (`loop.n_hard + loop.n_easy`), spread over the seed examples, at least one each.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from langgraph.runtime import Runtime

from evokd.agents.analyst import usage_of
from evokd.agents.llm import BudgetExhausted, StructuredOutputError
from evokd.agents.static import reply_schema
from evokd.agents.verifier import precheck
from evokd.graph.context import Context, normalise
from evokd.graph.records import SampleRecord
from evokd.graph.state import RunState

log = logging.getLogger("evokd.agents")


def augment_gen(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    loop, task = ctx.cfg.loop, ctx.cfg.task
    round = state["round"] + 1  # this node starts the round
    samples = state.get("samples", [])
    seed = [s for s in samples if s["intent"] == "seed"]
    seen = {normalise(s["text"]) for s in samples if s["accepted"]}
    n = max(1, math.ceil((loop.n_hard + loop.n_easy) / max(len(seed), 1)))
    records: list[SampleRecord] = []
    calls: list[Any] = []
    for example in seed:
        messages, template = ctx.prompts.messages(
            "augment", task_description=task.description, labels=task.labels,
            label_descriptions=task.label_descriptions, example=example, n=n, round=round)
        try:
            reply, _, new_calls = ctx.teacher.ask(messages, reply_schema(n), round=round, node="augment_gen",
                                                  prompt_file=template.name, prompt_sha256=template.sha256)
        except BudgetExhausted:
            break
        except StructuredOutputError as exc:
            log.warning("augment_gen, round %d: %s", round, exc)
            calls += exc.calls
            continue
        calls += new_calls
        for text in reply.texts[:n]:
            text = " ".join(str(text).split())
            record = SampleRecord(round=round, text=text, intent="easy", label=example["label"], accepted=False,
                                  method="augment")
            record.reason = precheck(text, seen, ctx.data.eval_keys, loop.max_text_chars)
            record.accepted = record.reason is None
            records.append(record)
    return {"round": round, "batch": [r.model_dump(mode="json") for r in records],
            "usage": usage_of(calls, ctx)}

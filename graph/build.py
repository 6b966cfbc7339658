"""The state machine: a method's round (graph/methods/) between the nodes every method shares.

    seed -> decide -+-> [the method's round, its steps in order] -> decide -> ...
                    +-> final_fit -> finish -> END   (final_fit: with loop.final_fit, the default)

The round counter has one owner: `start_round`, applied by `traced` to the first step of each round
(nodes only read `state["round"]`). `traced` also times every node, adds what its teacher calls cost
to the state's usage (a node returns the calls' records as "calls"), and tells the callbacks.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from evokd.agents.client import price
from evokd.config import LoopConfig
from evokd.core.records import LLMCall, NodeTurn
from evokd.graph.context import Context
from evokd.graph.final_fit import final_fit
from evokd.graph.finish import finish
from evokd.graph.method import Method, Node, Step
from evokd.graph.state import RunState
from evokd.graph.steps import decide, seed

# The nodes every method has, around its round.
SEED = Step("seed", seed, "training the student on the seed set")
DECIDE = Step("decide", decide, "deciding whether to go on")
FINAL_FIT = Step("final_fit", final_fit, "fitting a fresh student on every accepted sample")
FINISH = Step("finish", finish, "scoring on test")


def build_graph(method: Method, loop: LoopConfig) -> StateGraph[RunState, Context, RunState, RunState]:
    graph = StateGraph(RunState, context_schema=Context)
    steps = method.round(loop)
    first = steps[0].name
    end = ending(loop)
    for step in [SEED, *steps, DECIDE, *end]:
        graph.add_node(step.name, traced(step.name, step.node, starts_round=step.name == first))
    graph.add_edge(START, "seed")
    graph.add_edge("seed", "decide")
    for a, b in itertools.pairwise(steps):
        graph.add_edge(a.name, b.name)
    graph.add_edge(steps[-1].name, "decide")
    graph.add_conditional_edges("decide", next_step, {"next round": first, "finish": end[0].name})
    for a, b in itertools.pairwise(end):
        graph.add_edge(a.name, b.name)
    graph.add_edge("finish", END)
    return graph


def ending(loop: LoopConfig) -> list[Step]:
    """The nodes after the last `decide`: the final fit (unless loop.final_fit is false), then finish."""
    return [FINAL_FIT, FINISH] if loop.final_fit else [FINISH]


def next_step(state: RunState) -> Literal["next round", "finish"]:
    """The conditional edge after `decide`."""
    return "finish" if state.get("stop_reason") else "next round"


def node_texts(method: Method, loop: LoopConfig) -> dict[str, str]:
    """What each node of the method's graph is doing, as the live view says it."""
    return {step.name: step.doing for step in [SEED, *method.round(loop), DECIDE, *ending(loop)]}


def recursion_limit(method: Method, loop: LoopConfig) -> int:
    """LangGraph's cap on steps: every round's nodes and decide, plus room to spare."""
    return (len(method.round(loop)) + 1) * (loop.max_rounds + 1) + 11


def traced(name: str, node: Node, starts_round: bool = False) -> Node:
    """The node, timed, its teacher calls' cost counted, and told to the callbacks (one NodeTurn
    record per turn in the trace). The first node of a round (`starts_round`) sees the new round,
    returns it in its update and is recorded under it."""

    def run(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = runtime.context
        if starts_round:
            state = start_round(state)
        round = state.get("round", 0)
        ctx.callbacks.on_node_start(name, round)
        started = time.time()
        try:
            update = node(state, runtime)
            if starts_round:
                update = {"round": round, **update}
        except Exception as exc:
            ended = time.time()
            ctx.callbacks.on_node_end(NodeTurn(round=round, node=name, method=ctx.method.name, started_at=started,
                                               ended_at=ended, seconds=ended - started,
                                               error=f"{type(exc).__name__}: {exc}"))
            raise
        ended = time.time()
        usage = dict(update.get("usage") or {})
        if "calls" in update:
            usage.update(spent(update.pop("calls"), ctx.cfg.loop))
        ctx.callbacks.on_node_end(NodeTurn(round=round, node=name, method=ctx.method.name, started_at=started,
                                           ended_at=ended, seconds=ended - started, output=summarise(update)))
        usage["total"] = usage.get("total", 0.0) + (ended - started)
        return {**update, "usage": usage}

    run.__name__ = name
    return run


def start_round(state: RunState) -> RunState:
    """The only place the round counter advances: 0 is the seed round, generation rounds count from 1."""
    return {**state, "round": state.get("round", 0) + 1}


def spent(calls: list[LLMCall], loop: LoopConfig) -> dict[str, float]:
    """Counters to add to the state for a node's teacher calls (a recorded reply counts only when
    the run it was recorded in counted it)."""
    paid = [c for c in calls if not c.from_record or c.paid_before_resume]
    tokens_in = sum(c.tokens_in for c in paid)
    tokens_out = sum(c.tokens_out for c in paid)
    return {
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost": price(tokens_in, tokens_out, loop.price_in_per_1k, loop.price_out_per_1k),
        "calls": len(paid),
        "llm": sum(c.latency_s for c in paid),
    }


def summarise(update: dict[str, Any]) -> dict[str, Any]:
    """A short view of a node's output for the trace (the full data is in the run files)."""
    out: dict[str, Any] = {}
    for key, value in update.items():
        if key in ("conversation", "samples", "history", "latest", "asked"):
            out[key] = f"{len(value)} items"
        elif key != "usage":  # usage is summed into the state, not the node's own output
            out[key] = value
    return out

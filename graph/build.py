"""The state machines, one wiring of the shared parts per method.

evokd, evokd-paper:
          seed -> probe -> analyst -> generator -> verifier -> trainer -> decide -+-> probe (next round)
                                                                                   +-> finish -> END
          (the same roles; evokd's agents spend fewer tokens per sample: docs/method.md)
llm2llm:  seed -> probe (seed set) -> augmenter -> trainer (from scratch) -> decide -+-> probe
                                                                                     +-> finish -> END
static:   seed -> static_gen (per label, no feedback) -> trainer -> decide -+-> static_gen
augment:  seed -> augment_gen (paraphrase the seed set) -> trainer -> decide -+-> augment_gen

The round counter has one owner: `start_round`, applied by `traced` to the first node of each
method's round (nodes only read `state["round"]`). With loop.separate_verifier = false, evokd-paper's
verifier is replaced by self_check: the Generator's own labels, checked by the Verifier's rules.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from evokd.core.records import NodeTurn
from evokd.graph.context import Context
from evokd.graph.nodes import decide, finish, probe, probe_seed, retrainer, seed, trainer
from evokd.graph.nodes_llm import (
    analyst,
    augment_gen,
    augmenter,
    confirm,
    diagnosis,
    generator,
    self_check,
    static_gen,
    targeted,
    verifier,
)
from evokd.graph.route import next_step
from evokd.graph.state import RunState

NODES_PER_ROUND = 6  # probe, analyst, generator, verifier, trainer, decide

Node = Callable[[RunState, Runtime[Context]], dict[str, Any]]


def summarise(update: dict[str, Any]) -> dict[str, Any]:
    """A short view of a node's output for the trace (the full data is in the run files)."""
    out: dict[str, Any] = {}
    for key, value in update.items():
        if key in ("conversation", "samples", "history", "latest"):
            out[key] = f"{len(value)} items"
        elif key != "usage":  # usage is summed into the state, not the node's own output
            out[key] = value
    return out


def start_round(state: RunState) -> RunState:
    """The only place the round counter advances: 0 is the seed round, generation rounds count from 1."""
    return {**state, "round": state.get("round", 0) + 1}


def traced(name: str, node: Node, starts_round: bool = False) -> Node:
    """Time a node, tell the live view, and leave one NodeTurn record per turn in the trace.
    The first node of a round (`starts_round`) sees the new round, returns it in its update and is
    recorded under it."""

    def run(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = runtime.context
        if starts_round:
            state = start_round(state)
        round = state.get("round", 0)
        ctx.events.node_started(name, round)
        started = time.time()
        try:
            update = node(state, runtime)
            if starts_round:
                update = {"round": round, **update}
        except Exception as exc:
            ended = time.time()
            ctx.trace.write(NodeTurn(round=round, node=name, method=ctx.cfg.loop.method, started_at=started,
                                     ended_at=ended, seconds=ended - started, error=f"{type(exc).__name__}: {exc}"))
            raise
        ended = time.time()
        ctx.trace.write(NodeTurn(round=round, node=name, method=ctx.cfg.loop.method, started_at=started,
                                 ended_at=ended, seconds=ended - started, output=summarise(update)))
        usage = dict(update.get("usage") or {})
        usage["total"] = usage.get("total", 0.0) + (ended - started)
        return {**update, "usage": usage}

    run.__name__ = name
    return run


# One round's nodes per method, in order; the first one starts the round. A new method is a new row.
ROUNDS: dict[str, list[tuple[str, Node]]] = {
    "evokd": [("probe", probe), ("analyst", diagnosis), ("generator", targeted), ("verifier", confirm),
              ("trainer", trainer)],
    "evokd-paper": [("probe", probe), ("analyst", analyst), ("generator", generator), ("verifier", verifier),
                    ("trainer", trainer)],
    "llm2llm": [("probe", probe_seed), ("augmenter", augmenter), ("trainer", retrainer)],
    "static": [("static_gen", static_gen), ("trainer", trainer)],
    "augment": [("augment_gen", augment_gen), ("trainer", trainer)],
}


def round_nodes(method: str = "evokd", separate_verifier: bool = True) -> list[tuple[str, Node]]:
    """One round's nodes in order; the switch swaps evokd's Verifier for the Generator's own labels."""
    nodes = ROUNDS[method]
    if not separate_verifier:
        nodes = [("self_check", self_check) if name == "verifier" else (name, node) for name, node in nodes]
    return nodes


def build_graph(method: str = "evokd", separate_verifier: bool = True) -> StateGraph:
    graph = StateGraph(RunState, context_schema=Context)
    nodes = round_nodes(method, separate_verifier)
    first = nodes[0][0]
    graph.add_node("seed", traced("seed", seed))
    for name, node in nodes:
        graph.add_node(name, traced(name, node, starts_round=name == first))
    for name, node in [("decide", decide), ("finish", finish)]:
        graph.add_node(name, traced(name, node))
    graph.add_edge(START, "seed")
    graph.add_edge("seed", "decide")
    for (a, _), (b, _) in itertools.pairwise(nodes):
        graph.add_edge(a, b)
    graph.add_edge(nodes[-1][0], "decide")
    # next_step names the next round "probe"; the round starts at this method's first node.
    graph.add_conditional_edges("decide", next_step, {"probe": first, "finish": "finish"})
    graph.add_edge("finish", END)
    return graph


def recursion_limit(max_rounds: int) -> int:
    return NODES_PER_ROUND * (max_rounds + 1) + 10

"""The state machines, one wiring of the shared parts per method.

evokd:    seed -> probe -> analyst -> generator -> verifier -> trainer -> decide -+-> probe (next round)
                                                                                   +-> finish -> END
llm2llm:  seed -> probe (seed set) -> augmenter -> trainer (from scratch) -> decide -+-> probe
                                                                                     +-> finish -> END
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from evokd.agents.analyst import analyst
from evokd.agents.augmenter import augmenter
from evokd.agents.generator import generator
from evokd.agents.verifier import verifier
from evokd.graph.context import Context
from evokd.graph.nodes import decide, finish, probe, probe_seed, retrainer, seed, trainer
from evokd.graph.records import NodeTurn
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
        elif key in ("batch", "candidates", "correct", "incorrect") or key != "usage":
            out[key] = value
    return out


def traced(name: str, node: Node) -> Node:
    """Time a node, tell the live view, and leave one NodeTurn record per turn in the trace."""

    def run(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = runtime.context
        round = state.get("round", 0) + (1 if name == "probe" else 0)
        ctx.events.node_started(name, round)
        started = time.time()
        try:
            update = node(state, runtime)
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


ROUNDS: dict[str, list[tuple[str, Node]]] = {
    "evokd": [("probe", probe), ("analyst", analyst), ("generator", generator), ("verifier", verifier),
              ("trainer", trainer)],
    "llm2llm": [("probe", probe_seed), ("augmenter", augmenter), ("trainer", retrainer)],
}


def build_graph(method: str = "evokd") -> StateGraph:
    graph = StateGraph(RunState, context_schema=Context)
    round_nodes = ROUNDS[method]
    for name, node in [("seed", seed), *round_nodes, ("decide", decide), ("finish", finish)]:
        graph.add_node(name, traced(name, node))
    graph.add_edge(START, "seed")
    graph.add_edge("seed", "decide")
    for (a, _), (b, _) in itertools.pairwise(round_nodes):
        graph.add_edge(a, b)
    graph.add_edge(round_nodes[-1][0], "decide")
    graph.add_conditional_edges("decide", next_step, {"probe": "probe", "finish": "finish"})
    graph.add_edge("finish", END)
    return graph


def recursion_limit(max_rounds: int) -> int:
    return NODES_PER_ROUND * (max_rounds + 1) + 10

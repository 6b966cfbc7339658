"""What a method is: its round and everything the rest of evokd asks of it, declared in one place.

A method module (graph/methods/<name>.py) builds one `Method`, and the registry
(graph/methods/__init__.py) lists it; nothing else names a method. The builder wires `round(loop)`
between the nodes every method shares (seed, decide, finish); the pre-flight checks `tasks`,
`owns` and `check`, and loads the templates `prompts(loop)` names; `--dry-run` asks `estimate`;
the trainer trains as `training(loop)` says; `decide` adds `stop` to the budget and plateau rules;
`evokd bench` runs the `bench` rows. A method's nodes, and the agents they call, live in its module
or in agents/; `prepare` loads what else it needs (ctx.method_data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from langgraph.runtime import Runtime

from evokd.config import LoopConfig, RunConfig
from evokd.graph.context import Context, TaskData
from evokd.graph.state import RunState

if TYPE_CHECKING:
    from evokd.graph.estimate import Asks

class Node(Protocol):
    """A node: the state in, an update to it out; `runtime.context` is the run's Context."""

    def __call__(self, state: RunState, runtime: Runtime[Context]) -> dict[str, Any]: ...


class Step(NamedTuple):
    """One node of a round."""

    name: str  # the node's name in the graph, the trace and the checkpoints (a run resumes by it)
    node: Node
    doing: str  # what the live view says while it runs


class Training(NamedTuple):
    """How the trainer trains the student on a round's accepted samples, beside the seed set."""

    # False: continue from the last round's weights, for student.epochs_per_round. True: start again
    # from the base weights, for student.seed_epochs, as the seed round did (LLM2LLM).
    fresh: bool = False
    # Earlier accepted samples replayed with the new ones: a review sample of loop.review_size (the
    # paper's "review"), or (True) every one of them.
    review_all: bool = False


StopReason = Literal["max_rounds", "max_tokens", "max_cost", "max_minutes", "plateau", "converged",
                     "pool_exhausted"]


class Stop(NamedTuple):
    reason: StopReason
    detail: str = ""


class BenchRow(NamedTuple):
    """A row of `evokd bench`: this method with some settings."""

    name: str  # the row's name in the benchmark's table, JSON and plots
    overrides: tuple[str, ...] = ()  # --set items beyond loop.method
    ablation: bool = False  # run by the full profile only


def continues(loop: LoopConfig) -> Training:
    """The usual training: continue, with a review sample."""
    return Training()


@dataclass(frozen=True)
class Method:
    name: str  # the value of loop.method
    # One round's steps in order (the first starts the round); the builder adds seed, decide, finish.
    round: Callable[[LoopConfig], list[Step]]
    # The templates ("diagnosis.user", ...) the method cannot run without, for this config.
    prompts: Callable[[RunConfig], list[str]]
    # `--dry-run`: the teacher calls of one round, written down with `asks.call(...)`.
    estimate: Callable[[Asks], None]
    training: Callable[[LoopConfig], Training] = continues
    # A stop rule of its own, checked after the budget and plateau rules (before the budget forecast).
    stop: Callable[[RunState], Stop | None] | None = None
    # Config checks, in the pre-flight: the task types it supports; the loop settings only it reads
    # (set away from their default for another method, they are an error, not a silent no-op); and
    # anything else, as (dotted key, message) when the config is wrong.
    tasks: tuple[str, ...] = ("classification", "ner")
    owns: tuple[str, ...] = ()
    check: Callable[[RunConfig], tuple[str, str] | None] | None = None
    bench: tuple[BenchRow, ...] = ()
    # Reads the feedback texts (data.feedback, data.feedback_share); for another method they are an error.
    reads_feedback: bool = False
    # (evokd version prefix, name): runs recorded by those versions called this method by that name.
    formerly: tuple[tuple[str, str], ...] = ()
    # The method's own data, loaded and checked in the pre-flight (before a run folder exists) and kept
    # in memory, never checkpointed, as ctx.method_data: extra inputs, a cache its nodes share.
    prepare: Callable[[RunConfig, TaskData], Any] | None = None

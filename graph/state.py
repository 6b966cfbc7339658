"""The graph state: plain JSON data only, so LangGraph's SQLite checkpointer can persist it.

Heavy objects (the student, the teacher client, the callbacks) live in the runtime `Context`;
the state names the student checkpoint to load instead of holding the model.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict


def add_numbers(old: dict[str, float] | None, new: dict[str, float] | None) -> dict[str, float]:
    """Reducer: node updates to counters (tokens, seconds) add up instead of overwriting."""
    out = dict(old or {})
    for key, value in (new or {}).items():
        out[key] = out.get(key, 0.0) + value
    return out


class RunState(TypedDict, total=False):
    # 0 is the seed round; generation rounds count from 1.
    round: int
    # Every sample seen so far (seed, accepted, rejected) as SampleRecord dicts.
    samples: list[dict[str, Any]]
    # The latest accepted batch, with the student's predictions before it trained on them (the
    # trainer's): what the next round's Analyst and Generator read.
    latest: list[dict[str, Any]]
    # evokd-paper's and LLM2LLM's probe: samples the student got right and wrong.
    correct: list[dict[str, Any]]
    incorrect: list[dict[str, Any]]
    # evokd-paper: the Analyst and the Generator share this conversation within a round.
    conversation: list[dict[str, str]]
    analysis: str  # the Analyst's text, as the trace and the report show it
    # The default evokd loop: the Analyst's latest diagnosis (reused by later rounds) and its round.
    diagnosis: list[str]
    analysed_round: int
    # The default loop with feedback texts: the ones the student (as it is now) gets wrong or nearly
    # wrong, with its predictions, hardest first: what this round's Analyst and Generator read.
    real_errors: list[dict[str, Any]]
    # The round's new texts before any check: {text, intent} and, when written for a label or with
    # entities, "annotation" (a label, or an entity list for NER) and "label".
    candidates: list[dict[str, Any]]
    batch: list[dict[str, Any]]
    # RoundMetrics dicts, one per finished round (round 0 included).
    history: list[dict[str, Any]]
    best_round: int
    best_f1: float
    student_dir: str
    # Cumulative counters: tokens_in, tokens_out, cost, calls, llm, train, eval, total (seconds).
    usage: Annotated[dict[str, float], add_numbers]
    stop_reason: str | None
    stop_detail: str  # why a budget stop came early, e.g. "a round costs about 900 tokens, 400 left"
    # The final fit's report (student/final_fit.py FitReport, without its recipe): graph/final_fit.py.
    final_fit: dict[str, Any]
    test: dict[str, Any] | None
    # pool: the pool rows sent to the Verifier so far (never asked again), how many usable rows were
    # left after the latest pick, and what that pick saw (strategy, shortlist, uncertainty range).
    asked: list[int]
    pool_left: int
    pick: dict[str, Any]
    final_test: dict[str, Any] | None

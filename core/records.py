"""Typed records of a run: what the trace, samples, metrics and result files hold.

Every line of `trace.jsonl` is one of the `TraceRecord` kinds, tagged by `kind` and versioned by
`schema_version`, so a reader (or a replay) can validate a run written by another evokd version.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, field_validator, model_serializer

SCHEMA_VERSION = 1
# The headline number the loop optimises, by task type: what every summary, table and plot calls it.
METRIC = {"classification": "macro-F1", "ner": "micro-F1 (seqeval)"}


def metric_name(task_type: str) -> str:
    return METRIC.get(task_type, "F1")


class _Record(BaseModel):
    schema_version: int = SCHEMA_VERSION


class RunHeader(_Record):
    kind: Literal["run"] = "run"
    run_id: str
    evokd_version: str
    created_at: float
    config_hash: str
    config: dict[str, Any]
    teacher_model: str
    teacher_url: str
    student_model: str
    seeds: dict[str, int]
    libraries: dict[str, str]
    method: str = "evokd"
    prompts: dict[str, str] = {}  # template name -> SHA-256
    parent: str | None = None
    resumed: bool = False


class TokenChoice(BaseModel):
    """One position of a reply read with token log-probabilities: the token the teacher wrote and
    its top alternatives as (token, log-probability) pairs."""

    token: str
    top: list[tuple[str, float]]


class LLMCall(_Record):
    kind: Literal["llm_call"] = "llm_call"
    round: int
    node: str
    model: str = ""
    attempt: int = 0
    transport_retries: int = 0
    request_key: str
    schema_name: str
    prompt_file: str = ""
    prompt_sha256: str = ""
    messages: list[dict[str, str]]
    reply: str | None = None
    parsed: dict[str, Any] | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    started_at: float = 0.0
    error: str | None = None
    # Served from an earlier recording (resume or replay) instead of asking the teacher again.
    from_record: bool = False
    # Served from the trace of a run that paid for it and counted here as there: on --resume (the
    # interrupted run), on replay --rerun (the replayed run, so its budget stops the rerun alike).
    paid_before_resume: bool = False
    # A call that asked for token log-probabilities (the Verifier reading label probabilities): its
    # reply token by token, recorded so that a resume or replay reads the same probabilities.
    logprobs: list[TokenChoice] | None = None


class NodeTurn(_Record):
    kind: Literal["node"] = "node"
    round: int
    node: str
    method: str = "evokd"
    started_at: float
    ended_at: float
    seconds: float
    # What the node produced, small enough to read in a terminal (counts, labels, F1...).
    output: dict[str, Any] = {}
    error: str | None = None


class Decision(_Record):
    kind: Literal["decision"] = "decision"
    round: int
    next: Literal["continue", "stop"]
    stop_reason: str | None = None
    detail: str = ""


TraceRecord = Annotated[RunHeader | LLMCall | NodeTurn | Decision, Field(discriminator="kind")]


class SampleRecord(BaseModel):
    """One generated (or seed) sample and what happened to it: a line of samples.jsonl."""

    round: int
    text: str
    # pool: one of the user's unlabelled texts, picked by the query strategy (loop.method = "pool").
    intent: Literal["hard", "easy", "seed", "pool"]
    label: str | None = None
    tokens: list[str] | None = None
    tags: list[str] | None = None
    accepted: bool
    reason: str | None = None
    # The student's prediction before it trained on this sample (label, or BIO tags for NER).
    predicted: str | list[str] | None = None
    # Classification: the probability the student gave this sample's label at that moment.
    confidence: float | None = None
    # The Verifier's probability of this sample's label, when it read label probabilities
    # (loop.verifier = "probabilities"); the final fit may weight the sample by it.
    teacher_p: float | None = None
    method: str = "evokd"
    # pool: the text's row in the pool index, and where it comes from (file:line, dataset row).
    row: int | None = None
    origin: str | None = None

    @model_serializer(mode="wrap")
    def _pool_fields_when_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Written only when set, so the other methods' samples.jsonl lines stay as they were.
        data: dict[str, Any] = handler(self)
        for key in ("row", "origin"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class RoundMetrics(BaseModel):
    """One line of metrics.jsonl: the student after a round, and what the round cost."""

    round: int
    f1: float
    dev: dict[str, Any]
    accepted: int
    rejected: int
    train_size: int
    tokens_in: int
    tokens_out: int
    cost: float
    seconds: dict[str, float]
    best_round: int
    # Mean training loss over the round's last epoch; None when the round trained on nothing.
    train_loss: float | None = None
    method: str = "evokd"
    # Cumulative llm/train/eval/total seconds at the end of the round (the next round's baseline).
    usage_at_end: dict[str, float] = {}


class Sample(BaseModel):
    """The unit that flows through the whole loop. Classification samples carry a `label`; NER
    samples carry word `tokens` and word-level BIO `tags` (`text` is then the tokens joined by
    spaces unless the source had the original sentence)."""

    text: str
    label: str | None = None
    tokens: list[str] | None = None
    tags: list[str] | None = None
    # How much the sample counts in the training loss (0 leaves it out), e.g. how sure a Verifier was.
    weight: float = Field(1.0, ge=0)
    # Classification: a label distribution to train towards instead of `label` alone (soft target);
    # `label` stays the sample's hard label (scores, predictions, the trace). NER trains on hard tags.
    soft_label: dict[str, float] | None = None

    @field_validator("soft_label")
    @classmethod
    def _a_distribution(cls, soft: dict[str, float] | None) -> dict[str, float] | None:
        if soft is None:
            return None
        if not soft or any(p < 0 for p in soft.values()) or abs(sum(soft.values()) - 1) > 1e-3:
            raise ValueError(f"soft_label must be non-negative probabilities summing to 1, got {soft}")
        return soft


class Prediction(BaseModel):
    """What the student says of one sample: a label and the probability of each, or word-level BIO tags."""

    label: str | None = None
    probs: dict[str, float] | None = None
    tags: list[str] | None = None
    # How sure the student is: the gap between its two most likely labels; for NER the smallest
    # such gap over the sentence's words (what the pool's query strategies rank by).
    margin: float | None = None


class ClassScore(BaseModel):
    precision: float
    recall: float
    f1: float
    support: int


class ConfusedPair(BaseModel):
    gold: str
    predicted: str
    count: int


class EvalReport(BaseModel):
    task: Literal["classification", "ner"]
    n: int
    # The headline number the loop optimises: macro-F1 (classification) or micro-F1 (NER, seqeval).
    f1: float
    accuracy: float | None = None
    macro_f1: float
    micro_f1: float
    per_class: dict[str, ClassScore]
    labels: list[str] = []
    # Rows are gold labels, columns predicted labels, both in `labels` order (classification only).
    confusion: list[list[int]] | None = None
    confused_pairs: list[ConfusedPair] = []
    # NER only: counts of missed, spurious, wrong_type and wrong_boundary entities.
    errors: dict[str, int] | None = None


class DevPredictions(BaseModel):
    """rounds/round_NNN/dev_predictions.json: what the round's student predicted on each dev
    example, just enough to resample the dev set (the report's bootstrap interval of the F1).

    Classification: the gold and predicted label of every dev text as indices into `labels`
    (-1: a prediction outside the label set). NER: per dev sentence, the entities predicted
    correctly, predicted and in the gold tags, which is all micro-F1 is computed from."""

    task: Literal["classification", "ner"]
    labels: list[str]
    gold: list[int] = []
    predicted: list[int] = []
    entity_counts: list[tuple[int, int, int]] = []


class FinalFitResult(BaseModel):
    """The final fit of a run (graph/final_fit.py): a fresh student on the seed set and every
    accepted sample, stopped at its best dev epoch and calibrated on dev; it ships as student/."""

    train_size: int
    dev_f1: float
    test_f1: float | None = None
    best_epoch: int
    epochs_run: int
    max_epochs: int
    # The temperature folded into the head, and dev expected calibration error before and after it.
    temperature: float
    dev_ece_before: float
    dev_ece_after: float
    seconds: float
    # Dev log-loss before and after: what the temperature minimises (None in runs of evokd 0.2).
    dev_nll_before: float | None = None
    dev_nll_after: float | None = None
    # Whether it ships as student/ (final_fit.ship): false when the best round's student scored higher
    # on dev; true in the runs recorded before the choice existed.
    shipped: bool = True


class RunResult(BaseModel):
    """result.json, written by the `finish` node (graph/finish.py); summary.md is rendered from it."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    task_name: str
    task_type: str
    labels: list[str]
    method: str
    teacher_model: str
    teacher_url: str
    student_model: str
    # The teacher as a person names it: the embedded weights, or the model at an endpoint.
    teacher: str = ""
    budget: dict[str, float | int] = {}
    stop_reason: str | None = None
    stop_detail: str = ""
    rounds: int
    seed_f1: float
    best_round: int
    best_f1: float
    # Test F1 of the best round's student (whatever the final fit did).
    test_f1: float | None = None
    # None: loop.final_fit = false (student/ is the best round's), or a run of evokd 0.2.
    final_fit: FinalFitResult | None = None
    accepted: int
    rejected: int
    tokens_in: int
    tokens_out: int
    cost: float
    seconds: dict[str, float]
    calls: int = 0  # teacher calls paid for (result.json of evokd 0.2 has none)

    @property
    def metric(self) -> str:
        return metric_name(self.task_type)

    @property
    def shipped_test_f1(self) -> float | None:
        """Test F1 of the student in student/: the final fit's, or the best round's when that shipped."""
        if self.final_fit is not None and self.final_fit.shipped:
            return self.final_fit.test_f1
        return self.test_f1

"""What a run will ask of its teacher, before it starts (`evokd run CONFIG --dry-run`).

One generation round's calls are rendered from the real templates on the seed data (the samples the
Analyst is shown, the texts the Verifier labels: seed texts standing in for generated ones of the
same length), their input tokens counted, and each reply sized by what it holds (a summary, n texts
as long as the seed texts, a label per text), never above `llm.max_tokens`. Rounds the budget buys
follow the loop's own rule (`loop.forecast_budget`: no round is started that the rest of the budget
is not expected to pay for). Minutes come from a previous run with the same teacher in `runs_dir`.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evokd.agents.prompts import PromptSet, task_variables
from evokd.config import RunConfig
from evokd.core.bio import describe_entities
from evokd.core.records import Sample
from evokd.graph.context import TaskData

# Per chat message the chat template adds role markers.
MESSAGE_OVERHEAD = 4


@dataclass(frozen=True)
class ReplySizes:
    """How long the teacher's replies are, in tokens: what a run cannot know before it asks. The
    defaults are the embedded 1.5B teacher's on the sentiment demo (Analyst summaries of 43 and 90
    tokens; about 15 tokens per generated text of 10-token seed sentences)."""

    analyst: int = 70  # a summary "in a few short points"
    per_text_extra: int = 4  # quotes and separators around each generated text, beyond its own length
    text_scale: float = 1.0  # generated text length / mean seed text length
    per_label: int = 4  # a Verifier's label with its key (NER: per entity, 8 more)


def approx_tokens(text: str) -> int:
    """Tokens of English text for a BPE tokenizer (about 4 characters each)."""
    return math.ceil(len(text) / 4)


@dataclass
class CallEstimate:
    node: str
    calls: float  # per round; a call not made every round counts its share (0.4: in 2 rounds of 5)
    tokens_in: int  # per call
    tokens_out: int  # per call


@dataclass
class Estimate:
    method: str
    calls: list[CallEstimate]
    rounds: int  # generation rounds the budget buys (at most loop.max_rounds)
    limit: str  # what limits the rounds: "max_rounds", "max_tokens" or "max_cost"
    price_in_per_1k: float
    price_out_per_1k: float
    seconds_per_token: float | None = None  # the teacher's measured speed, when known
    speed_source: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def round_in(self) -> int:
        return round(sum(c.calls * c.tokens_in for c in self.calls))

    @property
    def round_out(self) -> int:
        return round(sum(c.calls * c.tokens_out for c in self.calls))

    @property
    def round_calls(self) -> float:
        return sum(c.calls for c in self.calls)

    @property
    def tokens(self) -> int:
        return self.rounds * (self.round_in + self.round_out)

    @property
    def cost(self) -> float:
        per_round = self.round_in / 1000 * self.price_in_per_1k + self.round_out / 1000 * self.price_out_per_1k
        return self.rounds * per_round

    @property
    def teacher_minutes(self) -> float | None:
        return None if self.seconds_per_token is None else self.tokens * self.seconds_per_token / 60

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "round_in": self.round_in, "round_out": self.round_out, "tokens": self.tokens,
                "cost": self.cost, "teacher_minutes": self.teacher_minutes}

    def lines(self) -> list[str]:
        out = [f"method {self.method}: {self.round_calls:.3g} teacher calls a round, about {self.round_in:,} tokens in "
               f"and {self.round_out:,} out"]
        out += [f"  {c.node}: {c.calls:.3g} x ({c.tokens_in:,} in + {c.tokens_out:,} out)" for c in self.calls]
        why = {"max_rounds": "loop.max_rounds", "max_tokens": "the token budget", "max_cost": "the money budget"}
        out.append(f"rounds: {self.rounds} (limited by {why[self.limit]}; a plateau may stop it sooner)")
        out.append(f"teacher tokens: about {self.tokens:,} in all")
        if self.price_in_per_1k or self.price_out_per_1k:
            out.append(f"money: about {self.cost:.4f} at {self.price_in_per_1k}/{self.price_out_per_1k} per 1k tokens "
                       "in/out")
        else:
            out.append("money: 0 (no loop.price_in_per_1k / price_out_per_1k set)")
        if self.teacher_minutes is not None:
            out.append(f"teacher time: about {self.teacher_minutes:.1f} min at {1 / self.seconds_per_token:.0f} "
                       f"tokens/s ({self.speed_source}); student training comes on top")
        else:
            out.append("teacher time: unknown (no earlier run with this teacher in runs_dir)")
        return out + self.notes


def _count(messages: list[dict[str, str]], count: Callable[[str], int], overhead: int) -> int:
    return sum(count(str(m["content"])) + overhead for m in messages)


def _records(seed: list[Sample], n: int) -> list[dict[str, Any]]:
    """n records shaped as the probe shows them to the Analyst, cycled from the seed samples."""
    out = []
    for i in range(n):
        s = seed[i % len(seed)]
        if s.tokens is not None:
            out.append({"text": s.text, "tokens": s.tokens, "tags": s.tags, "predicted": ["O"] * len(s.tokens),
                        "gold_entities": describe_entities(s.tokens, s.tags),
                        "predicted_entities": describe_entities(s.tokens, ["O"] * len(s.tokens))})
        else:
            out.append({"text": s.text, "label": s.label, "predicted": s.label})
    return out


def estimate(cfg: RunConfig, data: TaskData, prompts: PromptSet, count: Callable[[str], int] = approx_tokens,
             *, speed: bool = True, replies: ReplySizes = ReplySizes(), message_overhead: int = MESSAGE_OVERHEAD,
             ) -> Estimate:
    """The calls, tokens, money and rounds of a run of `cfg` on `data` (see the module doc).
    `count` is the teacher's tokenizer (characters / 4 by default) and `message_overhead` what its
    chat template adds per message; `replies` sizes the replies; `speed` looks for a measured speed."""
    loop, task, cap = cfg.loop, cfg.task, cfg.llm.max_tokens
    seed = data.seed
    common = task_variables(task)
    text_tokens = max(1, round(sum(count(s.text) for s in seed) / len(seed)))
    # A reply: JSON keys and quotes around each item, then the items.
    per_text = round(text_tokens * replies.text_scale) + replies.per_text_extra
    per_label = replies.per_label if task.type == "classification" else replies.per_label + 2 + 8 * max(1, round(
        sum(len([t for t in s.tags or [] if t.startswith("B-")]) for s in seed) / len(seed)))
    n = loop.n_hard + loop.n_easy
    calls: list[CallEstimate] = []

    def call(node: str, k: float, messages: list[dict[str, str]], out: int, extra_in: int = 0) -> None:
        if k > 0:
            calls.append(CallEstimate(node, k, _count(messages, count, message_overhead) + extra_in, min(out, cap)))

    metrics = {"f1": 0.5, "per_label": dict.fromkeys(task.labels, 0.5),
               "confused": [{"gold": task.labels[0], "predicted": task.labels[1], "count": 1}],
               "errors": {"missed": 1, "spurious": 1} if task.type == "ner" else None}
    if loop.method == "evokd":
        # The default loop (docs/method.md). Per label a fresh Generator call for n texts, shown the
        # diagnosis and the student's hardest texts; the Verifier labels the hard texts (loop.verify).
        labels = len(task.labels)
        weaknesses = ["a few words of diagnosis"] * 3
        gen, _ = prompts.messages("targeted", **common, round=1, label=task.labels[0], weaknesses=weaknesses,
                                  examples=_records(seed, loop.show_errors), n_hard=loop.n_hard,
                                  n_easy=loop.n_easy, keys=("tricky_label", "plain_label"))
        call("generator", labels, gen, n * (per_text + (0 if task.type == "classification" else per_label)) + 10)
        # No diagnosis in round 1 (nothing wrong to read), then one every loop.analyst_every rounds:
        # its tokens are spread over the rounds as an average share.
        diagnosis, _ = prompts.messages("diagnosis", **common, errors=_records(seed, loop.max_shown),
                                        n_seen=n * labels, metrics=metrics if loop.analyst_sees_metrics else None)
        share = round(math.ceil(max(loop.max_rounds - 1, 0) / loop.analyst_every) / max(loop.max_rounds, 1), 3)
        if share > 0:
            calls.append(CallEstimate("analyst", share, _count(diagnosis, count, message_overhead),
                                      min(replies.analyst // 2, cap)))
        checked = {"hard": loop.n_hard, "all": n, "contested": n // 2}[loop.verify] * labels
        if checked:
            batch = loop.verifier_batch_size
            texts = [r["text"] for r in _records(seed, min(batch, checked))]
            verifier, _ = prompts.messages("verifier", **common, texts=texts)
            per_round: float = math.ceil(checked / batch)
            if loop.verify == "hard" and loop.hard_from_errors:
                # Round 1 has no wrong texts to vary, so no hard ones: an average share of the later rounds'.
                per_round = round(per_round * max(loop.max_rounds - 1, 0) / max(loop.max_rounds, 1), 3)
            call("verifier", per_round, verifier, min(batch, checked) * per_label + 4)
    elif loop.method == "evokd-paper":
        # Round 1 shows the Analyst the seed set, later rounds the last batch (up to max_shown right
        # and max_shown wrong): the mean of the two, half right and half wrong.
        shown = max(1, round((len(seed) + min(n, 2 * loop.max_shown)) / 4))
        analyst, _ = prompts.messages("analyst", **common, round=1,
                                      correct=_records(seed, shown) if loop.analyst_sees_correct else None,
                                      incorrect=_records(seed, shown),
                                      metrics=metrics if loop.analyst_sees_metrics else None)
        call("analyst", 1, analyst, replies.analyst)
        agent = "generator" if loop.separate_verifier else "generator_labelled"
        gen_user, _ = prompts.messages(agent, **common, round=1, n_hard=loop.n_hard, n_easy=loop.n_easy)
        generated = n * (per_text + (0 if loop.separate_verifier else per_label)) + 10
        # The Generator continues the Analyst's conversation: its prompt, its reply, then the ask.
        call("generator", 1, [*analyst, gen_user[-1]], generated, extra_in=min(replies.analyst, cap) + message_overhead)
        if loop.separate_verifier:
            batch = loop.verifier_batch_size
            texts = [r["text"] for r in _records(seed, min(batch, n))]
            verifier, _ = prompts.messages("verifier", **common, texts=texts)
            call("verifier", math.ceil(n / batch), verifier, min(batch, n) * per_label + 4)
    elif loop.method == "static":
        from evokd.agents.static import per_label as texts_per_label

        k = texts_per_label(loop.n_hard, loop.n_easy, task.labels)
        messages, _ = prompts.messages("static", **common, n=k, round=1, label=task.labels[0])
        call("static", len(task.labels), messages, k * per_text + 6)
    elif loop.method == "augment":
        from evokd.agents.auggpt import per_example

        k = per_example(loop.n_hard, loop.n_easy, len(seed))
        example = _records(seed, 1)[0]
        messages, _ = prompts.messages("augment", **common, n=k, round=1, example=example)
        call("augment", len(seed), messages, k * per_text + 6)
    else:  # llm2llm: one call per seed example the student gets wrong; assume half of them
        example = _records(seed, 1)[0]
        messages, _ = prompts.messages("llm2llm", **common, n=loop.llm2llm_per_example, round=1, example=example)
        call("llm2llm", max(1, len(seed) // 2), messages, loop.llm2llm_per_example * (per_text + 8) + 6)
    est = Estimate(method=loop.method, calls=calls, rounds=loop.max_rounds, limit="max_rounds",
                   price_in_per_1k=loop.price_in_per_1k, price_out_per_1k=loop.price_out_per_1k)
    _limit_rounds(est, cfg)
    measured = measured_speed(cfg) if speed else None
    if measured is not None:
        est.seconds_per_token, est.speed_source = measured
    return est


def _limit_rounds(est: Estimate, cfg: RunConfig) -> None:
    """Rounds the budgets buy: a round starts while the rest pays for a mean round (forecast_budget),
    else while anything is left (its last calls then stop part-way)."""
    loop = cfg.loop
    per_round = est.round_in + est.round_out
    per_cost = est.round_in / 1000 * loop.price_in_per_1k + est.round_out / 1000 * loop.price_out_per_1k
    for limit, budget, cost in (("max_tokens", loop.max_tokens, per_round), ("max_cost", loop.max_cost, per_cost)):
        if budget is None or cost <= 0:
            continue
        fits = math.floor(budget / cost) if loop.forecast_budget else math.ceil(budget / cost)
        fits = max(fits, 1)  # the first round always starts: nothing is known of a round's cost yet
        if fits < est.rounds:
            est.rounds, est.limit = fits, limit


def measured_speed(cfg: RunConfig) -> tuple[float, str] | None:
    """Seconds per teacher token (in + out) of the newest finished run under runs_dir (benchmark
    run folders included) with this teacher: the same model at the same endpoint, or, for the
    embedded teacher, the same weights on a loopback port."""
    runs = Path(cfg.runs_dir)
    if not runs.is_dir():
        return None
    newest: tuple[float, float, str] | None = None
    for result in runs.glob("**/result.json"):
        try:
            got = json.loads(result.read_text(encoding="utf-8"))
            earlier = tomllib.loads((result.parent / "config.toml").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        tokens = got.get("tokens_in", 0) + got.get("tokens_out", 0)
        llm = (got.get("seconds") or {}).get("llm", 0.0)
        if tokens <= 0 or llm <= 0 or got.get("teacher_model") != cfg.llm.model:
            continue
        url = earlier.get("llm", {}).get("base_url")
        if cfg.llm.base_url is not None:
            same = url == cfg.llm.base_url
        else:  # the embedded teacher: started by the run (no url) or by a benchmark (a loopback url)
            teacher = earlier.get("teacher", {})
            same = (url is None or url.startswith("http://127.0.0.1:")) \
                and teacher.get("weights", "qwen2.5-coder-1.5b") == cfg.teacher.weights \
                and teacher.get("gguf") == (str(cfg.teacher.gguf) if cfg.teacher.gguf else None)
        mtime = result.stat().st_mtime
        if same and (newest is None or mtime > newest[0]):
            newest = (mtime, llm / tokens, f"measured in {result.parent.name}")
    return None if newest is None else (newest[1], newest[2])

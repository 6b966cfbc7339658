"""What a run will ask of its teacher, before it starts (`evokd run CONFIG --dry-run`).

One generation round's calls are what the method's `estimate` writes down with `Asks`: rendered
from the real templates on the seed data, their input tokens counted, and each reply sized by what
it holds (a summary, n texts as long as the seed texts, a label per text), never above
`llm.max_tokens`. Rounds the budget buys
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
from typing import TYPE_CHECKING, Any

from evokd.agents.prompts import PromptSet, task_variables
from evokd.config import RunConfig
from evokd.core.bio import describe_entities
from evokd.core.records import Sample
from evokd.graph.context import TaskData

if TYPE_CHECKING:
    from evokd.graph.method import Method

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
        if self.teacher_minutes is not None and self.seconds_per_token:
            out.append(f"teacher time: about {self.teacher_minutes:.1f} min at {1 / self.seconds_per_token:.0f} "
                       f"tokens/s ({self.speed_source}); student training comes on top")
        else:
            out.append("teacher time: unknown (no earlier run with this teacher in runs_dir)")
        return out + self.notes


@dataclass
class Asks:
    """What one generation round asks of the teacher, as a method's `estimate` writes it down: each
    call's prompt rendered from the real templates on the seed data (the samples an Analyst is
    shown, the texts a Verifier labels: seed texts standing in for generated ones of the same
    length), its input tokens counted, its reply sized (never above llm.max_tokens)."""

    cfg: RunConfig
    prompts: PromptSet
    seed: list[Sample]
    count: Callable[[str], int]
    replies: ReplySizes
    message_overhead: int
    method_data: Any = None  # what the method's `prepare` loaded (the pool method: its texts)
    calls: list[CallEstimate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # lines the method adds to what --dry-run prints

    def __post_init__(self) -> None:
        task, seed = self.cfg.task, self.seed
        self.loop = self.cfg.loop
        self.variables = task_variables(task)
        # Texts asked per round (evokd: per label).
        self.n = self.loop.n_hard + self.loop.n_easy
        self.text_tokens = max(1, round(sum(self.count(s.text) for s in seed) / len(seed)))
        # A reply: JSON keys and quotes around each item, then the items.
        self.per_text = round(self.text_tokens * self.replies.text_scale) + self.replies.per_text_extra
        self.per_label = self.replies.per_label if task.type == "classification" else self.replies.per_label + 2 + \
            8 * max(1, round(sum(len([t for t in s.tags or [] if t.startswith("B-")]) for s in seed) / len(seed)))
        # Dev scores as an Analyst is shown them.
        self.metrics = {"f1": 0.5, "per_label": dict.fromkeys(task.labels, 0.5),
                        "confused": [{"gold": task.labels[0], "predicted": task.labels[1], "count": 1}],
                        "errors": {"missed": 1, "spurious": 1} if task.type == "ner" else None}

    def messages(self, agent: str, **variables: object) -> list[dict[str, str]]:
        """An agent's messages, rendered with the variables every agent provides and these."""
        return self.prompts.messages(agent, **self.variables, **variables)[0]

    def tokens(self, messages: list[dict[str, str]]) -> int:
        return sum(self.count(str(m["content"])) + self.message_overhead for m in messages)

    def reply(self, tokens: int) -> int:
        """A reply's tokens, capped as the teacher caps it (llm.max_tokens)."""
        return min(tokens, self.cfg.llm.max_tokens)

    def call(self, node: str, k: float, messages: list[dict[str, str]], out: int, extra_in: int = 0) -> None:
        """`k` calls a round (a share when not every round makes it) of `messages`, each replied
        `out` tokens; `extra_in`: input beyond the messages (a conversation's earlier reply)."""
        if k > 0:
            self.calls.append(CallEstimate(node, k, self.tokens(messages) + extra_in, self.reply(out)))

    def round_tokens(self) -> float:
        """The tokens (in and out) of the calls written down so far."""
        return sum(c.calls * (c.tokens_in + c.tokens_out) for c in self.calls)

    def records(self, n: int) -> list[dict[str, Any]]:
        """n records shaped as a probe shows them to an Analyst, cycled from the seed samples."""
        out = []
        for i in range(n):
            s = self.seed[i % len(self.seed)]
            if s.tokens is not None:
                out.append({"text": s.text, "tokens": s.tokens, "tags": s.tags,
                            "predicted": ["O"] * len(s.tokens),
                            "gold_entities": describe_entities(s.tokens, s.tags),
                            "predicted_entities": describe_entities(s.tokens, ["O"] * len(s.tokens))})
            else:
                out.append({"text": s.text, "label": s.label, "predicted": s.label})
        return out


def estimate(cfg: RunConfig, data: TaskData, prompts: PromptSet, method: Method,
             count: Callable[[str], int] = approx_tokens, *, speed: bool = True, replies: ReplySizes = ReplySizes(),
             message_overhead: int = MESSAGE_OVERHEAD, method_data: Any = None) -> Estimate:
    """The calls, tokens, money and rounds of a run of `cfg` (whose loop.method is `method`) on
    `data` (see the module doc). `count` is the teacher's tokenizer (characters / 4 by default) and
    `message_overhead` what its chat template adds per message; `replies` sizes the replies;
    `speed` looks for a measured speed; `method_data` is what the method's `prepare` loaded."""
    asks = asks_for(cfg, data, prompts, count, replies, message_overhead, method_data)
    method.estimate(asks)
    loop = cfg.loop
    est = Estimate(method=method.name, calls=asks.calls, rounds=loop.max_rounds, limit="max_rounds",
                   price_in_per_1k=loop.price_in_per_1k, price_out_per_1k=loop.price_out_per_1k, notes=asks.notes)
    _limit_rounds(est, cfg)
    measured = measured_speed(cfg) if speed else None
    if measured is not None:
        est.seconds_per_token, est.speed_source = measured
    return est


def asks_for(cfg: RunConfig, data: TaskData, prompts: PromptSet, count: Callable[[str], int] = approx_tokens,
             replies: ReplySizes = ReplySizes(), message_overhead: int = MESSAGE_OVERHEAD,
             method_data: Any = None) -> Asks:
    """An empty `Asks` for a method to write its round down in (a method sizing its own rounds by
    the estimate, as evokd's `loop.rounds_to_fit`, uses one too)."""
    return Asks(cfg, prompts, data.seed, count, replies, message_overhead, method_data)


def _limit_rounds(est: Estimate, cfg: RunConfig) -> None:
    """Rounds the budgets buy: a round starts while the rest pays for one (forecast_budget: every
    estimated round costs the same, so the loop's mean-or-last-round rule is this), else while
    anything is left (its last calls then stop part-way)."""
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

"""The Verifier reading label probabilities (`loop.verifier = "probabilities"`, classification).

Instead of a JSON object of labels, the teacher answers each text with its label in a word, and the
label's probability is read from the token log-probabilities at the position where it names it
(GPT3Mix's soft labels): the top alternatives there, renormalised over the label set. Texts go in
batches of numbered lines ("1: label" per line, each read at its label's position); a text whose
line cannot be found in the reply is asked again alone. The shared instructions are the system
message, the same for every request, so the server's prompt cache serves them.

Measured on 200 SST-2 test sentences with the embedded 1.5B teacher: batches of 8, 0.915 right at
34 counted tokens a text, against 0.66 for the JSON Verifier on the demo's hard sentences
(docs/benchmarks/verifier_accuracy.md).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from evokd.agents.client import BudgetExhausted, NoLogprobs, TeacherClient
from evokd.agents.prompts import PromptSet, task_variables
from evokd.agents.verifier import Labelled, Verdict
from evokd.config import TaskConfig
from evokd.core.records import LLMCall, TokenChoice

log = logging.getLogger("evokd.verifier")

TOP = 10  # alternatives asked at each position (OpenAI allows up to 20)
Distribution = dict[str, float]  # label -> probability, summing to 1


def _key(token: str) -> str:
    return token.strip().strip("\"'`*").casefold()


def label_distribution(top: Sequence[tuple[str, float]], labels: Sequence[str],
                       min_mass: float = 0.5) -> Distribution | None:
    """p(label) from the alternatives at the label's first token. A token counts for the one label
    it begins (case, quotes and a leading space forgiven; a token beginning several labels counts
    for none). None when less than `min_mass` of the probability went to tokens that begin a label:
    the teacher was not naming a label there."""
    mass = dict.fromkeys(labels, 0.0)
    for token, logprob in top:
        key = _key(token)
        if not key:
            continue
        hits = [label for label in labels if label.casefold().startswith(key)]
        if len(hits) == 1:
            mass[hits[0]] += math.exp(logprob)
    total = sum(mass.values())
    if total < min_mass:
        return None
    return {label: m / total for label, m in mass.items()}


_NUMBERED = re.compile(r"(?:^|\n)\s*(\d+)\s*[:.)]\s*$")


def numbered_positions(tokens: Sequence[str]) -> dict[int, int]:
    """Item number (1-based) -> index of the token that starts its answer, in a reply of lines
    "1: label"; the first answer to a number wins."""
    positions: dict[int, int] = {}
    text, expect = "", None
    for i, token in enumerate(tokens):
        if expect is not None and token.strip():
            positions.setdefault(expect, i)
            expect = None
        text += token
        if (match := _NUMBERED.search(text)) is not None:
            expect = int(match.group(1))
    return positions


def first_word(choices: Sequence[TokenChoice]) -> int | None:
    """The index of a one-text reply's first non-blank token."""
    return next((i for i, choice in enumerate(choices) if choice.token.strip()), None)


def distinguishable(labels: Sequence[str]) -> bool:
    """Whether each label can be told from the others by its first letters (no label is a prefix
    of another): else the first token does not say which label the teacher names."""
    folded = [label.casefold() for label in labels]
    return not any(a != b and b.startswith(a) for a in folded for b in folded)


@dataclass
class Read:
    """Each text's label distribution (None: the teacher named no label for it, or it was not asked:
    `asked[i]` false once the budget was spent) and the calls."""

    distributions: list[Distribution | None]
    asked: list[bool]
    calls: list[LLMCall] = field(default_factory=list)


def read_labels(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, texts: list[str], *, round: int,
                batch_size: int) -> Read:
    """The teacher's label distribution for each text, asked until the budget is spent. Raises
    NoLogprobs (from the client) when the endpoint returns no token log-probabilities."""
    # A newline inside a text must not forge another numbered line.
    texts = [" ".join(t.split()) for t in texts]
    read = Read([None] * len(texts), [False] * len(texts))
    try:
        _read(teacher, prompts, task, texts, round, batch_size, read)
    except BudgetExhausted:
        pass  # the texts not asked yet say so (`asked`)
    except NoLogprobs as exc:
        exc.calls = [*read.calls, *exc.calls]
        raise
    return read


def confirm_by_probability(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, texts: list[str],
                           intended: list[str], *, round: int, batch_size: int, threshold: float) -> Labelled:
    """The default loop's Verifier with label probabilities: a text is kept when the label it was
    written for has at least `threshold`; each verdict carries that probability (`p`)."""
    def judge(i: int, distribution: Distribution) -> Verdict:
        label = intended[i]
        p = distribution.get(label, 0.0)
        said = max(distribution, key=lambda name: distribution[name])
        reason = None if p >= threshold else \
            f"the Verifier gives {label!r} p={p:.2f} (< {threshold}), {said!r} p={distribution[said]:.2f}"
        return Verdict(label=label, p=round_p(p), reason=reason)

    return judged(read_labels(teacher, prompts, task, texts, round=round, batch_size=batch_size), judge)


def label_by_probability(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, texts: list[str], *,
                         round: int, batch_size: int, threshold: float) -> Labelled:
    """Blind labelling with label probabilities (the pool's Verifier): each text gets its most likely
    label, kept when that label has at least `threshold`; each verdict carries its probability."""
    def judge(i: int, distribution: Distribution) -> Verdict:
        label = max(distribution, key=lambda name: distribution[name])
        p = distribution[label]
        reason = None if p >= threshold else f"the Verifier is unsure: {label!r} p={p:.2f} (< {threshold})"
        return Verdict(label=label, p=round_p(p), reason=reason)

    return judged(read_labels(teacher, prompts, task, texts, round=round, batch_size=batch_size), judge)


def judged(read: Read, judge: Callable[[int, Distribution], Verdict]) -> Labelled:
    """A verdict per text: `judge(i, distribution)` for each text the teacher labelled, else why not."""
    verdicts = []
    for i, (distribution, asked) in enumerate(zip(read.distributions, read.asked, strict=True)):
        if not asked:
            verdicts.append(Verdict(reason="teacher budget spent before labelling"))
        elif distribution is None:
            verdicts.append(Verdict(reason="the Verifier named no label"))
        else:
            verdicts.append(judge(i, distribution))
    return Labelled(verdicts, read.calls)


def round_p(p: float) -> float:
    return float(f"{p:.4g}")  # four figures: samples.jsonl stays readable


def _read(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, texts: list[str], round: int,
          batch_size: int, read: Read) -> None:
    distributions, calls = read.distributions, read.calls
    for start in range(0, len(texts), batch_size):
        chunk = list(range(start, min(start + batch_size, len(texts))))
        if len(chunk) > 1:
            call = _ask(teacher, prompts, task, [texts[i] for i in chunk], round=round)
            calls.append(call)
            choices = call.logprobs or []
            positions = numbered_positions([c.token for c in choices])
            for number, i in enumerate(chunk, start=1):
                if number in positions:
                    distributions[i] = label_distribution(choices[positions[number]].top, task.labels)
                    read.asked[i] = True
        for i in chunk:  # a text the batch's reply did not label, or a batch of one: asked alone
            if distributions[i] is None:
                call = _ask(teacher, prompts, task, [texts[i]], round=round)
                calls.append(call)
                at = first_word(call.logprobs or [])
                if at is not None:
                    distributions[i] = label_distribution((call.logprobs or [])[at].top, task.labels)
            read.asked[i] = True


def _ask(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, texts: list[str], *, round: int) -> LLMCall:
    messages, template = prompts.messages("verifier_probs", **task_variables(task), texts=texts)
    longest = max(len(label) for label in task.labels)
    # Room for "12: label" per line; a label is a few tokens at most, a token one character at least.
    max_tokens = 4 + (len(texts) * (6 + min(longest, 12)) if len(texts) > 1 else min(longest, 12))
    return teacher.ask_tokens(messages, round=round, node="verifier", max_tokens=max_tokens, top=TOP,
                              prompt_file=template.name, prompt_sha256=template.sha256)


def reads_probabilities(task: TaskConfig, way: str | None, default: str = "json") -> bool:
    """Whether the Verifier reads label probabilities: `loop.verifier` (`way`), or where it is unset
    the method's `default`; NER always answers in JSON."""
    return task.type == "classification" and (way or default) == "probabilities"


def or_json(by_probability: Callable[[], Labelled], by_json: Callable[[], Labelled]) -> Labelled:
    """The probability Verifier's labels; where the endpoint gives no log-probabilities, a warning and
    the JSON Verifier's instead, with the failed request's calls kept (they were paid for)."""
    try:
        return by_probability()
    except NoLogprobs as exc:
        log.warning("%s; the Verifier answers in JSON instead (loop.verifier = \"json\")", exc)
        fallback = by_json()
        return Labelled(fallback.verdicts, [*exc.calls, *fallback.calls])

"""Generator: in the Analyst's conversation, writes hard and easy inputs (no labels).

`write_targeted` is the default loop's Generator instead (docs/method.md): a fresh call per label
for hard and easy texts written for that label.

With `loop.separate_verifier = false` (an ablation) it writes labelled texts instead (a label, or
an entity list for NER), and the graph's `self_check` applies the Verifier's rules to its labels."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, create_model

from evokd.agents.ask import Answer, ask
from evokd.agents.client import Message, TeacherClient, counted, one_of
from evokd.agents.prompts import PromptSet, task_variables
from evokd.config import TaskConfig
from evokd.core.records import LLMCall
from evokd.core.text import normalise


# The reply schemas are models built when asked for (their counts, labels and keys vary): typed Any,
# as their fields (hard, easy) are known to the code that reads them, not to the type checker.
def reply_schema(n_hard: int, n_easy: int) -> Any:
    """Hard and easy texts. The counts are in the JSON schema, so a grammar-constrained backend
    returns exactly that many; validation is lenient, since a short list is topped up instead."""

    return create_model("GeneratorReply",
                        hard=counted(str, n_hard, "inputs the student will likely get wrong"),
                        easy=counted(str, n_easy, "inputs the student will likely get right"))


def labelled_schema(task_type: str, labels: list[str], n_hard: int, n_easy: int) -> Any:
    """Hard and easy texts, each with its label (or its entities for NER): the Generator labels
    its own texts when there is no separate Verifier."""
    item = labelled_item(task_type, labels)
    return create_model("LabelledGeneratorReply",
                        hard=counted(item, n_hard, "inputs the student will likely get wrong, labelled"),
                        easy=counted(item, n_easy, "inputs the student will likely get right, labelled"))


def labelled_item(task_type: str, labels: list[str]) -> Any:
    """A text with its label, or (NER) a sentence with its entities."""
    if task_type == "ner":
        entity = create_model("Entity", text=(str, ...), type=(one_of(labels), ...))
        return create_model("LabelledSentence", text=(str, ...), entities=(list[entity], Field(default_factory=list)))
    # Default None without "| None", as in the Verifier: a missing label is a per-text rejection.
    return create_model("LabelledText", text=(str, ...), label=(one_of(labels), Field(None)))


def annotation_of(item: Any) -> Any:
    """A labelled item's annotation as plain JSON: the label, or the entity list for NER."""
    if hasattr(item, "entities"):
        return [e.model_dump() for e in item.entities]
    return item.label


def take_new(items: list[Any], want: int, seen: set[str]) -> list[dict[str, Any]]:
    """Up to `want` stripped, non-empty texts not seen before (seen is updated), as candidates:
    {"text"} for plain texts, {"text", "annotation"} for labelled items."""
    out: list[dict[str, Any]] = []
    for item in items:
        text = " ".join(str(item if isinstance(item, str) else item.text).split())
        key = normalise(text)
        if len(out) == want:
            break
        if key and key not in seen:
            seen.add(key)
            out.append({"text": text} if isinstance(item, str) else {"text": text, "annotation": annotation_of(item)})
    return out


@dataclass
class Generated:
    # {"text", "intent"} (+ "annotation" when labelled), hard ones first.
    candidates: list[dict[str, Any]]
    conversation: list[Message]
    calls: list[LLMCall] = field(default_factory=list)


def generate(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, *, round: int,
             conversation: list[Message], n_hard: int, n_easy: int, max_top_ups: int,
             labelled: bool = False) -> Generated:
    """The Generator's turn(s) in the Analyst's conversation: up to n_hard + n_easy new texts."""
    agent = "generator_labelled" if labelled else "generator"
    conversation = list(conversation)
    hard: list[dict[str, Any]] = []
    easy: list[dict[str, Any]] = []
    seen: set[str] = set()
    calls: list[LLMCall] = []
    # A small teacher often returns fewer items than asked: ask again for what is missing, bounded.
    for attempt in range(max_top_ups + 1):
        need_hard, need_easy = max(n_hard - len(hard), 0), max(n_easy - len(easy), 0)
        if need_hard == 0 and need_easy == 0:
            break
        messages, template = prompts.messages(agent, **task_variables(task), round=round,
                                              n_hard=need_hard, n_easy=need_easy)
        user = messages[-1]  # the generator speaks in the analyst's conversation, no new system prompt
        schema = labelled_schema(task.type, task.labels, need_hard, need_easy) if labelled \
            else reply_schema(need_hard, need_easy)
        answer = ask(teacher, [*conversation, user], schema, round=round,
                     node="generator" if attempt == 0 else "generator-top-up", template=template,
                     log_as="generator")
        calls += answer.calls
        if answer.budget_spent:
            break
        if answer.reply is None:
            # Bounded retries are spent; keep what earlier attempts gave and let the round go on.
            continue
        conversation = answer.conversation
        hard += take_new(answer.reply.hard, need_hard, seen)
        easy += take_new(answer.reply.easy, need_easy, seen)
    candidates = [{**c, "intent": "hard"} for c in hard] + [{**c, "intent": "easy"} for c in easy]
    return Generated(candidates, conversation, calls)


def reply_keys(label: str) -> tuple[str, str]:
    """The default loop's reply keys for a label's hard and easy texts. Naming the label in the key
    keeps a small teacher on it: asked for "hard" and "easy" lists of negative texts, the 1.5B
    teacher wrote its "easy" ones as positive; asked for "tricky_negative" and "plain_negative", it
    kept the label (docs/method.md)."""
    slug = re.sub(r"\W+", "_", label).strip("_") or "label"
    return f"tricky_{slug}", f"plain_{slug}"


def targeted_schema(task_type: str, label: str, n_hard: int, n_easy: int) -> Any:
    """Hard and easy texts of one label; for NER, sentences with their entities listed."""
    item: Any = str
    if task_type == "ner":
        entity = create_model("Entity", text=(str, ...), type=(str, ...))
        item = create_model("AnnotatedSentence", text=(str, ...), entities=(list[entity], Field(default_factory=list)))
    hard_key, easy_key = reply_keys(label)
    return create_model("TargetedReply", hard=counted(item, n_hard, alias=hard_key),
                        easy=counted(item, n_easy, alias=easy_key))


def write_targeted(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, *, round: int, label: str,
                   weaknesses: list[str], examples: list[dict[str, Any]], n_hard: int, n_easy: int,
                   style: list[str] | None = None) -> Answer[list[dict[str, Any]]]:
    """The default loop's Generator: a fresh call for `n_hard` hard and `n_easy` easy texts of one
    label, given the Analyst's weaknesses and the student's hardest texts of that label to vary, and
    (`style`) the attributes drawn for the request.
    The answer's reply is the candidates ({text, intent, annotation, label}: the annotation is the
    label, or for NER the entity list the Generator wrote)."""
    messages, template = prompts.messages("targeted", **task_variables(task), round=round, label=label,
                                          weaknesses=weaknesses, examples=examples, n_hard=n_hard,
                                          n_easy=n_easy, keys=reply_keys(label), style=style or [])
    answer = ask(teacher, messages, targeted_schema(task.type, label, n_hard, n_easy), round=round,
                 node="generator", template=template)
    if answer.reply is None:
        return Answer(None, answer.conversation, answer.calls, answer.budget_spent, answer.error)
    candidates: list[dict[str, Any]] = []
    seen: set[str] = set()
    for intent, items, want in (("hard", answer.reply.hard, n_hard), ("easy", answer.reply.easy, n_easy)):
        for item in take_new(items, want, seen):
            annotation = item.get("annotation", label)
            candidates.append({"text": item["text"], "intent": intent, "annotation": annotation, "label": label})
    return Answer(candidates, answer.conversation, answer.calls)

"""The scripted teachers of the tests, in one place, and how they pick a reply.

A scripted teacher answers by the reply schema the call asks for (the LLMCall's `schema_name`:
`AnalystReply`, `GeneratorReply`, `VerifierReply`, `NerVerifierReply`, `LabelledGeneratorReply`,
`TextsReply`, `AugmenterReply`), never by the prompt's wording, so rewording a template does not
break a graph test. `ScriptedChatModel` hands the name to a script that takes a `schema` argument;
tests/fake_teacher.py reads it from the request's `response_format`. Each schema is answered by
the method named after it: `AnalystReply` -> `analyst_reply(messages)`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

POSITIVE = re.compile(r"\b(good|great|love|loved|superb|delight)", re.I)
GAZETTEER = {"Maria Lopez": "PER", "Oslo": "LOC", "Nordic Bank": "ORG", "Olympics": "MISC", "Tom Reed": "PER"}


def handler_name(schema: str) -> str:
    """`AnalystReply` -> `analyst_reply`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", schema).lower()


def numbered_texts(messages: list) -> list[str]:
    """The texts a Verifier request lists, one numbered line each ("1. ...")."""
    return [t for _, t in re.findall(r"^(\d+)\. (.*)$", str(messages[-1].content), re.M)]


class ScriptedTeacher:
    """Dispatches a request to the method named after the reply schema it asks for."""

    def __call__(self, messages: list, schema: str | None = None) -> str | Exception:
        handler = getattr(self, handler_name(schema), None) if schema else None
        if handler is None:
            raise AssertionError(f"{type(self).__name__} has no reply for {schema!r}: "
                                 f"{str(messages[-1].content)[:200]}")
        return handler(messages)


class SentimentTeacher(ScriptedTeacher):
    """A scripted teacher that behaves like a sensible one: it analyses, writes distinct sentences
    each round, and labels by keyword. Tests tweak its attributes to inject faults."""

    def __init__(self) -> None:
        self.round = 0
        self.generator_reply_text: str | None = None
        self.verifier_reply_text: str | None = None
        self.label_fn: Callable[[list[str]], list[str]] | None = None
        self.seen_verifier_prompts: list[str] = []

    def analyst_reply(self, messages: list) -> str:
        self.round += 1
        return json.dumps({"summary": f"round {self.round}: struggles with negation and sarcasm"})

    def generator_reply(self, messages: list) -> str:
        if self.generator_reply_text is not None:
            return self.generator_reply_text
        r = self.round
        return json.dumps({
            "hard": [f"Not a good film, round {r} take one.", f"I loved nothing in round {r}."],
            "easy": [f"A great and superb delight {r}.", f"Awful and boring, a waste {r}."],
        })

    def verifier_reply(self, messages: list) -> str:
        self.seen_verifier_prompts.append(str(messages[-1].content))
        if self.verifier_reply_text is not None:
            return self.verifier_reply_text
        texts = numbered_texts(messages)
        labels = self.label_fn(texts) if self.label_fn else [
            "positive" if POSITIVE.search(t) and "Not" not in t and "nothing" not in t else "negative"
            for t in texts]
        return json.dumps({str(i): label for i, label in enumerate(labels, start=1)})


class NerTeacher(ScriptedTeacher):
    """Entities from a gazetteer; one made-up organisation that is not in its sentence."""

    def __init__(self) -> None:
        self.round = 0

    def analyst_reply(self, messages: list) -> str:
        self.round += 1
        return json.dumps({"summary": "misses organisations named after places"})

    def generator_reply(self, messages: list) -> str:
        r = self.round
        return json.dumps({
            "hard": [f"Nordic Bank opened in Oslo on day {r} .", f"Maria Lopez and Ghost Corp met {r} times ."],
            "easy": [f"Tom Reed won at the Olympics in year {r} ."],
        })

    def ner_verifier_reply(self, messages: list) -> str:
        sentences = {}
        for t in numbered_texts(messages):
            entities = [{"text": name, "type": kind} for name, kind in GAZETTEER.items() if name in t]
            if "Ghost Corp" in t:
                entities.append({"text": "Ghost Corporation", "type": "ORG"})  # not in the text
            sentences[str(len(sentences) + 1)] = entities
        return json.dumps(sentences)

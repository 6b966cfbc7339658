"""The scripted teachers of the tests, in one place, and how they pick a reply.

A scripted teacher answers by the reply schema the call asks for (the LLMCall's `schema_name`:
`AnalystReply`, `GeneratorReply`, `VerifierReply`, `NerVerifierReply`, `LabelledGeneratorReply`,
`TextsReply`, `AugmenterReply`), never by the prompt's wording, so rewording a template does not
break a graph test. `ScriptedChatModel` hands the name to a script that takes a `schema` argument;
tests/fake_teacher.py reads it from the request's `response_format`. Each schema is answered by
the method named after it: `AnalystReply` -> `analyst_reply(messages)`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

POSITIVE = re.compile(r"\b(good|great|love|loved|superb|delight)", re.I)
GAZETTEER = {"Maria Lopez": "PER", "Oslo": "LOC", "Nordic Bank": "ORG", "Olympics": "MISC", "Tom Reed": "PER"}


def handler_name(schema: str) -> str:
    """`AnalystReply` -> `analyst_reply`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", schema).lower()


def reply_keys(messages: list) -> tuple[str, str]:
    """The default loop's Generator keys ("tricky_<label>", "plain_<label>"), as its prompt shows them;
    a prompt that asks for plain texts only has no tricky key, and the reply none either ("-")."""
    keys = re.findall(r'"((?:tricky|plain)_\w+)"', str(messages[-1].content))
    easy = next(k for k in keys if k.startswith("plain_"))
    return next((k for k in keys if k.startswith("tricky_")), "-"), easy


def without_unasked(reply: dict) -> str:
    return json.dumps({k: v for k, v in reply.items() if k != "-"})


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

    def diagnosis_reply(self, messages: list) -> str:
        return json.dumps({"weaknesses": ["negated praise", "sarcasm"]})

    def targeted_reply(self, messages: list) -> str:
        """Texts written for the label in the keys: the negative ones worded so the keyword Verifier
        agrees, except a hard one it will read as positive (a disagreement to reject)."""
        self.targeted_calls = getattr(self, "targeted_calls", 0) + 1
        hard, easy = reply_keys(messages)
        n = self.targeted_calls
        if easy.endswith("positive"):
            return without_unasked({hard: [f"A great cast lifts plot number {n}.", f"Loved every scene of story {n}."],
                                    easy: [f"A superb delight from start to end {n}.", f"Great fun, reel {n}."]})
        return without_unasked({hard: [f"Not a good film in week {n}.", f"A great waste of evening {n}."],
                                easy: [f"Awful and boring picture {n}.", f"Dull plot and weak acting {n}."]})

    def verifier_reply(self, messages: list) -> str:
        self.seen_verifier_prompts.append(str(messages[-1].content))
        if self.verifier_reply_text is not None:
            return self.verifier_reply_text
        texts = numbered_texts(messages)
        labels = self.label_fn(texts) if self.label_fn else [
            "positive" if POSITIVE.search(t) and "Not" not in t and "nothing" not in t else "negative"
            for t in texts]
        return json.dumps({str(i): label for i, label in enumerate(labels, start=1)})


SUBJECTS = ["film", "hotel", "concert", "novel", "album", "dinner", "series", "play", "museum", "game", "cafe",
            "show"]
THINGS = ["ending", "view", "cast", "plot", "service", "soundtrack", "menu", "pacing", "staff", "finale", "script",
          "lighting"]
DULL = ["dull", "weak", "bland", "tired", "clumsy"]


class StatelessSentimentTeacher(SentimentTeacher):
    """SentimentTeacher whose replies depend on the request alone: a request asked again (after a
    kill, say) gets the reply it got before, as from a seeded server. The words are drawn from the
    request's hash, so rounds get varied texts that near-duplicate checks keep. The soak test's teacher."""

    @staticmethod
    def _draw(messages: list) -> list[int]:
        digest = hashlib.sha256("\x1e".join(str(m.content) for m in messages).encode()).digest()
        return list(digest)

    def analyst_reply(self, messages: list) -> str:
        return json.dumps({"summary": "struggles with negation and sarcasm"})

    def generator_reply(self, messages: list) -> str:
        d = self._draw(messages)
        subject, thing, dull = SUBJECTS[d[0] % 12], THINGS[d[1] % 12], DULL[d[2] % 5]
        return json.dumps({
            "hard": [f"Not a good {subject}, the {thing} was {dull}.", f"Despite the {thing}, a great {subject}."],
            "easy": [f"A superb {subject} with a lovely {thing}.", f"A {dull} {subject} with a {dull} {thing}."],
        })

    def targeted_reply(self, messages: list) -> str:
        hard, easy = reply_keys(messages)
        d = self._draw(messages)
        s1, s2, t1, t2 = SUBJECTS[d[0] % 12], SUBJECTS[d[1] % 12], THINGS[d[2] % 12], THINGS[d[3] % 12]
        dull = DULL[d[4] % 5]
        if easy.endswith("positive"):
            return without_unasked({hard: [f"Despite the {t1}, a great {s1}.", f"Loved the {t2} of this {s2}."],
                                    easy: [f"A superb {s1} with a lovely {t2}.", f"Great {t1}, great {s2}."]})
        return without_unasked({hard: [f"Not a good {s1}, the {t1} was {dull}.", f"A great waste of a {s2}."],
                                easy: [f"A {dull} {s2} with a {dull} {t2}.", f"The {t1} of the {s1} was {dull}."]})


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

    def diagnosis_reply(self, messages: list) -> str:
        return json.dumps({"weaknesses": ["organisations named after places"]})

    def targeted_reply(self, messages: list) -> str:
        """Per type: sentences with entities listed; one lists an entity the Verifier tags otherwise."""
        self.round += 1
        hard, easy = reply_keys(messages)
        r = self.round
        return without_unasked({
            hard: [{"text": f"Nordic Bank opened in Oslo on day {r} .",
                    "entities": [{"text": "Nordic Bank", "type": "ORG"}, {"text": "Oslo", "type": "LOC"}]},
                   {"text": f"Tom Reed joined Nordic Bank in week {r} .",
                    "entities": [{"text": "Tom Reed", "type": "ORG"}, {"text": "Nordic Bank", "type": "ORG"}]}],
            easy: [{"text": f"Maria Lopez ran at the Olympics in year {r} .",
                    "entities": [{"text": "Maria Lopez", "type": "PER"}, {"text": "Olympics", "type": "MISC"}]}],
        })

    def sentences_reply(self, messages: list) -> str:
        """static for NER: sentences with their entities, one listing an entity not in its text."""
        self.round += 1
        r = self.round
        return json.dumps({"sentences": [
            {"text": f"Maria Lopez visited Oslo in month {r} .",
             "entities": [{"text": "Maria Lopez", "type": "PER"}, {"text": "Oslo", "type": "LOC"}]},
            {"text": f"Nordic Bank grew in year {r} .", "entities": [{"text": "Nordic Bank Group", "type": "ORG"}]},
        ]})

    def texts_reply(self, messages: list) -> str:
        """augment for NER: one paraphrase keeps the seed sentence as it is plus words, one loses it."""
        self.round += 1
        seed = re.search(r'^"(.*)"$', str(messages[-1].content), re.M).group(1)
        return json.dumps({"texts": [f"{seed} , said the report {self.round}", f"Nothing named here {self.round} ."]})

    def ner_verifier_reply(self, messages: list) -> str:
        sentences = {}
        for t in numbered_texts(messages):
            entities = [{"text": name, "type": kind} for name, kind in GAZETTEER.items() if name in t]
            if "Ghost Corp" in t:
                entities.append({"text": "Ghost Corporation", "type": "ORG"})  # not in the text
            sentences[str(len(sentences) + 1)] = entities
        return json.dumps(sentences)

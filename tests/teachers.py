"""The scripted teachers of the tests, in one place, and how they pick a reply.

A scripted teacher answers by the reply schema the call asks for (the LLMCall's `schema_name`:
`AnalystReply`, `GeneratorReply`, `VerifierReply`, `NerVerifierReply`, `LabelledGeneratorReply`,
`TextsReply`, `AugmenterReply`; `logprobs` for a reply read with token log-probabilities), never
by the prompt's wording, so rewording a template does not break a graph test. `ScriptedChatModel`
hands the name to a script that takes a `schema` argument; tests/fake_teacher.py reads it from
the request's `response_format`. Each schema is answered by the method named after it:
`AnalystReply` -> `analyst_reply(messages)`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import ClassVar

from evokd.agents.scripted import TokenReply

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
        self.label_p = 0.9  # the probability the Verifier gives its label, read as log-probabilities

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

    def logprobs(self, messages: list) -> TokenReply:
        """The Verifier asked for a label in a word (agents/verifier_probs.py): "1: label" lines for
        numbered texts, else the label alone; the label's token is `label_p` sure of itself."""
        self.seen_verifier_prompts.append(str(messages[-1].content))
        texts = numbered_texts(messages) or [str(messages[-1].content)]
        labels = self.label_fn(texts) if self.label_fn else [
            "positive" if POSITIVE.search(t) and "Not" not in t and "nothing" not in t else "negative"
            for t in texts]
        other = {"positive": " negative", "negative": " positive"}
        tokens: list[dict[str, float]] = []
        for i, label in enumerate(labels, start=1):
            if len(texts) > 1 or numbered_texts(messages):
                tokens += [{str(i): 1.0}, {":": 1.0}]
            tokens.append({f" {label}": self.label_p, other.get(label, " none"): 1 - self.label_p})
            tokens.append({"\n": 1.0})
        return TokenReply(tokens)


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


class FixtureTeacher(ScriptedTeacher):
    """The teacher of the recorded method fixtures (tests/fixtures/methods/): every schema any method
    asks for, and a reply that depends only on the request and on how often that same request was
    asked before, so a resumed run (which re-asks only what its trace lacks) gets the replies the
    uninterrupted run got. Sentiment words make the keyword Verifier disagree now and then."""

    HARD: ClassVar[list[str]] = [
        "Not a good film at all, {t}.", "A great waste of an evening, {t}.", "I loved nothing about it, {t}.",
        "Sadly the superb cast could not save it, {t}."]
    EASY: ClassVar[dict[str, list[str]]] = {
        "positive": ["A superb delight from start to end, {t}.", "Great fun and a lovely cast, {t}."],
        "negative": ["Awful and boring from the first scene, {t}.", "Dull plot and weak acting, {t}."]}
    NER_SENTENCES: ClassVar[list[tuple[str, list[tuple[str, str]]]]] = [
        ("Maria Lopez visited Oslo in spring {t} .", [("Maria Lopez", "PER"), ("Oslo", "LOC")]),
        ("Nordic Bank hired Tom Reed in week {t} .", [("Nordic Bank", "ORG"), ("Tom Reed", "PER")]),
        ("Tom Reed ran at the Olympics in year {t} .", [("Tom Reed", "PER"), ("Olympics", "MISC")]),
        ("Nordic Bank opened in Oslo on day {t} .", [("Nordic Bank", "LOC"), ("Oslo", "LOC")]),
    ]

    def __init__(self) -> None:
        self.asked: dict[str, int] = {}

    def __call__(self, messages: list, schema: str | None = None) -> str | Exception:
        import hashlib

        blob = json.dumps([str(m.content) for m in messages])
        key = hashlib.sha256(blob.encode()).hexdigest()
        self.asked[key] = self.asked.get(key, 0) + 1
        self.tag = f"{key[:4]}{self.asked[key]}"
        return super().__call__(messages, schema)

    def _sentiment(self, text: str) -> str:
        return "positive" if POSITIVE.search(text) and not re.search(r"\b(Not|nothing|waste|Sadly)\b", text) \
            else "negative"

    def analyst_reply(self, messages: list) -> str:
        return json.dumps({"summary": f"struggles with negated praise ({self.tag})"})

    def diagnosis_reply(self, messages: list) -> str:
        return json.dumps({"weaknesses": ["negated praise", f"sarcasm {self.tag}"]})

    def generator_reply(self, messages: list) -> str:
        t = self.tag
        return json.dumps({"hard": [self.HARD[0].format(t=t), self.HARD[3].format(t=t)],
                           "easy": [self.EASY["positive"][0].format(t=t), self.EASY["negative"][1].format(t=t)]})

    def labelled_generator_reply(self, messages: list) -> str:
        t = self.tag
        if "named entities" in str(messages[-1].content):
            items = [{"text": s.format(t=t), "entities": [{"text": e, "type": k} for e, k in ents]}
                     for s, ents in self.NER_SENTENCES[:3]]
            return json.dumps({"hard": items[:2], "easy": items[2:]})
        hard = [{"text": self.HARD[1].format(t=t), "label": "negative"},
                {"text": self.HARD[2].format(t=t), "label": "positive"}]  # mislabelled: kept, as no one checks
        easy = [{"text": self.EASY["positive"][1].format(t=t), "label": "positive"},
                {"text": self.EASY["negative"][0].format(t=t), "label": "mixed"}]  # outside the label set
        return json.dumps({"hard": hard, "easy": easy})

    def targeted_reply(self, messages: list) -> str:
        hard, easy = reply_keys(messages)
        t = self.tag
        if "named entities" in str(messages[-1].content):
            kind = easy.removeprefix("plain_")
            mine = [(s, ents) for s, ents in self.NER_SENTENCES if any(k == kind for _, k in ents)] \
                or self.NER_SENTENCES[:1]
            items = [{"text": s.format(t=f"{t}{i}"), "entities": [{"text": e, "type": k} for e, k in ents]}
                     for i, (s, ents) in enumerate(mine * 2)]
            return without_unasked({hard: items[:2], easy: items[2:3]})
        label = easy.removeprefix("plain_")
        if label == "positive":
            return without_unasked({hard: [self.HARD[3].format(t=t), f"Loved every scene of it, {t}."],
                                    easy: [s.format(t=t) for s in self.EASY["positive"]]})
        return without_unasked({hard: [self.HARD[0].format(t=t), self.HARD[1].format(t=t)],
                                easy: [s.format(t=t) for s in self.EASY["negative"]]})

    def verifier_reply(self, messages: list) -> str:
        texts = numbered_texts(messages)
        return json.dumps({str(i): self._sentiment(text) for i, text in enumerate(texts, start=1)})

    def ner_verifier_reply(self, messages: list) -> str:
        out = {}
        for i, text in enumerate(numbered_texts(messages), start=1):
            out[str(i)] = [{"text": name, "type": kind} for name, kind in GAZETTEER.items() if name in text]
        return json.dumps(out)

    def texts_reply(self, messages: list) -> str:
        """static (classification) and augment: texts of the label asked for, or paraphrases."""
        last, t = str(messages[-1].content), self.tag
        n = int(m.group(1)) if (m := re.search(r"(?:Write|into) (\d+) new", last)) else 1
        if m := re.search(r'whose label is "(\w+)"', last):
            texts = [s.format(t=f"{t}{i}") for i, s in enumerate(self.EASY[m.group(1)] * n)][:n]
            return json.dumps({"texts": texts})
        seed = re.search(r'^(?:Text: )?"(.*)"$', last, re.M).group(1)
        texts = [f"{seed} , said the report {t}", f"Nothing much here {t} ."]
        return json.dumps({"texts": texts[:max(n, 2)]})

    def sentences_reply(self, messages: list) -> str:
        """static for NER: sentences with their entities, one listing an entity not in its text."""
        t = self.tag
        return json.dumps({"sentences": [
            {"text": f"Maria Lopez visited Oslo in month {t} .",
             "entities": [{"text": "Maria Lopez", "type": "PER"}, {"text": "Oslo", "type": "LOC"}]},
            {"text": f"Nordic Bank grew in year {t} .", "entities": [{"text": "Nordic Bank Group", "type": "ORG"}]},
        ]})

    def augmenter_reply(self, messages: list) -> str:
        last, t = str(messages[-1].content), self.tag
        text = re.search(r'Text: "(.*)"', last).group(1)
        label = re.search(r"Label: (\w+)", last).group(1)
        return json.dumps({"examples": [{"text": text.replace(".", "!") + " Really.", "label": label},
                                        {"text": f"Another {label} story about a cabin, {t}.", "label": label}]})

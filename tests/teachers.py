"""Scripted teachers shared by the unit tests and the fake OpenAI-compatible server."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

POSITIVE = re.compile(r"\b(good|great|love|loved|superb|delight)", re.I)


class SentimentTeacher:
    """A scripted teacher that behaves like a sensible one: it analyses, writes distinct sentences
    each round, and labels by keyword. Tests tweak its attributes to inject faults."""

    def __init__(self) -> None:
        self.round = 0
        self.generator_reply: str | None = None
        self.verifier_reply: str | None = None
        self.label_fn: Callable[[list[str]], list[str]] | None = None
        self.seen_verifier_prompts: list[str] = []

    def __call__(self, messages: list) -> str:
        last = str(messages[-1].content)
        if "summarize the patterns" in last:
            self.round += 1
            return json.dumps({"summary": f"round {self.round}: struggles with negation and sarcasm"})
        if "Based on your summary" in last:
            if self.generator_reply is not None:
                return self.generator_reply
            r = self.round
            return json.dumps(
                {
                    "hard": [f"Not a good film, round {r} take one.", f"I loved nothing in round {r}."],
                    "easy": [f"A great and superb delight {r}.", f"Awful and boring, a waste {r}."],
                }
            )
        if "Label each one" in last:
            self.seen_verifier_prompts.append(last)
            if self.verifier_reply is not None:
                return self.verifier_reply
            texts = [t for _, t in re.findall(r"^(\d+)\. (.*)$", last, re.M)]
            labels = self.label_fn(texts) if self.label_fn else [
                "positive" if POSITIVE.search(t) and "Not" not in t and "nothing" not in t else "negative"
                for t in texts]
            return json.dumps({str(i): label for i, label in enumerate(labels, start=1)})
        raise AssertionError(f"unexpected request: {last[:200]}")

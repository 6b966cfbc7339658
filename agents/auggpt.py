"""The augment baseline (AugGPT-style, Dai et al. 2023): each round the teacher paraphrases every
seed example; a paraphrase keeps its seed example's label. No student feedback, no Verifier.

For NER a paraphrase must keep every entity of its seed sentence word for word: the graph aligns
them to BIO tags by the Verifier's span rules, and a paraphrase that lost one is rejected.

The graph applies the same cheap rejection rules as everywhere (empty or over-long, duplicate, a
verbatim copy of a seed example, equal to a dev/test text). A round writes about as many texts as
an EvoKD round asks for (`loop.n_hard + loop.n_easy`), spread over the seed examples, at least one each.
"""

from __future__ import annotations

import math
from typing import Any

from evokd.agents.ask import Answer
from evokd.agents.client import TeacherClient
from evokd.agents.prompts import PromptSet
from evokd.agents.static import write_texts
from evokd.config import TaskConfig


def per_example(n_hard: int, n_easy: int, n_seed: int) -> int:
    """Paraphrases asked per seed example per round."""
    return max(1, math.ceil((n_hard + n_easy) / max(n_seed, 1)))


def paraphrase(teacher: TeacherClient, prompts: PromptSet, task: TaskConfig, *, round: int, example: dict[str, Any],
               n: int) -> Answer[Any]:
    """n paraphrases of one seed example (a SampleRecord dict)."""
    return write_texts(teacher, prompts, task, agent="augment", round=round, n=n, example=example)

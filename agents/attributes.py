"""Attributes a Generator request asks its texts to have (AttrPrompt, Yu et al. 2023): texts written
for one label in one prompt read alike, so each request draws one value of each of the task's
attributes (task.attributes: length, register, aspect, ...) and the prompt asks for that kind of text.
"""

from __future__ import annotations

import random

# Attributes that fit any task's texts, as a --set value for the benchmark's +attributes rows (a
# user's task names its own, which fit it better: aspects, topics, who is writing).
GENERIC_ATTRIBUTES = ('{length = ["a few words", "one short sentence", "one long sentence", "two or three sentences"], '
                      'register = ["casual", "formal", "plain", "vivid"]}')


def draw(attributes: dict[str, list[str]], *, seed: int, round: int, label: str) -> list[str]:
    """One value of each attribute, as "name: value", the same for the same seed, round and label."""
    rng = random.Random(f"{seed}/{round}/{label}")
    return [f"{name}: {rng.choice(values)}" for name, values in attributes.items()]

"""The augment baseline (AugGPT-style, Dai et al. 2023): each round the teacher paraphrases every
seed example; a paraphrase keeps its seed example's label. No student feedback, no Verifier.

The same cheap rejection rules as everywhere apply (empty or over-long, duplicate, a verbatim copy
of a seed example, equal to a dev/test text). A round writes about as many texts as an EvoKD round
asks for (`loop.n_hard + loop.n_easy`), spread over the seed examples, at least one each.
"""

from __future__ import annotations

import math
from typing import Any

from langgraph.runtime import Runtime

from evokd.agents.static import ask_for_texts
from evokd.graph.context import Context
from evokd.graph.state import RunState


def augment_gen(state: RunState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    loop = ctx.cfg.loop
    seed = [s for s in state.get("samples", []) if s["intent"] == "seed"]
    n = max(1, math.ceil((loop.n_hard + loop.n_easy) / max(len(seed), 1)))
    requests = [(example["label"], {"example": example}) for example in seed]
    return ask_for_texts(state, ctx, agent="augment", method="augment", requests=requests, n=n)

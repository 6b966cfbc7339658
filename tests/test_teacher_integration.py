"""The real embedded teacher: packaged Qwen2.5-Coder-0.5B weights behind llama_cpp.server.

Uses the default weight cache on purpose, so that only the first run pays for assembly.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from evokd.teacher import WEIGHTS, TeacherError, TeacherServer, assemble_weights

pytestmark = pytest.mark.integration

SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "label": {"type": "string", "enum": ["positive", "negative"]},
    },
    "required": ["text", "label"],
}


class Review(BaseModel):
    """The schema above as a pydantic model: validating against it checks the reply matches."""

    text: str
    label: Literal["positive", "negative"]


def _chat(base_url: str, payload: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    # No proxy for loopback, as in the module under test.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=300) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def small_gguf() -> Path:
    pytest.importorskip("llama_cpp", reason='needs pip install "evokd[local-small]"')
    try:
        return assemble_weights(WEIGHTS["qwen2.5-coder-0.5b"])
    except TeacherError as exc:
        pytest.skip(str(exc))


def test_real_server_returns_schema_constrained_json(small_gguf: Path, tmp_path: Path) -> None:
    server = TeacherServer(small_gguf, tmp_path, n_ctx=2048, startup_timeout=300)
    with server:
        reply = _chat(
            server.base_url,
            {
                "model": server.model_alias,
                "temperature": 0.2,
                "max_tokens": 200,
                "messages": [
                    {"role": "system", "content": "You answer with one JSON object and nothing else."},
                    {"role": "user", "content": "Write a one-sentence movie review and its sentiment label."},
                ],
                "response_format": {"type": "json_object", "schema": SCHEMA},
            },
        )
    assert server.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)  # stopped and reaped
    content = reply["choices"][0]["message"]["content"]
    review = Review.model_validate_json(content)
    assert review.text.strip()


def test_real_server_gives_label_probabilities(small_gguf: Path, tmp_path: Path) -> None:
    """loop.verifier = "probabilities" against llama_cpp.server: every text, batched or asked alone,
    gets a distribution over the labels read from the reply's token log-probabilities."""
    from evokd.agents.client import TeacherClient, make_chat_model
    from evokd.agents.prompts import PromptSet
    from evokd.agents.verifier_probs import read_labels
    from evokd.config import LLMConfig, TaskConfig

    task = TaskConfig(labels=["negative", "positive"], description="the sentiment of reviews")
    texts = ["I loved it, a wonderful and moving film.", "Terrible. I hated every minute of it.",
             "Great food, great service, we will come back!", "Awful, boring and far too long."]
    with TeacherServer(small_gguf, tmp_path, n_ctx=2048, startup_timeout=300) as server:
        cfg = LLMConfig(base_url=server.base_url, model=server.model_alias)
        teacher = TeacherClient(make_chat_model(cfg, server.base_url), cfg, mode="json_object_schema",
                                base_url=server.base_url)
        batched = read_labels(teacher, PromptSet("classification"), task, texts, round=0, batch_size=4)
        alone = read_labels(teacher, PromptSet("classification"), task, texts[:2], round=0, batch_size=1)
    for read in (batched, alone):
        assert all(c.logprobs for c in read.calls)
        named = [d for d in read.distributions if d is not None]
        assert named and all(abs(sum(d.values()) - 1) < 1e-6 for d in named)
    gold = ["positive", "negative", "positive", "negative"]
    said = [max(d, key=lambda k: d[k]) if d else None for d in batched.distributions]
    assert sum(s == g for s, g in zip(said, gold, strict=True)) >= 3, said

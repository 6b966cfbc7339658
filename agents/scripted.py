"""A chat model that answers from a script: the teacher of unit tests and offline replays."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

Script = Callable[..., "str | TokenReply | Exception"]

LOGPROBS = "logprobs"  # the schema name a script is told when a request asks for token log-probabilities


@dataclass
class TokenReply:
    """A scripted reply read with token log-probabilities: each token with its alternatives as
    {token: probability}, the first of which is the token written (the reply is their concatenation)."""

    tokens: list[dict[str, float]]

    @property
    def text(self) -> str:
        return "".join(next(iter(alternatives)) for alternatives in self.tokens)

    def metadata(self, top: int) -> dict[str, Any]:
        """OpenAI's `logprobs` field, as langchain-openai puts it in the response metadata."""
        content = []
        for alternatives in self.tokens:
            ranked = sorted(alternatives.items(), key=lambda kv: -kv[1])[:top]
            written = next(iter(alternatives))
            content.append({"token": written, "logprob": math.log(alternatives[written]),
                            "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in ranked]})
        return {"content": content}


def words(reply: str) -> TokenReply:
    """A plain reply as tokens (words and the spaces and newlines between them), each certain."""
    return TokenReply([{token: 1.0} for token in re.findall(r"\s+|[^\s:]+|:", reply)])


def schema_name(response_format: dict[str, Any] | None) -> str | None:
    """The name of the reply schema a request asks for (e.g. "AnalystReply"), from its
    `response_format` body field; None when it asks for no schema (`llm.structured` json_object or none)."""
    if not response_format:
        return None
    if "json_schema" in response_format:
        return response_format["json_schema"].get("name")
    return (response_format.get("schema") or {}).get("title")


class ScriptedChatModel(BaseChatModel):
    """Answers each request with `script(messages)`, or `script(messages, schema=NAME)` when the
    script takes a `schema` argument (NAME: the reply schema the call asks for, see `schema_name`);
    an Exception returned is raised instead.

    Token usage is the word count of the request and the reply, so budgets can be tested."""

    script: Any
    gives_logprobs: bool = True  # false: an endpoint that ignores a request for log-probabilities
    _requests: list[list[BaseMessage]] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def requests(self) -> list[list[BaseMessage]]:
        return self._requests

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self._requests.append(messages)
        asks_logprobs = bool(kwargs.get("logprobs"))
        if _takes_schema(self.script):
            fmt = (kwargs.get("extra_body") or {}).get("response_format")
            reply = self.script(messages, schema=LOGPROBS if asks_logprobs else schema_name(fmt))
        else:
            reply = self.script(messages)
        if isinstance(reply, Exception):
            raise reply
        metadata: dict[str, Any] = {}
        if asks_logprobs and self.gives_logprobs:
            scored = reply if isinstance(reply, TokenReply) else words(reply)
            metadata["logprobs"] = scored.metadata(int(kwargs.get("top_logprobs") or 1))
            reply = scored.text
        elif isinstance(reply, TokenReply):
            reply = reply.text
        tokens_in = sum(len(str(m.content).split()) for m in messages)
        tokens_out = len(reply.split())
        message = AIMessage(content=reply, response_metadata=metadata, usage_metadata={
            "input_tokens": tokens_in, "output_tokens": tokens_out, "total_tokens": tokens_in + tokens_out})
        return ChatResult(generations=[ChatGeneration(message=message)])


def _takes_schema(script: Any) -> bool:
    try:
        return "schema" in inspect.signature(script).parameters
    except (TypeError, ValueError):
        return False


def from_list(replies: list[str | TokenReply | Exception]) -> Script:
    """A script that serves replies in order and fails loudly when it runs out."""
    queue = list(replies)

    def script(messages: list[BaseMessage]) -> str | TokenReply | Exception:
        if not queue:
            raise AssertionError(f"script exhausted; unexpected request: {messages[-1].content[:200]}")
        return queue.pop(0)

    return script

"""The teacher client: chat-model factory and one structured, retried, recorded call
(the teacher *server*, the embedded llama.cpp one, is evokd.teacher).

Every agent reply is a pydantic model. The request carries the model's JSON schema in the form the
backend understands (`structured_format`), the reply is validated with pydantic, and a validation
error is fed back to the model for a bounded number of retries. Transport failures (connection
errors, timeouts, 5xx, 429) are retried with exponential backoff, honouring Retry-After. Every
attempt becomes an `LLMCall` record handed to `on_call` (the trace).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field, ValidationError

from evokd.agents.recording import Recording
from evokd.config import LLMConfig
from evokd.core.records import LLMCall, TokenChoice

log = logging.getLogger("evokd.llm")

T = TypeVar("T", bound=BaseModel)
Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}


class TeacherUnreachable(Exception):
    """The teacher could not be reached after all retries; the run stops with its rounds saved."""


class StructuredOutputError(Exception):
    """The teacher never produced a reply that validates against the schema."""

    def __init__(self, message: str, calls: list[LLMCall] | None = None) -> None:
        super().__init__(message)
        self.calls = calls or []  # what the failed attempts cost


class NoLogprobs(Exception):
    """The endpoint answered without the token log-probabilities it was asked for."""

    def __init__(self, message: str, calls: list[LLMCall] | None = None) -> None:
        super().__init__(message)
        self.calls = calls or []  # what asking cost


class BudgetExhausted(Exception):
    """The token or money budget is spent: no new teacher call starts."""


def price(tokens_in: int, tokens_out: int, per_1k_in: float, per_1k_out: float) -> float:
    return tokens_in / 1000 * per_1k_in + tokens_out / 1000 * per_1k_out


class Budget:
    """Token and money spending, checked before every call, so a budget is exceeded by at most
    the one call already in flight when it ran out."""

    def __init__(self, max_tokens: int | None = None, max_cost: float | None = None,
                 price_in_per_1k: float = 0.0, price_out_per_1k: float = 0.0) -> None:
        self.max_tokens, self.max_cost = max_tokens, max_cost
        self.price_in, self.price_out = price_in_per_1k, price_out_per_1k
        self.tokens, self.cost = 0, 0.0
        self._lock = threading.Lock()  # calls may run in threads (llm.concurrency)

    def check(self) -> None:
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            raise BudgetExhausted(f"token budget spent ({self.tokens} of {self.max_tokens})")
        if self.max_cost is not None and self.cost >= self.max_cost:
            raise BudgetExhausted(f"cost budget spent ({self.cost:.4f} of {self.max_cost})")

    def charge(self, tokens_in: int, tokens_out: int) -> None:
        with self._lock:
            self.tokens += tokens_in + tokens_out
            self.cost += price(tokens_in, tokens_out, self.price_in, self.price_out)


def make_chat_model(cfg: LLMConfig, base_url: str) -> BaseChatModel:
    """A ChatOpenAI client for any OpenAI-compatible endpoint; retries are ours, not the SDK's."""
    from langchain_openai import ChatOpenAI  # the OpenAI SDK: slow to import, only when a run asks a teacher

    return ChatOpenAI(
        model=cfg.model,
        base_url=base_url,
        # Local servers accept any key; the real one is read from the environment, never stored.
        api_key=os.environ.get(cfg.api_key_env) or "not-needed",
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        timeout=cfg.timeout,
        max_retries=0,
    )


def structured_format(mode: str, schema: type[BaseModel]) -> dict[str, Any] | None:
    """The `response_format` body field for a structured-output mode (None: prompt-only)."""
    json_schema = schema.model_json_schema()
    if mode == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": schema.__name__, "schema": json_schema, "strict": False}}
    if mode == "json_object_schema":
        # llama_cpp.server rejects json_schema but compiles this schema into a grammar.
        return {"type": "json_object", "schema": json_schema}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def one_of(values: list[str]) -> Any:
    """A string whose JSON schema lists the allowed values: a grammar-constrained backend then
    cannot stray, while validation still accepts any string so that a stray value becomes a
    per-sample rejection with a reason instead of a failed reply."""
    schema: dict[str, Any] = {"enum": values}
    return Annotated[str, Field(json_schema_extra=schema)]


def counted(item: Any, n: int, what: str | None = None, alias: str | None = None) -> Any:
    """A list field whose JSON schema asks for exactly n items while validation takes any number
    (a short list is topped up or accepted as it is); `alias` is its key in the reply."""
    return (list[item], Field(default_factory=list, description=what, alias=alias,
                              json_schema_extra={"minItems": n, "maxItems": n}))


def resolve_mode(cfg: LLMConfig, embedded: bool) -> str:
    if cfg.structured != "auto":
        return cfg.structured
    return "json_object_schema" if embedded else "json_schema"


def to_langchain(messages: list[Message]) -> list[BaseMessage]:
    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[m["role"]](content=m["content"]) for m in messages]


def request_key(messages: list[Message], schema_name: str) -> str:
    """Identity of a request, used to serve recorded replies on resume and replay."""
    blob = json.dumps({"messages": messages, "schema": schema_name}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def request_seed(base: int, round: int, key: str) -> int:
    """A 32-bit sampling seed for one request of one run (llama.cpp takes an unsigned 32-bit seed)."""
    return int(hashlib.sha256(f"{base}:{round}:{key}".encode()).hexdigest()[:8], 16)


def parse_reply(text: str, schema: type[T]) -> T:
    """Validate a reply; tolerate a markdown fence or prose around one JSON object."""
    cleaned = text.strip()
    if cleaned.startswith("```"):
        cleaned = cleaned.strip("`")
        cleaned = cleaned[cleaned.find("\n") + 1:] if "\n" in cleaned else cleaned
    start, end = cleaned.find("{"), cleaned.rfind("}")
    if start != -1 and end > start:
        cleaned = cleaned[start:end + 1]
    return schema.model_validate_json(cleaned)


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _is_transient(exc: Exception) -> bool:
    import openai  # see make_chat_model: loaded by then whenever a teacher call failed

    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError | openai.RateLimitError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500 or exc.status_code == 429
    return isinstance(exc, ConnectionError | TimeoutError)


class TeacherClient:
    """One teacher endpoint with its retry policy, recorder and (optional) recorded replies."""

    def __init__(
        self,
        chat_model: BaseChatModel,
        cfg: LLMConfig,
        *,
        mode: str,
        base_url: str = "",
        on_call: Callable[[LLMCall], None] | None = None,
        recording: Recording | None = None,
        budget: Budget | None = None,
        sleep: Callable[[float], None] = time.sleep,
        run_seed: int = 0,
    ) -> None:
        self.chat_model = chat_model
        # With llm.seed set, every request is sent with request_seed(seed_base, round, request key).
        self.seed_base = None if cfg.seed < 0 else cfg.seed * 1_000_003 + run_seed
        self.cfg = cfg
        self.mode = mode
        self.base_url = base_url
        self.on_call = on_call or (lambda call: None)
        # Replies recorded earlier (resume, replay, fork): served instead of asking the teacher.
        self.recording = recording
        self.budget = budget or Budget()
        self.sleep = sleep
        # A reply that echoes the API key (a hostile or broken endpoint) must not carry it into the
        # samples, the checkpoints or the report: it is masked before anything else sees the reply.
        key = os.environ.get(cfg.api_key_env, "")
        self._secrets = [key] if len(key) >= 8 else []
        self.no_logprobs: str | None = None  # why ask_tokens cannot work with this endpoint, once seen

    def ask(
        self,
        messages: list[Message],
        schema: type[T],
        *,
        round: int,
        node: str,
        prompt_file: str = "",
        prompt_sha256: str = "",
        temperature: float | None = None,
    ) -> tuple[T, list[Message], list[LLMCall]]:
        """Ask until the reply validates. Returns the result, the conversation including the
        accepted reply, and the call records (also handed to `on_call`)."""
        conversation = list(messages)
        calls: list[LLMCall] = []
        for attempt in range(self.cfg.schema_retries + 1):
            call = self._call(conversation, schema, round=round, node=node, attempt=attempt,
                              prompt_file=prompt_file, prompt_sha256=prompt_sha256, temperature=temperature)
            calls.append(call)
            try:
                parsed = parse_reply(call.reply or "", schema)
            except ValidationError as exc:
                call.error = f"invalid reply: {_short_validation(exc)}"
                self.on_call(call)
                log.warning("%s round %d: reply did not validate (attempt %d): %s",
                            node, round, attempt + 1, call.error)
                conversation = [*conversation, {"role": "assistant", "content": call.reply or ""},
                                {"role": "user", "content": _fix_request(exc, schema)}]
                continue
            call.parsed = parsed.model_dump(mode="json")
            self.on_call(call)
            accepted = [*conversation, {"role": "assistant", "content": call.reply or ""}]
            return parsed, accepted, calls
        raise StructuredOutputError(
            f"{node}: no valid {schema.__name__} after {self.cfg.schema_retries + 1} attempts "
            f"(last error: {calls[-1].error})", calls)

    def ask_tokens(self, messages: list[Message], *, round: int, node: str, max_tokens: int, top: int,
                   prompt_file: str = "", prompt_sha256: str = "") -> LLMCall:
        """A free-text reply read token by token with the `top` most likely alternatives at each
        position (OpenAI's logprobs / top_logprobs, which llama.cpp's server returns too), at
        temperature 0. Raises NoLogprobs when the endpoint gives none; the record is on the trace."""
        if self.no_logprobs is not None:  # known since an earlier call: no need to pay to learn it again
            raise NoLogprobs(self.no_logprobs)
        options = {"logprobs": True, "top_logprobs": top, "max_tokens": max_tokens}
        call = self._call(messages, None, round=round, node=node, attempt=0, prompt_file=prompt_file,
                          prompt_sha256=prompt_sha256, temperature=0.0, options=options)
        if call.logprobs is None:
            call.error = "the endpoint returned no token log-probabilities"
        self.on_call(call)
        if call.logprobs is None:
            self.no_logprobs = f"{self.base_url or 'the teacher endpoint'} returns no token log-probabilities"
            raise NoLogprobs(self.no_logprobs, [call])
        return call

    def _call(self, messages: list[Message], schema: type[BaseModel] | None, *, round: int, node: str,
              attempt: int, prompt_file: str, prompt_sha256: str, temperature: float | None,
              options: dict[str, Any] | None = None) -> LLMCall:
        schema_name = schema.__name__ if schema is not None else "logprobs"
        key = request_key(messages, schema_name)
        started = time.time()
        record = LLMCall(round=round, node=node, attempt=attempt, request_key=key, messages=messages,
                         schema_name=schema_name, prompt_file=prompt_file,
                         prompt_sha256=prompt_sha256, started_at=started, model=self.cfg.model)
        recording = self.recording
        old = recording.serve(record) if recording is not None else None
        if recording is not None and old is not None:
            record.reply, record.tokens_in, record.tokens_out = old.reply, old.tokens_in, old.tokens_out
            record.logprobs = old.logprobs
            record.latency_s, record.from_record = old.latency_s, True
            if recording.mode == "resume":
                # Paid by the interrupted run but not yet in the checkpointed usage: count it now.
                record.paid_before_resume = True
                self.budget.charge(record.tokens_in, record.tokens_out)
            elif recording.mode in ("strict", "lenient") and (not old.from_record or old.paid_before_resume):
                # A replay counts what the recorded run counted, so a budget stops it where it stopped the run.
                record.paid_before_resume = True
                self.budget.charge(record.tokens_in, record.tokens_out)
            return record
        self.budget.check()
        message = self._invoke_with_retries(messages, schema, record, temperature, options or {})
        usage = getattr(message, "usage_metadata", None) or {}
        reply = message.content if isinstance(message.content, str) else json.dumps(message.content)
        # A lone surrogate (a JSON "\\ud800" escape) would make every later write of the reply fail.
        reply = reply.encode("utf-8", "replace").decode("utf-8")
        for secret in self._secrets:
            reply = reply.replace(secret, "[redacted]")
        record.reply = reply
        record.tokens_in = int(usage.get("input_tokens", 0))
        record.tokens_out = int(usage.get("output_tokens", 0))
        record.latency_s = time.time() - started
        if options:
            record.logprobs = read_logprobs(message)
        self.budget.charge(record.tokens_in, record.tokens_out)
        return record

    def _invoke_with_retries(self, messages: list[Message], schema: type[BaseModel] | None,
                             record: LLMCall, temperature: float | None, options: dict[str, Any]) -> BaseMessage:
        fmt = structured_format(self.mode, schema) if schema is not None else None
        kwargs: dict[str, Any] = {"extra_body": {"response_format": fmt}} if fmt else {}
        kwargs.update(options)
        if temperature is not None:
            kwargs["temperature"] = temperature
        if self.seed_base is not None:
            kwargs["seed"] = request_seed(self.seed_base, record.round, record.request_key)
        delay = self.cfg.backoff_seconds
        for transport_try in range(self.cfg.max_retries + 1):
            # Retries made before this try, so a call that succeeds on its second try records 1.
            record.transport_retries = transport_try
            try:
                return self.chat_model.invoke(to_langchain(messages), **kwargs)
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                if transport_try == self.cfg.max_retries:
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise TeacherUnreachable(
                        f"teacher unreachable at {self.base_url or 'the configured endpoint'}: {reason}"
                    ) from exc
                wait = _retry_after(exc) or delay
                log.warning("teacher call failed (%s); retry %d/%d in %.1fs",
                            type(exc).__name__, transport_try + 1, self.cfg.max_retries, wait)
                self.sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")


def read_logprobs(message: BaseMessage) -> list[TokenChoice] | None:
    """The reply's tokens and their top alternatives from langchain-openai's response metadata
    (`logprobs.content[i].top_logprobs`); None when the endpoint sent none."""
    content = ((getattr(message, "response_metadata", None) or {}).get("logprobs") or {}).get("content")
    if not content:
        return None
    return [TokenChoice(token=item.get("token", ""),
                        top=[(alt.get("token", ""), float(alt.get("logprob", -100.0)))
                             for alt in item.get("top_logprobs") or []])
            for item in content]


def _short_validation(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "reply"
    return f"{where}: {first['msg']}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")


def _fix_request(exc: ValidationError, schema: type[BaseModel]) -> str:
    return (
        f"Your reply was not valid: {_short_validation(exc)}. Reply again with only a JSON object "
        f"matching this schema: {json.dumps(schema.model_json_schema(), ensure_ascii=False)}"
    )

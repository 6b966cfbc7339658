"""Recorded teacher replies, served in place of the teacher.

One mechanism serves three uses:
- resume: a request already paid for in the interrupted run is answered from its trace;
- replay (`evokd replay --rerun`): every request must match the recording exactly, else the run
  stops at the first divergent turn with a diff (or, when divergence is allowed, that turn is
  served the reply recorded at the same place);
- fork (`evokd run --from RUN --from-round N`): turns before round N are served by place, whatever
  the request (a changed prompt included), and round N onwards asks the live teacher.
"""

from __future__ import annotations

import difflib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from evokd.core.records import LLMCall
from evokd.core.trace import read_trace

Turn = tuple[int, str, int]  # (round, node, attempt)


class ReplayDivergence(Exception):
    """A replayed request differs from the recorded one."""


def _turn(call: LLMCall) -> Turn:
    return (call.round, call.node, call.attempt)


@dataclass
class Recording:
    calls: list[LLMCall]
    mode: Literal["resume", "strict", "lenient", "fork"] = "resume"
    until_round: int | None = None  # fork: rounds before this one are replayed
    by_key: dict[str, list[LLMCall]] = field(default_factory=dict, init=False)
    by_turn: dict[Turn, list[LLMCall]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        for call in self.calls:
            if call.reply is None:
                continue
            self.by_key.setdefault(call.request_key, []).append(call)
            self.by_turn.setdefault(_turn(call), []).append(call)

    @classmethod
    def from_run(cls, run_dir: Path, **kwargs: object) -> Recording:
        trace = Path(run_dir) / "trace.jsonl"
        calls = [r for r in read_trace(trace) if isinstance(r, LLMCall)] if trace.exists() else []
        return cls(calls, **kwargs)  # type: ignore[arg-type]

    def _take(self, call: LLMCall) -> LLMCall:
        """Consume a recorded call from both indexes so a repeated request gets the next one."""
        for bucket in (self.by_key.get(call.request_key, []), self.by_turn.get(_turn(call), [])):
            if call in bucket:
                bucket.remove(call)
        return call

    def serve(self, request: LLMCall) -> LLMCall | None:
        """The recorded call that answers this request, or None to ask the live teacher."""
        with self._lock:
            return self._serve(request)

    def _serve(self, request: LLMCall) -> LLMCall | None:
        same = self.by_key.get(request.request_key)
        if self.mode == "fork":
            if self.until_round is not None and request.round >= self.until_round:
                return None
            served = same or self.by_turn.get(_turn(request))
            return self._take(served[0]) if served else None
        if same:
            return self._take(same[0])
        if self.mode == "resume":
            return None
        placed = self.by_turn.get(_turn(request))
        if self.mode == "lenient" and placed:
            return self._take(placed[0])
        raise ReplayDivergence(self._explain(request, placed[0] if placed else None))

    @staticmethod
    def _explain(request: LLMCall, recorded: LLMCall | None) -> str:
        where = f"round {request.round}, {request.node} (attempt {request.attempt + 1})"
        if recorded is None:
            return f"{where}: the recording has no such turn"
        diff = difflib.unified_diff(
            json.dumps(recorded.messages, indent=1, ensure_ascii=False).splitlines(),
            json.dumps(request.messages, indent=1, ensure_ascii=False).splitlines(),
            "recorded", "now", lineterm="", n=1)
        return f"{where}: the request differs from the recording\n" + "\n".join(list(diff)[:60])

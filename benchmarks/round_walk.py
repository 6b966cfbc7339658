"""How many files one round of the default loop takes to read, and how often the reader goes back.

    python benchmarks/round_walk.py [--round 2] [--out docs/benchmarks/round_walk.json]

Runs the sentiment demo with the default loop (`loop.method = "evokd"`) and a scripted teacher (no
LLM; the student is real), and follows one generation round with a profiler: its node turns, from
the round's first node to its `decide`, as the trace groups them (round 2: the first round whose
Analyst has mistakes to read, so every role speaks). Each evokd function is read once, when the round
first calls it; a template when the round first renders it. Files are listed in the order they are
first needed. A *return* is going back to a file already read: the next new function lies in a file
opened earlier that is neither the file the reader is in nor one whose function is still running
(finishing the caller you came from is not a return). The file that declares the round's node
sequence (the method module; before issue 24, graph/build.py's ROUNDS table) is open for the whole
round: its round list calls each node in turn.

Two walks are printed and written:
- `read`: the round's own code, graph/ and agents/ with the templates, read down to the typed
  interfaces below it: the Student protocol and student/, the teacher client (`TeacherClient.ask`),
  the prompt set, core/ (records, sample helpers, run folder, files), and the machinery every node of
  every method runs in (the node wrapper in graph/build.py, the runner, the state's reducer, the
  runtime context, the observer list).
- `executed`: every evokd file the round runs code from, at any depth.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "round_walk.json"
PACKAGES = ("agents", "graph", "core", "student", "evokd", "teacher", "report", "bench")
# Read through their interface, not opened by the reader of a round (see the module doc).
INTERFACES = {
    # the teacher client, the prompt set, recorded and scripted replies (before and after issue 24)
    "agents/llm.py", "agents/client.py", "agents/prompts.py", "agents/recording.py", "agents/scripted.py",
    # what every node of every method runs in
    "graph/build.py", "graph/runner.py", "graph/state.py", "graph/context.py", "graph/callbacks.py",
    "graph/method.py",
}
WORDS = ["apple", "river", "castle", "engine", "violin", "glacier", "pepper", "rocket", "meadow", "saddle",
         "tunnel", "walrus"]


def script(messages: list[Any], schema: str | None = None) -> str:
    """A teacher that answers the default loop's three roles; the Verifier disagrees now and then."""
    last = str(messages[-1].content)
    if schema == "DiagnosisReply":
        return json.dumps({"weaknesses": ["negated praise"]})
    if schema == "TargetedReply":
        keys = re.findall(r'"((?:tricky|plain)_\w+)"', last)
        n = script.calls = getattr(script, "calls", 0) + 1  # type: ignore[attr-defined]
        w = lambda i: WORDS[i % len(WORDS)]  # noqa: E731
        reply = {next(k for k in keys if k.startswith("plain_")): [f"{w(n)} over {w(5 * n + 1)} number {n}",
                                                                   f"why {w(7 * n + 2)} sings {n}"]}
        if hard := next((k for k in keys if k.startswith("tricky_")), None):
            reply[hard] = [f"the {w(3 * n)} of {w(n + 4)} is {n}", f"no {w(11 * n + 3)} today {n}"]
        return json.dumps(reply)
    if schema == "VerifierReply":
        numbers = re.findall(r"^(\d+)\. ", last, re.M)
        return json.dumps({i: "positive" if int(i) % 2 else "negative" for i in numbers})
    raise AssertionError(f"no scripted reply for {schema}")


def relative(path: str) -> str | None:
    """The file's path in the checkout (evokd/graph/x.py and graph/x.py are one file), or None."""
    try:
        rel = Path(path).relative_to(ROOT)
    except ValueError:
        return None
    parts = rel.parts[1:] if rel.parts[:1] == ("evokd",) and len(rel.parts) > 2 \
        and rel.parts[1] in PACKAGES else rel.parts
    return "/".join(parts) if parts and parts[0] in PACKAGES else None


class Walk:
    """Records, within the round, the first call of each evokd function and the first render of
    each template, with the files still running when it happened."""

    def __init__(self, round: int) -> None:
        self.round = round
        self.state = "before"
        self.events: list[tuple[str, str, list[str]]] = []
        self.seen: set[object] = set()

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if event != "call" or self.state == "after":
            return
        code = frame.f_code
        file = relative(code.co_filename)
        if file is None:
            return
        if code.co_name == "write" and file == "core/trace.py":
            record = frame.f_locals.get("record")
            if getattr(record, "kind", None) == "node" and record.node == "decide":  # type: ignore[union-attr]
                if record.round == self.round - 1:  # type: ignore[union-attr]
                    self.state = "in"
                elif record.round == self.round:  # type: ignore[union-attr]
                    self.state = "after"
            return
        if self.state != "in":
            return
        stack = []
        caller = frame.f_back
        while caller is not None:
            if (f := relative(caller.f_code.co_filename)) is not None:
                stack.append(f)
            caller = caller.f_back
        if code.co_name == "render" and file == "agents/prompts.py":
            name = frame.f_locals["self"].name
            if name not in self.seen:
                self.seen.add(name)
                self.events.append((f"prompts/{name}", "(template)", [*stack, file]))
        if code not in self.seen:
            self.seen.add(code)
            self.events.append((file, code.co_qualname, stack))


def walk(events: list[tuple[str, str, list[str]]], declared: str, keep: Any) -> dict[str, Any]:
    """Files in the order first needed, the functions read in each, and the returns."""
    files: dict[str, list[str]] = {}
    returns: list[dict[str, str]] = []
    current = None
    for file, name, stack in events:
        if not keep(file):
            continue
        if file != current and file in files and file not in stack and file != declared:
            returns.append({"from": str(current), "to": file, "for": name})
        files.setdefault(file, []).append(name)
        current = file
    python = [f for f in files if f.endswith(".py")]
    return {"files": len(files), "python": len(python), "templates": len(files) - len(python),
            "returns": len(returns), "order": list(files), "functions": files, "return_list": returns}


def declaring_file() -> str:
    """The file that declares the default loop's node sequence."""
    try:
        from evokd.graph.methods import METHODS  # type: ignore[import-not-found]
    except ImportError:  # before issue 24: the ROUNDS table
        return "graph/build.py"
    step = METHODS["evokd"].round(None)[0]  # type: ignore[index]
    return str(relative(sys.modules[step[1].__module__].__file__ or ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round", type=int, default=2)
    parser.add_argument("--student", default="default", help="student.model (the code walked is the same)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from evokd.agents.scripted import ScriptedChatModel
    from evokd.config import load_config
    from evokd.graph.runner import execute

    runs = tempfile.mkdtemp(prefix="evokd-walk-")
    cfg = load_config(ROOT / "examples" / "sentiment" / "config.toml", [
        'loop.method="evokd"', f"loop.max_rounds={args.round}", f"runs_dir={json.dumps(runs)}",
        f"student.model={json.dumps(args.student)}", 'llm.base_url="http://scripted.invalid/v1"'])
    recorder = Walk(args.round)
    sys.setprofile(recorder)
    threading.setprofile(recorder)  # type: ignore[arg-type]
    try:
        execute(cfg, chat_model=ScriptedChatModel(script=script))
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    declared = declaring_file()
    result = {
        "command": f"python benchmarks/round_walk.py --round {args.round}", "round": args.round,
        "declared_in": declared,
        "read": walk(recorder.events, declared, lambda f: f.startswith(("graph/", "agents/", "prompts/"))
                     and f not in INTERFACES),
        "executed": walk(recorder.events, declared, lambda f: f != "agents/scripted.py"),
    }
    for name in ("read", "executed"):
        w = result[name]
        print(f"{name}: {w['files']} files ({w['python']} Python, {w['templates']} templates), "
              f"{w['returns']} returns")
        for i, file in enumerate(w["order"], start=1):
            print(f"  {i:2d}. {file}")
        for r in w["return_list"]:
            print(f"  return: {r['from']} -> {r['to']} ({r['for']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

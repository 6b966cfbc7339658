"""An OpenAI-compatible chat server that answers like `SentimentTeacher`, for subprocess tests.

    python tests/fake_teacher.py PORT [--delay SECONDS] [--fail-after N] [--alias NAME] [--pidfile PATH]
                                      [--stateless] [--log PATH]

`--fail-after N` answers HTTP 503 to every chat request after the first N (a teacher that dies).
`--alias` is the model id `GET /v1/models` lists (the embedded teacher's health check looks for it);
`--pidfile` gets this process's pid appended, so a test can check the server was stopped.
`--stateless` answers like `StatelessSentimentTeacher`: the reply depends on the request alone (its
messages and its sampling seed, as from a seeded server); `--log` gets one line per chat request
served: the SHA-256 of its messages and seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

from teachers import SentimentTeacher, StatelessSentimentTeacher

from evokd.agents.scripted import schema_name


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--fail-after", type=int, default=None)
    parser.add_argument("--alias", default="fake")
    parser.add_argument("--pidfile", default=None)
    parser.add_argument("--stateless", action="store_true")
    parser.add_argument("--log", default=None)
    args = parser.parse_args()
    if args.pidfile:
        with open(args.pidfile, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    teacher = StatelessSentimentTeacher() if args.stateless else SentimentTeacher()
    lock = threading.Lock()
    served = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send(200, {"object": "list", "data": [{"id": args.alias, "object": "model"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                served["n"] += 1
                if args.log:
                    with open(args.log, "a") as fh:
                        request = json.dumps([body["messages"], body.get("seed")])
                        fh.write(hashlib.sha256(request.encode()).hexdigest() + "\n")
                if args.fail_after is not None and served["n"] > args.fail_after:
                    self._send(503, {"error": {"message": "teacher is down", "type": "server_error"}})
                    return
                time.sleep(args.delay)
                messages = [SimpleNamespace(content=m["content"]) for m in body["messages"]]
                if args.stateless:  # the request's sampling seed is part of what the reply depends on
                    messages.insert(0, SimpleNamespace(content=f"seed {body.get('seed')}"))
                reply = teacher(messages, schema=schema_name(body.get("response_format")))
            tokens_in = sum(len(m["content"].split()) for m in body["messages"])
            self._send(200, {
                "id": f"chatcmpl-{served['n']}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": tokens_in, "completion_tokens": len(reply.split()),
                          "total_tokens": tokens_in + len(reply.split())},
            })

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()

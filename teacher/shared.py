"""A detached, shared teacher server for `evokd teacher start|status|stop`, recorded in
`teacher.json`; `local_teacher` (the run command's entry point) reuses it when it serves the
wanted weights and otherwise starts its own child."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from evokd.config import TeacherConfig
from evokd.teacher.server import (
    CommandBuilder,
    ServerSettings,
    TeacherInfo,
    TeacherServer,
    base_url_of,
    free_port,
    is_healthy,
    llama_command,
    spawn,
    terminate,
    wait_healthy,
)
from evokd.teacher.weights import (
    WEIGHTS,
    TeacherError,
    cache_root,
    exclusive_lock,
    is_verified,
    models_dir,
    resolve_gguf,
)

STATE_FILE = "teacher.json"


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
    with exclusive_lock(state_dir / "teacher.lock"):
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
    process = spawn(command(settings), log_path)
    _DETACHED[process.pid] = process
    try:
        wait_healthy(process, base_url_of(settings.port), settings.model_alias, cfg.startup_timeout, log_path)
    except BaseException:
        terminate(process, grace=5.0)
        _DETACHED.pop(process.pid, None)
        raise
    info = TeacherInfo(
        pid=process.pid,
        port=settings.port,
        base_url=base_url_of(settings.port),
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
        terminate(process, grace)
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
        if not is_verified(models_dir() / spec.filename, spec):
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

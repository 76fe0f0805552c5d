"""Run the real Triton Inference Server bundled in the `nvidia-pytriton` wheel on a model
repository written by `package` (python backend: the only backend in the wheel).

Two traps handled here:
- the python-backend stub links `libpython3.11.so.1.0`; with a non-system Python (pyenv) the
  system library is found first and models fail to load (`_thread.RLock ... _recursion_count`),
  so the running interpreter's LIBDIR goes first on LD_LIBRARY_PATH;
- the stub's embedded interpreter does not know our virtualenv, so PYTHONPATH carries its
  site-packages (torch, numpy) and the directory `lepton_runtime` is imported from (an
  editable install is found through a .pth file, which PYTHONPATH entries do not read): a
  compact model's `model.py` decodes it with Lepton's code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import pytriton

import lepton_runtime
from lepton_runtime.errors import JobError


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pytriton_root() -> Path:
    return Path(pytriton.__file__).parent


def _backend_directory(workdir: Path) -> Path:
    """backends/python with the stub built for this interpreter's Python version."""
    root = _pytriton_root() / "tritonserver"
    target = workdir / "backends" / "python"
    target.mkdir(parents=True)
    for item in (root / "backends" / "python").iterdir():
        if item.is_file():
            (target / item.name).symlink_to(item)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise JobError(f"nvidia-pytriton has no python-backend stub for Python {version}")
    shutil.copy(stub, target / "triton_python_backend_stub")
    return workdir / "backends"


def _server_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    libdir = str(sysconfig.get_config_var("LIBDIR") or "")
    libs = _pytriton_root().parent / "nvidia_pytriton.libs"
    env["LD_LIBRARY_PATH"] = ":".join(
        p for p in (libdir, str(libs), env.get("LD_LIBRARY_PATH", "")) if p
    )
    site = [p for p in sys.path if p.endswith("site-packages")]
    lepton = str(Path(lepton_runtime.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = ":".join(p for p in (*site, lepton, env.get("PYTHONPATH", "")) if p)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["LEPTON_TORCH_THREADS"] = str(threads)
    return env


class LocalTritonServer:
    """`with LocalTritonServer(repo) as server:` -> server.url, server.grpc_url, metrics_url."""

    def __init__(
        self,
        repository: str | Path,
        *,
        startup_timeout: float = 120.0,
        torch_threads: int = 1,
        log_verbose: int = 0,
        explicit_model_control: bool = False,
    ) -> None:
        self.repository = Path(repository)
        # Explicit control: nothing is loaded at start; models are loaded (and reloaded with a
        # changed config.pbtxt) through the repository API, the server staying up in between.
        self.explicit_model_control = explicit_model_control
        self.startup_timeout = startup_timeout
        self.torch_threads = torch_threads
        self.log_verbose = log_verbose
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """HTTP endpoint, host:port as tritonclient expects it."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """gRPC endpoint, host:port."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Prometheus metrics URL."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path | None:
        """The server's log file while it runs."""
        return Path(self._workdir.name) / "tritonserver.log" if self._workdir else None

    def logs(self) -> str:
        """The server log so far (for error messages)."""
        path = self.log_path
        return path.read_text(errors="replace") if path and path.exists() else ""

    def start(self) -> LocalTritonServer:
        """Start tritonserver and wait until /v2/health/ready answers 200."""
        self._workdir = tempfile.TemporaryDirectory(prefix="lepton-triton-")
        workdir = Path(self._workdir.name)
        binary = _pytriton_root() / "tritonserver" / "bin" / "tritonserver"
        command = [
            str(binary),
            f"--model-repository={self.repository.resolve()}",
            f"--backend-directory={_backend_directory(workdir)}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            f"--metrics-port={self.metrics_port}",
            "--metrics-address=127.0.0.1",
            "--exit-on-error=true",
            "--exit-timeout-secs=5",
            "--strict-readiness=true",
            # Lepton writes every config.pbtxt whole. Auto-complete would start one more
            # python-backend stub (a torch import) per model load, before the instances:
            # measured here, a 2-instance load took 3.8 s with it and 1.1 s without.
            "--disable-auto-complete-config",
            f"--log-verbose={self.log_verbose}",
        ]
        if self.explicit_model_control:
            command.append("--model-control-mode=explicit")
        log = (workdir / "tritonserver.log").open("wb")
        # Its own process group: the python-backend stubs it forks join it, so stop() can
        # reach them after a server that died by a signal left them orphaned (and spinning).
        self._process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_server_env(self.torch_threads),
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        ready = f"http://{self.url}/v2/health/ready"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                tail = " | ".join(self.logs().strip().splitlines()[-5:])
                self.stop()
                raise JobError(f"tritonserver exited ({self._process.returncode}): {tail}")
            try:
                with urllib.request.urlopen(ready, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise JobError(f"tritonserver not ready after {self.startup_timeout:.0f}s")

    def load(self, model: str) -> None:
        """(Re)load `model` from the repository (explicit model control only): its newest
        version and current config.pbtxt. Triton brings the new instances up beside the
        serving ones and switches when they are ready, so requests meanwhile are answered by
        the old ones; a load that fails leaves the old ones serving."""
        if not self.explicit_model_control:
            raise JobError("load needs explicit_model_control=True")
        request = urllib.request.Request(
            f"http://{self.url}/v2/repository/models/{model}/load", data=b"{}", method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.startup_timeout):
                return
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise JobError(f"model {model} failed to load: {detail}") from error

    @property
    def pid(self) -> int | None:
        """The server's process id (also its process group's), while it was started."""
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL), kill what is left of its process
        group (stubs a crashed server orphaned) and remove its work directory."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()  # a live server stops its own stubs
                try:
                    self._process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            with contextlib.suppress(ProcessLookupError):  # no process of the group is left
                os.killpg(self._process.pid, signal.SIGKILL)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> LocalTritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

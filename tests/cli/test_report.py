"""The report and the plots, from a summary built by hand (no training needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from lepton_cli.inference import ServingResult
from lepton_cli.plots import write_plots
from lepton_cli.report import print_report, write_summary
from lepton_cli.results import (
    CompressionOutcome,
    LossSample,
    RunSummary,
    ServingOutcome,
    TrainingOutcome,
)
from lepton_cli.volumes import prepare_dataset
from lepton_operator.builders.runtime_config import StorageLayout
from lepton_runtime.contract import CompressSummary, TrainSummary, Trial

pytestmark = pytest.mark.runtime  # matplotlib comes with the [runtime] extra


def _trial(index: int, size: int, accuracy: float, kept: bool) -> Trial:
    return Trial(
        index=index, sparsity=0.8 - 0.2 * index, quantization="dynamic-int8", size_bytes=size,
        accuracy=accuracy, accuracy_drop=0.9 - accuracy, latency_ms=0.4, kept=kept,
        reason="kept" if kept else "dropped",
    )  # fmt: skip


def _summary(tmp_path: Path) -> RunSummary:
    training = TrainSummary(
        accuracy=0.9, loss=0.3, epochs=2, steps=20, samples_per_second=100.0, world_size=2,
        model_uri="file:///m", loss_history=[0.9, 0.3], accuracy_history=[0.8, 0.9],
    )  # fmt: skip
    compression = CompressSummary(
        baseline_accuracy=0.9, final_accuracy=0.89, size_bytes_before=4000,
        size_bytes_after=1000, sparsity=0.6, latency_ms_before=0.5, latency_ms_after=0.4,
        quantization="dynamic-int8", model_uri="file:///c", formats=["model.ts"],
        trials=[_trial(0, 800, 0.7, False), _trial(1, 1000, 0.89, True)],
    )  # fmt: skip
    serving = ServingResult(
        requests=50, correct=44, accuracy=0.88, latency_ms_p50=2.0, latency_ms_p99=9.0,
        throughput_per_second=400.0, concurrency=4,
    )  # fmt: skip
    return RunSummary(
        manifests=["pipeline.yaml"], output_dir=str(tmp_path), volumes_dir=str(tmp_path),
        overrides=[],
        training=TrainingOutcome(
            name="mnist", workers=2, steps_per_epoch=10, summary=training,
            loss_samples=[LossSample(step=s, loss=1 / s) for s in range(1, 21)],
        ),
        compression=CompressionOutcome(name="mnist-compressed", summary=compression),
        serving=ServingOutcome(
            name="mnist", model_name="mnist", backend_requested="pytorch_libtorch",
            backend_served="python", result=serving,
        ),
        step_seconds={"train": 1.0, "compress": 2.0, "package": 0.5, "serve": 3.0},
        total_seconds=6.5,
    )  # fmt: skip


def test_report_shows_the_figures_that_matter(tmp_path: Path) -> None:
    console = Console(record=True, width=100)
    print_report(_summary(tmp_path), console)
    text = console.export_text()
    for expected in ("88.00% (44/50)", "4.0x smaller", "2.00 / 9.00 ms", "400 requests/s",
                     "90.00% -> 89.00%", "2 (kept #1)", "spec: pytorch_libtorch"):  # fmt: skip
        assert expected in text


def test_summary_json_is_camel_case_and_round_trips(tmp_path: Path) -> None:
    summary = _summary(tmp_path)
    path = write_summary(summary, tmp_path)
    text = path.read_text()
    assert '"sizeRatio": 4.0' in text and '"latencyMsP99": 9.0' in text
    assert RunSummary.model_validate_json(text).serving == summary.serving


def test_plots_are_written_as_png(tmp_path: Path) -> None:
    summary = _summary(tmp_path)
    paths = write_plots(tmp_path, summary.training, summary.compression)
    assert [p.name for p in paths] == ["training-loss.png", "compression-tradeoff.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_a_dangling_mnist_link_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "cache" / "mnist"
    data.mkdir(parents=True)
    monkeypatch.setattr("lepton_cli.volumes.ensure_mnist", lambda: data)
    link = tmp_path / "volumes" / "datasets" / "mnist"
    link.parent.mkdir(parents=True)
    link.symlink_to(tmp_path / "deleted-cache")
    prepare_dataset("pvc://datasets/mnist", StorageLayout(str(tmp_path / "volumes")))
    assert link.resolve() == data.resolve()

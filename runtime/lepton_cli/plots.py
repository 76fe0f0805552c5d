"""PNG plots of a run: how training converged, and what each compression trial traded.

Matplotlib's Agg backend renders to files without a display, so plots work over SSH and in CI.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lepton_cli.results import CompressionOutcome, SearchOutcome, ServingOutcome, TrainingOutcome

LOSS_PLOT = "training-loss.png"
TRADEOFF_PLOT = "compression-tradeoff.png"
SEARCH_PLOT = "search-pareto.png"
TUNING_PLOT = "endpoint-tuning.png"


def _save(figure: Figure, axes: Axes, path: Path) -> Path:
    """Grid, tight layout, the PNG written, the figure closed (pyplot keeps every open one)."""
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_training_loss(training: TrainingOutcome, path: Path) -> Path:
    """Per-step loss sampled during training, and the mean loss of each epoch."""
    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    if training.loss_samples:
        axes.plot(
            [s.step for s in training.loss_samples],
            [s.loss for s in training.loss_samples],
            color="tab:blue",
            alpha=0.5,
            linewidth=1,
            label="step loss (sampled)",
        )
    history = training.summary.loss_history
    per_epoch = training.steps_per_epoch or 1
    axes.plot(
        [per_epoch * (epoch + 1) for epoch in range(len(history))],
        history,
        "o-",
        color="tab:red",
        label="epoch mean loss",
    )
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("cross-entropy loss")
    axes.set_title(
        f"Training {training.name}: {training.workers} workers, "
        f"test accuracy {training.summary.accuracy:.2%}"
    )
    axes.legend()
    return _save(figure, axes, path)


def plot_compression_tradeoff(compression: CompressionOutcome, path: Path) -> Path:
    """Accuracy against artifact size for the baseline and every trial (kept one highlighted)."""
    summary = compression.summary
    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    axes.scatter(
        [summary.size_bytes_before / 1024],
        [summary.baseline_accuracy * 100],
        marker="s",
        s=70,
        color="tab:gray",
        label="trained (baseline)",
    )
    for trial in summary.trials:
        axes.scatter(
            [trial.size_bytes / 1024],
            [trial.accuracy * 100],
            s=90 if trial.kept else 50,
            color="tab:green" if trial.kept else "tab:red",
            marker="*" if trial.kept else "x",
            label="kept trial" if trial.kept else "dropped trial",
        )
        axes.annotate(
            f"#{trial.index} {trial.sparsity:.0%} sparse, {trial.quantization}"
            + (f" {trial.codebook_bits}b" if trial.codebook_bits else ""),
            (trial.size_bytes / 1024, trial.accuracy * 100),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=8,
        )
    axes.margins(x=0.15, y=0.25)  # room for the trial labels
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axes.legend(unique.values(), unique.keys())
    axes.set_xlabel("served file size (KiB: model.lpc, or packed TorchScript)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(f"Compression {compression.name}: {compression.size_ratio:.1f}x smaller")
    return _save(figure, axes, path)


def plot_search(search: SearchOutcome, path: Path) -> Path:
    """Accuracy against parameters for every measured trial, the Pareto front joined up."""
    status = search.status
    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    styles = {"Completed": ("o", "tab:blue"), "Pruned": ("x", "tab:gray")}
    for state, (marker, color) in styles.items():
        points = [
            (row.metrics.parameters, row.metrics.accuracy)
            for row in status.trials
            if row.state == state
            and row.metrics is not None
            and row.metrics.parameters is not None
            and row.metrics.accuracy is not None
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            label = "completed" if state == "Completed" else "pruned (fewer epochs)"
            axes.scatter(xs, ys, marker=marker, color=color, label=label)
    front = sorted(
        (row.metrics.parameters, row.metrics.accuracy)
        for row in status.trials
        if row.name in search.parameters_front
        and row.metrics is not None
        and row.metrics.parameters is not None
        and row.metrics.accuracy is not None
    )
    if front:
        xs, ys = zip(*front, strict=True)
        axes.plot(xs, ys, "s-", color="tab:red", label="Pareto front")
    axes.set_xscale("log")
    axes.set_xlabel("trainable parameters")
    axes.set_ylabel("test accuracy")
    axes.set_title(f"Search {search.name}: best {status.best_trial or 'none'}")
    axes.legend()
    return _save(figure, axes, path)


def plot_tuning(serving: ServingOutcome, path: Path) -> Path:
    """Throughput against p99 latency of every candidate tuning measured, the latency budget
    and the choice marked."""
    tuning = serving.tuning
    assert tuning is not None
    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    for within, (marker, color, label) in {
        True: ("o", "tab:blue", "within the budget"),
        False: ("x", "tab:gray", "over the budget"),
    }.items():
        points = [(m.p99_ms, m.throughput) for m in tuning.candidates if m.within_budget is within]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.scatter(xs, ys, marker=marker, color=color, label=label)
    axes.axvline(tuning.latency_budget_ms, color="tab:red", linestyle="--", label="p99 budget")
    chosen = tuning.chosen
    settings = chosen.settings
    axes.scatter([chosen.p99_ms], [chosen.throughput], s=160, facecolors="none",
                 edgecolors="tab:red", linewidths=2, label="served")  # fmt: skip
    axes.set_xlabel("p99 latency (ms)")
    axes.set_ylabel("requests per second")
    axes.set_title(f"Tuning {serving.name}: {settings.describe()}", fontsize="medium")
    axes.legend()
    return _save(figure, axes, path)


def write_plots(
    output_dir: Path,
    training: TrainingOutcome | None,
    compression: CompressionOutcome | None,
    search: SearchOutcome | None = None,
    serving: ServingOutcome | None = None,
) -> list[Path]:
    """Every plot the run has data for."""
    paths = []
    if search is not None:
        paths.append(plot_search(search, output_dir / SEARCH_PLOT))
    if training is not None and search is None:  # a search's trials report no loss curve
        paths.append(plot_training_loss(training, output_dir / LOSS_PLOT))
    if compression is not None:
        paths.append(plot_compression_tradeoff(compression, output_dir / TRADEOFF_PLOT))
    if serving is not None and serving.tuning is not None:
        paths.append(plot_tuning(serving, output_dir / TUNING_PLOT))
    return paths

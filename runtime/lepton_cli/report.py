"""The report at the end of `lepton run`: a table for people, summary.json for programs."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from lepton_cli.results import RunSummary

SUMMARY_FILE = "summary.json"


def _size(num_bytes: int) -> str:
    return (
        f"{num_bytes / 1024:.1f} KiB" if num_bytes < 1024 * 1024 else f"{num_bytes / 2**20:.2f} MiB"
    )


def build_table(summary: RunSummary) -> Table:
    """Training, compression and serving figures, one row each, in pipeline order."""
    table = Table(title="lepton run", show_lines=True)
    table.add_column("step")
    table.add_column("result", justify="left")
    table.add_column("time", justify="right")
    seconds = summary.step_seconds
    training = summary.training.summary
    table.add_row(
        f"train {summary.training.name}",
        f"test accuracy {training.accuracy:.2%}, loss {training.loss:.4f}, "
        f"{training.epochs} epochs, {training.steps} steps, {summary.training.workers} workers, "
        f"{training.samples_per_second:,.0f} samples/s",
        f"{seconds.get('train', 0):.1f} s",
    )
    if summary.compression is not None:
        result = summary.compression.summary
        kept = next((t for t in result.trials if t.kept), None)
        table.add_row(
            f"compress {summary.compression.name}",
            f"size {_size(result.size_bytes_before)} -> {_size(result.size_bytes_after)} "
            f"([bold]{summary.compression.size_ratio:.1f}x smaller[/bold]), sparsity "
            f"{result.sparsity:.0%}, {result.quantization}; accuracy "
            f"{result.baseline_accuracy:.2%} -> {result.final_accuracy:.2%}; "
            f"{len(result.trials)} trial(s), kept #{kept.index if kept else '-'}",
            f"{seconds.get('compress', 0):.1f} s",
        )
    if summary.serving is not None:
        serving = summary.serving
        served = serving.result
        backend = serving.backend_served
        if serving.backend_requested != backend:
            backend += f" (spec asks {serving.backend_requested}; same TorchScript)"
        table.add_row(
            f"serve {serving.name}",
            f"[bold]accuracy through Triton {served.accuracy:.2%}[/bold] "
            f"({served.correct}/{served.requests}); latency p50 {served.latency_ms_p50:.2f} ms, "
            f"p99 {served.latency_ms_p99:.2f} ms; {served.throughput_per_second:,.0f} req/s "
            f"({served.concurrency} clients); backend {backend}",
            f"{seconds.get('package', 0) + seconds.get('serve', 0):.1f} s",
        )
    table.add_row("total", f"outputs in {summary.output_dir}", f"{summary.total_seconds:.1f} s")
    return table


def write_summary(summary: RunSummary, output_dir: Path) -> Path:
    """summary.json (indented: people read it too)."""
    path = output_dir / SUMMARY_FILE
    path.write_text(summary.model_dump_json(indent=2, by_alias=True) + "\n")
    return path


def print_report(summary: RunSummary, console: Console) -> None:
    console.print(build_table(summary))
    for plot in summary.plots:
        console.print(f"plot: {Path(plot)}")
    console.print(f"summary: {Path(summary.output_dir) / SUMMARY_FILE}")

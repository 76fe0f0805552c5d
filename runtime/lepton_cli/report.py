"""The report at the end of `lepton run`: a table for people, summary.json for programs."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from lepton_cli.results import RunSummary
from lepton_runtime.contract import CompressSummary, TuningResult

SUMMARY_FILE = "summary.json"


def _size(num_bytes: int) -> str:
    return (
        f"{num_bytes / 1024:.1f} KiB" if num_bytes < 1024 * 1024 else f"{num_bytes / 2**20:.2f} MiB"
    )


def _quantization(result: CompressSummary) -> str:
    if result.codebook_bits is None:
        return result.quantization
    return f"{result.quantization} ({result.codebook_bits} bits)"


def _served_file(summary: RunSummary) -> str:
    """What the python backend ran in place of the backend the spec asked for."""
    compression = summary.compression
    if compression is not None and "model.lpc" in compression.summary.formats:
        return "model.lpc, the same weights"
    return "the same TorchScript"


def _tuning_rows(tuning: TuningResult | None) -> list[tuple[str, str]]:
    if tuning is None:
        return []
    chosen = tuning.chosen
    verdict = (
        ""
        if tuning.budget_met
        else f" [red](over the {tuning.latency_budget_ms:g} ms budget)[/red]"
    )
    return [
        ("tuned config", chosen.settings.describe()),
        ("tuned load", f"[bold]{chosen.throughput:,.0f} requests/s[/bold] at p99 "
         f"{chosen.p99_ms:.2f} ms{verdict} (gRPC)"),
        ("tuning", f"{len(tuning.candidates)} of {tuning.grid_size} candidates "
         f"({tuning.strategy}), {tuning.seconds:.0f} s"),
    ]  # fmt: skip


def build_table(summary: RunSummary) -> Table:
    """One section per step, in pipeline order, one figure per row (readable at 80 columns)."""
    table = Table(title="lepton run", show_lines=False)
    table.add_column("step", style="bold")
    table.add_column("figure")
    table.add_column("value")
    seconds = summary.step_seconds

    def section(step: str, rows: list[tuple[str, str]]) -> None:
        for index, (figure, value) in enumerate(rows):
            table.add_row(step if index == 0 else "", figure, value, end_section=False)
        table.add_section()

    if summary.search is not None:
        status = summary.search.status
        best = next((row for row in status.trials if row.name == status.best_trial), None)
        counts = {
            state: sum(row.state == state for row in status.trials)
            for state in ("Completed", "Pruned", "Failed")
        }
        rows = [
            ("phase", f"{status.phase}: {status.message or ''}"),
            ("trials", ", ".join(f"{count} {state.lower()}" for state, count in counts.items())),
            ("epochs trained", str(status.epochs_trained)),
            ("time", f"{seconds.get('search', 0):.1f} s"),
        ]
        if best is not None and best.metrics is not None:
            rows.insert(
                1,
                (
                    "best trial",
                    f"[bold]{best.name}[/bold] "
                    f"{best.metrics.accuracy or 0:.2%}, {best.metrics.parameters or 0:,} "
                    "parameters",
                ),
            )
        section(f"search {summary.search.name}", rows)
    if summary.training is not None:
        training = summary.training.summary
        rows = [
            ("test accuracy", f"{training.accuracy:.2%}"),
            ("final loss", f"{training.loss:.4f}"),
            ("epochs, steps, workers", f"{training.epochs}, {training.steps}, "
             f"{summary.training.workers}"),
            ("throughput", f"{training.samples_per_second:,.0f} samples/s"),
        ]  # fmt: skip
        if summary.search is None:
            took = ("time", f"{seconds.get('train', 0):.1f} s")
            section(f"train {summary.training.name}", [*rows, took])
        else:  # trained within the search's time
            section(f"best trial {summary.training.name}", rows)
    if summary.compression is not None:
        result = summary.compression.summary
        kept = next((t for t in result.trials if t.kept), None)
        section(
            f"compress {summary.compression.name}",
            [
                ("size", f"{_size(result.size_bytes_before)} -> {_size(result.size_bytes_after)}"
                 f" ([bold]{summary.compression.size_ratio:.1f}x smaller[/bold])"),
                ("accuracy", f"{result.baseline_accuracy:.2%} -> {result.final_accuracy:.2%}"),
                ("sparsity, quantization", f"{result.sparsity:.0%}, {_quantization(result)}"),
                ("trials", f"{len(result.trials)} (kept #{kept.index if kept else '-'})"),
                ("time", f"{seconds.get('compress', 0):.1f} s"),
            ],
        )  # fmt: skip
    if summary.serving is not None:
        serving = summary.serving
        served = serving.result
        backend = serving.backend_served
        if serving.backend_requested != backend:
            backend += f" (spec: {serving.backend_requested}; {_served_file(summary)})"
        section(
            f"serve {serving.name}",
            [
                ("accuracy through Triton", f"[bold]{served.accuracy:.2%}[/bold] "
                 f"({served.correct}/{served.requests})"),
                ("latency p50 / p99", f"{served.latency_ms_p50:.2f} / "
                 f"{served.latency_ms_p99:.2f} ms"),
                ("throughput", f"{served.throughput_per_second:,.0f} requests/s "
                 f"({served.concurrency} clients, HTTP)"),
                ("backend", backend),
                *_tuning_rows(serving.tuning),
                ("time", f"{seconds.get('package', 0) + seconds.get('serve', 0):.1f} s"),
            ],
        )  # fmt: skip
    table.add_row("total", "time", f"{summary.total_seconds:.1f} s")
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

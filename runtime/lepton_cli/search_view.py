"""The trial table of a local search, as `kubectl get lsearch -o yaml` would hold it, for people.

On a terminal the table is redrawn in place as trials start, go on and finish. Elsewhere (CI
logs, `| tee`) a redrawn table would fill the log, so each change of a trial is one line.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from lepton_operator.api.search import SearchStatus, SearchTrial

STATE_STYLE = {
    "Completed": "green",
    "Pruned": "yellow",
    "Paused": "magenta",
    "Failed": "red",
    "Running": "cyan",
    "Pending": "dim",
}


def _short(path: str) -> str:
    """`model.parameters.widthMultiplier` -> `widthMultiplier`: the table's column header."""
    return path.rsplit(".", 1)[-1]


def _cells(row: SearchTrial, best: str | None, front: list[str], names: list[str]) -> list[str]:
    metrics = row.metrics
    mark = "*" if row.name == best else ("+" if row.name in front else "")
    style = STATE_STYLE.get(row.state, "")
    return [
        f"{row.number}{mark}",
        f"[{style}]{row.state}[/{style}]" if style else row.state,
        str(row.epochs or "-"),
        f"{metrics.accuracy:.2%}" if metrics and metrics.accuracy is not None else "-",
        f"{metrics.parameters:,}" if metrics and metrics.parameters is not None else "-",
        f"{metrics.latency_ms:.2f}" if metrics and metrics.latency_ms is not None else "-",
        *(escape(row.params.get(name, "")) for name in names),
    ]


def trial_table(title: str, status: SearchStatus) -> Table:
    """One row per trial; * marks the best trial, + the rest of the Pareto front."""
    table = Table(title=escape(title), caption=escape(status.message or ""))
    for column in ("#", "state", "epochs", "accuracy", "parameters", "latency ms"):
        table.add_column(column, justify="left" if column == "state" else "right")
    names = sorted(status.trials[0].params) if status.trials else []
    for name in names:
        table.add_column(_short(name))
    for row in status.trials:
        table.add_row(*_cells(row, status.best_trial, status.pareto_front, names))
    return table


class SearchDisplay:
    """`update(status)` as the search goes; the final table stays on screen."""

    def __init__(self, title: str, console: Console) -> None:
        self.title = title
        self.console = console
        self._live = Live(console=console, auto_refresh=False) if console.is_terminal else None
        self._seen: dict[str, tuple[str, int | None]] = {}

    def __enter__(self) -> SearchDisplay:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, traceback)

    def update(self, status: SearchStatus) -> None:
        if self._live is not None:
            self._live.update(trial_table(self.title, status), refresh=True)
            return
        for row in status.trials:
            if self._seen.get(row.name) != (row.state, row.epochs):
                self._seen[row.name] = (row.state, row.epochs)
                accuracy = row.metrics.accuracy if row.metrics else None
                figure = f" accuracy {accuracy:.2%}" if accuracy is not None else ""
                self.console.print(
                    f"{escape(self.title)}: trial {row.number} {row.state} "
                    f"({row.epochs or '-'} epochs){figure}"
                )

    def print_final(self, status: SearchStatus) -> None:
        if self._live is None:
            self.console.print(trial_table(self.title, status))

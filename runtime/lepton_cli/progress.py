"""Progress of `lepton run`'s steps: live rows on a terminal, plain lines everywhere else.

On a terminal, rich draws one row per step. The columns with figures (count, elapsed time) keep
their width and only the free text gives way, so an 80-column terminal shows `2000/2000
0:00:12` whole and cuts a long status with an ellipsis (the bar is drawn from 100 columns on).
When stdout is not a terminal (CI logs, `| tee`), live rows would be redrawn into the log or
cut to the default width, so each step prints a line whenever its status changes instead: a
handful of lines per step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column


class StepProgress(Protocol):
    """What the pipeline's steps report: rich's `Progress` calls, the few they use."""

    def add_task(self, description: str, *, total: float | None, status: str) -> TaskID: ...

    def update(
        self,
        task_id: TaskID,
        *,
        total: float | None = None,
        completed: float | None = None,
        status: str | None = None,
    ) -> None: ...

    def advance(self, task_id: TaskID, advance: float = 1) -> None: ...

    def __enter__(self) -> StepProgress: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None: ...


# Columns of figures never give way: rich shrinks only the columns that may wrap, so the
# widths of the two text columns are what makes a row fit.
COUNT_WIDTH = 11  # "12000/12000"
ELAPSED_WIDTH = 7  # "0:00:12"
BAR_WIDTH = 12
DESCRIPTION_WIDTH = 30
WIDE_TERMINAL = 100  # below this the bar goes: the count says the same in fewer columns


def live_progress(console: Console) -> Progress:
    """Rows that fit the terminal: fixed columns for figures, the status takes what is left."""
    with_bar = console.width >= WIDE_TERMINAL
    columns = 5 + with_bar
    status_width = max(
        10,
        console.width
        - (1 + COUNT_WIDTH + ELAPSED_WIDTH + DESCRIPTION_WIDTH + columns - 1)
        - (BAR_WIDTH if with_bar else 0),
    )

    def text(width: int) -> Column:
        return Column(no_wrap=True, overflow="ellipsis", max_width=width)

    return Progress(
        SpinnerColumn(table_column=Column(no_wrap=True, width=1)),
        TextColumn("[bold]{task.description}", table_column=text(DESCRIPTION_WIDTH)),
        *([BarColumn(bar_width=BAR_WIDTH)] if with_bar else []),
        MofNCompleteColumn(table_column=Column(no_wrap=True, justify="right")),
        TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=ELAPSED_WIDTH)),
        TextColumn("{task.fields[status]}", table_column=text(status_width)),
        console=console,
    )


@dataclass
class _Step:
    description: str
    total: float | None
    status: str
    completed: float = 0
    started: float = field(default_factory=time.monotonic)


class PlainProgress:
    """One line per status change of a step: `train mnist (2 workers): epoch 2/3 loss 0.12`."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._steps: list[_Step] = []

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        return None

    def add_task(self, description: str, *, total: float | None, status: str) -> TaskID:
        self._steps.append(_Step(description, total, status))
        task = TaskID(len(self._steps) - 1)
        self._print(self._steps[task])
        return task

    def update(
        self,
        task_id: TaskID,
        *,
        total: float | None = None,
        completed: float | None = None,
        status: str | None = None,
    ) -> None:
        step = self._steps[task_id]
        if total is not None:
            step.total = total
        if completed is not None:
            step.completed = completed
        if status is not None and status != step.status:
            step.status = status
            self._print(step)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        self._steps[task_id].completed += advance

    def _print(self, step: _Step) -> None:
        count = f"{step.completed:.0f}/{step.total:.0f}, " if step.total else ""
        elapsed = time.monotonic() - step.started
        self._console.print(
            f"{escape(step.description)}: {escape(step.status or 'started')}"
            f" ({count}{elapsed:.0f} s)",
            highlight=False,
            soft_wrap=True,
        )


def step_progress(console: Console) -> StepProgress:
    """Live rows on a terminal, plain lines when the output goes to a file or a pipe."""
    if console.is_terminal and not console.is_dumb_terminal:
        return live_progress(console)
    return PlainProgress(console)

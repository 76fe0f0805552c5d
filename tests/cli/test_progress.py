"""`lepton run`'s progress: whole figures in an 80-column terminal, plain lines in a log."""

from __future__ import annotations

import io
import re

from rich.console import Console

from lepton_cli.progress import PlainProgress, live_progress, step_progress

ELAPSED = re.compile(r"\b\d:\d\d:\d\d\b")


def _terminal(width: int) -> Console:
    return Console(record=True, width=width, force_terminal=True, file=io.StringIO())


def _log() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=80, force_terminal=False), out


def test_rows_keep_their_figures_whole_in_80_columns() -> None:
    console = _terminal(80)
    progress = live_progress(console)
    train = progress.add_task("train mnist (2 workers)", total=375, status="starting")
    serve = progress.add_task("serve mnist on Triton", total=2000, status="starting")
    progress.update(train, completed=375, status="epoch 3/3 loss 0.0421, accuracy 98.35%")
    progress.update(serve, completed=2000, status="accuracy 98.30% at http://127.0.0.1:40123")
    console.print(progress.make_tasks_table(progress.tasks))
    rows = console.export_text().splitlines()
    assert len(rows) == 2
    assert all(len(row) <= 80 for row in rows), rows
    assert "375/375" in rows[0] and "2000/2000" in rows[1]
    assert all(ELAPSED.search(row) for row in rows), rows
    assert "train mnist (2 workers)" in rows[0] and "serve mnist on Triton" in rows[1]
    # Only the free text gives way, with an ellipsis where it was cut.
    assert rows[1].rstrip().endswith("…")


def test_a_wide_terminal_shows_the_whole_status() -> None:
    console = _terminal(140)
    progress = live_progress(console)
    progress.add_task("serve mnist on Triton", total=2000, status="accuracy 98.30% at 127.0.0.1")
    console.print(progress.make_tasks_table(progress.tasks))
    assert "accuracy 98.30% at 127.0.0.1" in console.export_text()


def test_outside_a_terminal_each_status_change_is_one_plain_line() -> None:
    console, out = _log()
    progress = step_progress(console)
    assert isinstance(progress, PlainProgress)
    with progress:
        task = progress.add_task("train mnist (2 workers)", total=375, status="starting")
        for step in range(1, 376):
            epoch = 1 + (step - 1) // 125
            progress.update(task, completed=step, status=f"epoch {epoch}/3")
        progress.update(task, completed=375, status="accuracy 98.35%")
        serve = progress.add_task("serve mnist on Triton", total=4, status="starting")
        for _ in range(4):
            progress.advance(serve)
        progress.update(serve, status="accuracy 100.00%")
    lines = out.getvalue().splitlines()
    assert [re.sub(r" \(.*\)$", "", line.split(": ", 1)[1]) for line in lines] == [
        "starting", "epoch 1/3", "epoch 2/3", "epoch 3/3", "accuracy 98.35%",
        "starting", "accuracy 100.00%",
    ]  # fmt: skip
    assert "(375/375, " in lines[4] and "(4/4, " in lines[6]
    assert not any("━" in line or "\r" in line for line in lines)  # no bar, nothing redrawn


def test_a_terminal_gets_live_rows() -> None:
    assert not isinstance(step_progress(_terminal(80)), PlainProgress)

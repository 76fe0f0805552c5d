"""Live processes of this machine, read from /proc: for tests about orphans and stopped children."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def live_processes() -> Iterator[tuple[Path, list[str]]]:
    """(/proc/PID, the stat fields after the command name: state, ppid, pgrp, ...) of every
    live process. Zombies are left out: they await a reaper and run nothing. Orphans are
    re-parented to init, so looking below the process a test started would miss them."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if fields[0] != "Z":
            yield entry, fields

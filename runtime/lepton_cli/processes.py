"""Child processes that cannot outlive `lepton run`.

torchrun starts every worker in a session of its own, so neither a Ctrl-C at the terminal nor
killing torchrun's process group reaches the workers; and a worker stuck in a collective never
notices that its peers died. So each child starts in its own session (Ctrl-C reaches only us;
we decide the order of shutdown), we snapshot the whole process tree before stopping it, ask
politely (SIGTERM lets torchrun stop its workers), and SIGKILL whatever of that snapshot is
still alive after a grace period. A child also gets SIGTERM from the kernel if we die abruptly.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, TracebackType

PR_SET_PDEATHSIG = 1
DEFAULT_GRACE_SECONDS = 15.0


class Interrupted(Exception):  # noqa: N818 (it is an event, not an error in the code)
    """The user (Ctrl-C) or the system (SIGTERM, SIGHUP) asked us to stop."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"interrupted by {signal_name}")
        self.signal_name = signal_name


@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise `Interrupted`: `finally` blocks clean up for all three."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in handled}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Shield clean-up from a second Ctrl-C: a half-done clean-up is what leaves orphans."""
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in handled}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM when our process dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process we can see (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Every process below `pid` in the process tree (children first)."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop(0)
        for child in children.get(current, []):
            found.append(child)
            frontier.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes (its parent will reap it)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


class ProcessSupervisor:
    """Starts children and, on `stop_all` or leaving the `with` block, ends them and their trees."""

    def __init__(self, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> None:
        self.grace_seconds = grace_seconds
        self._children: list[subprocess.Popen[bytes]] = []

    def start(
        self, command: list[str], *, env: dict[str, str], log_path: Path, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `command` in its own session with stdout and stderr going to `log_path`."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (no threads of ours run yet)
            )
        self._children.append(process)
        return process

    def wait(
        self,
        process: subprocess.Popen[bytes],
        *,
        on_tick: Callable[[], None] | None = None,
        interval: float = 0.5,
    ) -> int:
        """Wait for `process`, calling `on_tick` (progress) every `interval` seconds."""
        while True:
            try:
                code = process.wait(timeout=interval)
            except subprocess.TimeoutExpired:
                if on_tick is not None:
                    on_tick()
                continue
            self.stop(process)  # a finished torchrun may still leave a straggling worker
            return code

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM the child's tree, wait for the grace period, then SIGKILL what is left."""
        tree = [process.pid, *descendants(process.pid)] if process.poll() is None else []
        for pid in tree:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        while time.monotonic() < deadline and any(_alive(pid) for pid in tree):
            if process.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.1)
            else:
                time.sleep(0.1)
        for pid in tree:
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=self.grace_seconds)
        if process in self._children:
            self._children.remove(process)

    def stop_all(self) -> None:
        """End every child still known, newest first."""
        for process in reversed(list(self._children)):
            self.stop(process)

    def __enter__(self) -> ProcessSupervisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()

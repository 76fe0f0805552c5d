"""Start, watch and stop the control plane's processes, remembered through pid files.

The components outlive the `cluster-up` command that starts them, so their pids are written to
``<state>/pids/<component>.pid``; `down()` (or the next `up()` after a killed run) reads them back.
A pid is only signalled when its /proc cmdline still names the binary we started, so a recycled pid
never hits an unrelated process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Log phrases that mean "a port was taken", in Go's and etcd's wording.
_PORT_IN_USE = ("address already in use", "bind: address already in use")


class ComponentError(RuntimeError):
    """A component could not start or exited early; the message names it and its log."""


@dataclass(frozen=True)
class Managed:
    """A process we started, as remembered in its pid file."""

    name: str
    pid: int
    binary: str
    log: Path


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def log_tail(log: Path, lines: int = 12) -> str:
    if not log.exists():
        return "(no log written)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _pid_dir(state: Path) -> Path:
    return state / "pids"


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def is_alive(proc: Managed) -> bool:
    if not proc.binary:
        return False
    # A zombie keeps its pid until its parent waits for it; it is no longer running.
    status = Path(f"/proc/{proc.pid}/status")
    try:
        if "State:\tZ" in status.read_text():
            return False
    except OSError:
        return False
    return proc.binary in _cmdline(proc.pid)


def start(
    state: Path,
    name: str,
    args: list[str],
    env: dict[str, str] | None = None,
    *,
    append_log: bool = False,
) -> Managed:
    """Start one component detached from our session, logging to <state>/logs/<name>.log."""
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _pid_dir(state).mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("a" if append_log else "w") as out:
        # A new session: the component survives the `cluster-up` command and ^C in its shell.
        popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    proc = Managed(name, popen.pid, args[0], log)
    # Popen can return while the child still runs our interpreter image (vfork before exec);
    # wait until /proc shows the component, so that is_alive() never mistakes it for dead.
    deadline = time.monotonic() + 5
    while args[0] not in _cmdline(popen.pid) and popen.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    (_pid_dir(state) / f"{name}.pid").write_text(f"{popen.pid}\n{args[0]}\n")
    return proc


def terminate(process: subprocess.Popen[bytes], grace_seconds: float = 20.0) -> None:
    """SIGTERM a child we hold, SIGKILL it if it is still there after the grace period."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def recorded(state: Path) -> list[Managed]:
    """Every process that a pid file remembers, in start order."""
    pid_dir = _pid_dir(state)
    if not pid_dir.is_dir():
        return []
    procs = []
    for pid_file in sorted(pid_dir.glob("*.pid"), key=lambda p: p.stat().st_mtime):
        pid_text, _, binary = pid_file.read_text().partition("\n")
        if not pid_text.strip().isdigit() or not binary.strip():
            # Not written by start(): without the binary we cannot tell a recycled pid apart.
            continue
        name = pid_file.stem
        procs.append(Managed(name, int(pid_text), binary.strip(), state / "logs" / f"{name}.log"))
    return procs


def check_running(proc: Managed) -> None:
    """Raise a ComponentError naming the component and its log if it is no longer running."""
    if is_alive(proc):
        return
    _reap(proc.pid)
    tail = log_tail(proc.log)
    reason = "exited early"
    bind_errors = (
        [
            line
            for line in proc.log.read_text(errors="replace").splitlines()
            if any(phrase in line for phrase in _PORT_IN_USE)
        ]
        if proc.log.exists()
        else []
    )
    if bind_errors:
        reason = "could not bind its port (address already in use)"
        tail = bind_errors[0]
    raise ComponentError(f"{proc.name} {reason}; log: {proc.log}\n{tail}")


def _reap(pid: int) -> None:
    # Our own children turn into zombies until waited for; others are not ours to wait on.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_all(state: Path, grace_seconds: float = 10.0) -> list[str]:
    """Stop every recorded process, newest first; returns the names of those that were running.

    One at a time: the API server shuts down in about a second while etcd is there, but hangs
    in retries when etcd goes first. SIGKILL only for a process that ignores SIGTERM.
    """
    stopped = []
    for proc in reversed(recorded(state)):
        if _stop(proc, grace_seconds):
            stopped.append(proc.name)
        (_pid_dir(state) / f"{proc.name}.pid").unlink(missing_ok=True)
    return stopped


def stop_one(state: Path, proc: Managed, grace_seconds: float = 10.0) -> bool:
    """Stop one recorded process and forget its pid file; False when it was not running."""
    running = _stop(proc, grace_seconds)
    (_pid_dir(state) / f"{proc.name}.pid").unlink(missing_ok=True)
    return running


def _stop(proc: Managed, grace_seconds: float) -> bool:
    """SIGTERM, then SIGKILL after the grace period; False when it was not running."""
    running = is_alive(proc)
    if running:
        os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while is_alive(proc) and time.monotonic() < deadline:
            _reap(proc.pid)
            time.sleep(0.05)
        if is_alive(proc):
            os.kill(proc.pid, signal.SIGKILL)
    _reap(proc.pid)
    return running


def restart(state: Path, name: str, downtime_seconds: float = 0.0) -> Managed:
    """Stop one running component and start it again with the same command line.

    What a crash-looping or upgraded component looks like to its clients: same ports, same
    data directory, a new pid. The command line is read back from /proc (the pid file has only
    the binary); the environment is ours, as it was when `start` ran. The log is appended to,
    so what the component said before the restart stays readable, and the pid file keeps its
    place in the start order, so that `stop_all` still stops etcd last.
    """
    proc = next((p for p in recorded(state) if p.name == name), None)
    if proc is None or not is_alive(proc):
        raise ComponentError(f"{name} is not running: nothing to restart")
    args = [arg.decode() for arg in Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")]
    args = args[:-1] if args and not args[-1] else args  # the trailing NUL
    pid_file = _pid_dir(state) / f"{name}.pid"
    started_at = pid_file.stat().st_mtime
    _stop(proc, grace_seconds=10.0)
    time.sleep(downtime_seconds)  # a component that stays away a while, not a blink
    restarted = start(state, name, args, append_log=True)
    os.utime(pid_file, (started_at, started_at))
    return restarted


def wait_ready(
    what: str,
    ready: Callable[[], bool],
    watched: list[Managed],
    owner: Managed,
    timeout: float = 90.0,
) -> None:
    """Poll `ready` until true; fail naming `owner` if any watched process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in watched:
            check_running(proc)
        try:
            if ready():
                return
        except Exception:  # "not ready yet" comes in many shapes while starting
            pass
        if time.monotonic() > deadline:
            tail = log_tail(owner.log)
            raise ComponentError(
                f"{owner.name}: gave up after {timeout:.0f} s waiting for {what}; "
                f"log: {owner.log}\n{tail}"
            )
        time.sleep(0.25)

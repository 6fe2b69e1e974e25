"""Process trees read from /proc: which processes a command started, and whether any is left.

A test of clean stops records a process tree before it sends a signal, then checks that every
process in it has ended. A process is named by its pid *and* its start time, so a pid the kernel
hands to a newer process is not mistaken for a survivor.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Proc", "descendants", "kill_left", "running"]

PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    """One process as seen at one moment: enough to find it again and say what it was."""

    pid: int
    start: int
    """Start time in clock ticks after boot (field 22 of /proc/PID/stat)."""
    argv: tuple[str, ...]

    @property
    def command(self) -> str:
        """The command line, for messages."""
        return " ".join(self.argv)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of `pid`, or None once it is gone and reaped."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or parentheses.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _argv(pid: int) -> tuple[str, ...]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ()
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def descendants(root: int) -> list[Proc]:
    """Every live process below `root` (children, their children...), not `root` itself."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[1], []).append(int(entry.name))
    found: list[Proc] = []
    frontier = list(children.get(root, []))
    while frontier:
        pid = frontier.pop()
        stat = _stat(pid)
        if stat is None or stat[0] in "ZX":
            continue
        found.append(Proc(pid, stat[2], _argv(pid)))
        frontier.extend(children.get(pid, []))
    return found


def running(proc: Proc) -> bool:
    """Whether that very process still runs (a zombie has ended: only its exit code is left)."""
    stat = _stat(proc.pid)
    return stat is not None and stat[2] == proc.start and stat[0] not in "ZX"


def kill_left(procs: list[Proc]) -> list[Proc]:
    """SIGKILL those still running, by pid (a test's teardown); return which they were."""
    left = [proc for proc in procs if running(proc)]
    for proc in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    return left

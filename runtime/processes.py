"""Child processes that never outlive lockgate, however it ends.

They are the demo's services, the embedded Temporal server, the end-to-end tests' servers and
workers.

Each child runs in its own session (so its own process group) with its output in a log file.
Stopping a child signals its whole group, so whatever it started (the dev server of an embedded
worker, a server's helpers) goes with it; a terminal's Ctrl-C or hang-up reaches lockgate alone,
which then stops its children in order instead of having them die half-way through a write.

A parent stopped by a signal it can catch stops its children itself: the demo through
`exit_on_signals`, the worker through its own handlers (SIGINT, SIGTERM and SIGHUP alike). A
parent that cannot (SIGKILL, the OOM killer, a crash in native code) leaves that to its
*watchdog*: one small process per parent, started with the first child, reading a pipe whose
write end only the parent holds. The kernel closes that end when the parent dies, however it
dies; the watchdog reads end-of-file and stops every process group still registered with it
(SIGTERM, then SIGKILL after `WATCHDOG_GRACE`). The parent registers each child's group when it
starts it and withdraws it once the group is stopped and reaped, so a recycled process-group id
is never signalled.

Why a supervising pipe and not PR_SET_PDEATHSIG in the child: the death signal fires when the
*thread* that forked the child ends, not the process, so a child started from a worker thread
(`asyncio.to_thread`, an executor) would be killed when that thread is retired; setting it
needs Python code between fork and exec (`preexec_fn`), which can deadlock in a process running
threads, as the Temporal SDK and httpx do; it reaches only the direct child, not what the child
started in its group; and it is Linux only. The pipe has none of these problems, works on macOS
as on Linux, and costs one idle process per parent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from tenacity import AsyncRetrying, retry_if_result, stop_after_delay, wait_fixed

__all__ = [
    "STOP_GRACE",
    "WATCHDOG_GRACE",
    "ManagedProcess",
    "exit_on_signals",
    "free_port",
    "port_open",
    "stop_all",
    "stop_groups",
]

ROOT = Path(__file__).resolve().parent.parent

STOP_GRACE = 3.0
"""Seconds a child has between SIGTERM and SIGKILL when lockgate itself stops: long enough for
the worker to hand back its tasks and the dev server to close its database, short enough that a
whole stop stays within five seconds."""

WATCHDOG_GRACE = 1.5
"""The watchdog's SIGTERM-to-SIGKILL delay. Shorter than STOP_GRACE: its parent is already gone,
and a process it kills may have a watchdog of its own that then takes its turn (a worker still
draining at STOP_GRACE, then its dev server, which closes its database in about half a second):
3 + 1.5 seconds at worst, within five."""


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
"""Where Linux says which ports it hands out by itself (32768-60999 by default)."""
_FREE_PORTS_BELOW = 16_384
"""How many ports under the ephemeral range `free_port` chooses from."""
_handed_out: collections.deque[int] = collections.deque(maxlen=1024)
"""The ports chosen last: chosen again only once a thousand others have been (and bound)."""
_handed_out_lock = threading.Lock()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now, and that the kernel will not hand out.

    A port the kernel picks (bind to port 0) comes from its ephemeral range, where it also picks
    the local port of every outgoing connection and every other program's "any free port", and
    any of them may take it before the caller's server binds it. The Temporal dev server picks
    its internal services' ports that way: once, in CI, its worker service took the frontend
    port chosen for it, and the server died after its frontend had answered. Below the range
    only a program that names a port takes one, so the port is chosen there, at random, checked
    free, and not one of the last thousand this process chose (several are often chosen before
    any is bound). Without a readable range (not Linux), the kernel picks.
    """
    low = _ephemeral_low()
    if low is not None and low - _FREE_PORTS_BELOW >= 1024:
        rng = random.SystemRandom()
        for _ in range(200):
            port = rng.randrange(low - _FREE_PORTS_BELOW, low)
            with _handed_out_lock:
                if port in _handed_out or not _bindable(port):
                    continue
                _handed_out.append(port)
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _ephemeral_low() -> int | None:
    """The lowest port the kernel hands out by itself, or None where that cannot be read."""
    try:
        return int(EPHEMERAL_RANGE.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# ---------------------------------------------------------------------------------- stopping


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a recycled id now held by another user's group: not ours
        return False
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_groups(pgids: Iterable[int], grace: float = WATCHDOG_GRACE) -> None:
    """SIGTERM every process group, SIGKILL those with a member left after `grace` seconds.

    For groups whose leader is not this process's child (the watchdog's case): their end is
    seen by polling, since there is no child to wait for.
    """
    groups = set(pgids)
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        time.sleep(0.05)
        groups = {pgid for pgid in groups if _group_alive(pgid)}
    for pgid in groups:
        _signal_group(pgid, signal.SIGKILL)


class _Watchdog:
    """This process's watchdog: the child groups to stop should this process die first.

    Started on the first registration; started again (with every group still registered) if it
    died, or in a forked child of this process, which must not share its parent's pipe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: set[int] = set()
        self._popen: subprocess.Popen[bytes] | None = None
        self._inherited: subprocess.Popen[bytes] | None = None
        self._owner = os.getpid()

    def register(self, pgid: int) -> None:
        """Have the watchdog stop `pgid` if this process dies."""
        with self._lock:
            self._groups.add(pgid)
            self._send(f"+{pgid}\n", start=True)

    def withdraw(self, pgid: int) -> None:
        """The group is stopped and reaped: its id may be recycled, never signal it again."""
        with self._lock:
            if pgid in self._groups:
                self._groups.discard(pgid)
                self._send(f"-{pgid}\n", start=False)

    def forget(self) -> None:
        """In a forked child: drop the parent's pipe and groups, which are not this process's."""
        self._lock = threading.Lock()
        if self._popen is not None and self._popen.stdin is not None:
            with contextlib.suppress(OSError):
                self._popen.stdin.close()
        self._inherited = self._popen  # kept, not collected: it is the parent's to wait for
        self._popen = None
        self._groups = set()
        self._owner = os.getpid()

    def _send(self, line: str, *, start: bool) -> None:
        pipe = self._pipe(start)
        if pipe is None:
            return
        try:
            pipe.write(line.encode())
            pipe.flush()
        except OSError:  # the watchdog died; the next registration starts another
            self._popen = None

    def _pipe(self, start: bool) -> IO[bytes] | None:
        running = (
            self._popen is not None and self._owner == os.getpid() and self._popen.poll() is None
        )
        if running:
            assert self._popen is not None
            return self._popen.stdin
        if not start:
            return None
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        # Its own session: a terminal's Ctrl-C or hang-up must not end it before its parent;
        # stdin is the pipe (non-inheritable, so no other child holds its write end open).
        self._popen = subprocess.Popen(
            [sys.executable, "-m", "runtime.processes"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env,
            start_new_session=True,
        )  # fmt: skip
        self._owner = os.getpid()
        assert self._popen.stdin is not None
        self._popen.stdin.write("".join(f"+{pgid}\n" for pgid in self._groups).encode())
        return self._popen.stdin


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG.forget)


def _watch(stream: IO[bytes]) -> None:
    """The watchdog's body: follow registrations until end-of-file, then stop what is left."""
    for sig in (signal.SIGINT, signal.SIGHUP):  # only the parent's end ends the watch
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    for raw in stream:
        line = raw.strip()
        with contextlib.suppress(ValueError):
            if line.startswith(b"+"):
                groups.add(int(line[1:]))
            elif line.startswith(b"-"):
                groups.discard(int(line[1:]))
    stop_groups(groups, WATCHDOG_GRACE)


# ------------------------------------------------------------------------------- processes


class ManagedProcess:
    """One child process, its log, and a stop that does not leave orphans."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        """Start the process in a new session (its own group), watched by this one's watchdog."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        _WATCHDOG.register(self.popen.pid)
        return self

    @property
    def pid(self) -> int | None:
        """The process id (also its group's id), once started."""
        return None if self.popen is None else self.popen.pid

    @property
    def alive(self) -> bool:
        """Whether the process is running."""
        if self.popen is None:
            return False
        if self.popen.poll() is None:
            return True
        if not _group_alive(self.popen.pid):  # ended by itself, with all it started
            _WATCHDOG.withdraw(self.popen.pid)
        return False

    def output(self) -> str:
        """Everything the process has written so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after `timeout`; return the exit code."""
        stop_all([self], timeout)
        return None if self.popen is None else self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash or an OOM kill would."""
        if self.popen is not None and self.popen.poll() is None:
            self._signal(signal.SIGKILL)
            self.popen.wait(10)
            _WATCHDOG.withdraw(self.popen.pid)

    def terminate(self) -> None:
        """Ask the group to stop (SIGTERM), without waiting; `stop_all` waits for many at once."""
        if self.popen is not None and self.popen.poll() is None:
            self._signal(signal.SIGTERM)

    def _finish(self, deadline: float) -> None:
        """Wait for the leader until `deadline`, then SIGKILL the group, whatever is left in it."""
        if self.popen is None:
            return
        try:
            self.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.popen.wait(10)
        self._signal(signal.SIGKILL)  # whatever the leader left behind in its group
        _WATCHDOG.withdraw(self.popen.pid)  # nothing in the group can outlive SIGKILL

    def _signal(self, sig: signal.Signals) -> None:
        assert self.popen is not None
        _signal_group(self.popen.pid, sig)

    async def wait_ready(self, ready: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
        """Poll `ready` until it holds; fail with the log's tail if the process dies or stalls."""

        async def probe() -> bool:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited early:\n{self._tail()}")
            try:
                return await ready()
            except OSError:
                return False

        polls = AsyncRetrying(
            retry=retry_if_result(lambda ok: not ok),
            stop=stop_after_delay(within),
            wait=wait_fixed(0.2),
            retry_error_callback=lambda state: False,
        )
        if not await polls(probe):
            raise TimeoutError(f"{self.name} was not ready within {within:.0f}s:\n{self._tail()}")

    def _tail(self, lines: int = 20) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


def stop_all(processes: Sequence[ManagedProcess], timeout: float = STOP_GRACE) -> None:
    """Stop several processes at once, within one `timeout` rather than one per process.

    SIGTERM goes to each group in the given order, then all share the wait before SIGKILL.
    """
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        process._finish(deadline)


# ---------------------------------------------------------------------------- this process


@contextlib.contextmanager
def exit_on_signals(
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGHUP),
) -> Iterator[None]:
    """Within the running asyncio task, make SIGTERM and SIGHUP what Ctrl-C already is.

    `asyncio.run` turns SIGINT into a cancellation of its task, so the task's `finally` blocks
    stop its children. SIGTERM (systemd, `docker stop`, `timeout`, a cancelled CI job) and
    SIGHUP (a closed terminal) would end the process on the spot and leave them running; here
    they cancel the task the same way, and once it has unwound the process exits with 128 + the
    signal's number, as a death by that signal would report. A second signal while stopping is
    ignored: the stop is already under way and bounded.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if not received and task is not None:
            task.cancel()
        received.append(sig)

    def install(sig: signal.Signals) -> bool:
        if previous[sig] == signal.SIG_IGN:  # `nohup` asked for hang-ups to be ignored
            return False
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread; Windows
            return False
        return True

    previous = {sig: signal.getsignal(sig) for sig in signals}
    installed = [sig for sig in signals if install(sig)]
    try:
        yield
    except asyncio.CancelledError:
        if received:
            raise SystemExit(128 + received[0]) from None
        raise
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
            with contextlib.suppress(TypeError, ValueError):  # a handler set outside Python
                signal.signal(sig, previous[sig])
    if received:  # the signal came as the task was finishing: still a stop by that signal
        raise SystemExit(128 + received[0])


if __name__ == "__main__":  # the watchdog: `python -m runtime.processes`, started by _Watchdog
    _watch(sys.stdin.buffer)

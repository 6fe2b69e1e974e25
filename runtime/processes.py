"""Child processes that are always cleaned up: the demo's services and the e2e tests' ones.

Each child runs in its own process group with its output in a log file, so stopping it stops
everything it started (uvicorn workers, the dev server of an embedded worker) and nothing is left
behind after Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from tenacity import AsyncRetrying, retry_if_result, stop_after_delay, wait_fixed

__all__ = ["ManagedProcess", "free_port", "port_open"]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


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
        """Start the process in a new session (its own process group)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    @property
    def alive(self) -> bool:
        """Whether the process is running."""
        return self.popen is not None and self.popen.poll() is None

    def output(self) -> str:
        """Everything the process has written so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after `timeout`; return the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait(10)
        self._signal(signal.SIGKILL)  # whatever the leader left behind in its group
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash or an OOM kill would."""
        if self.popen is not None and self.popen.poll() is None:
            self._signal(signal.SIGKILL)
            self.popen.wait(10)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

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

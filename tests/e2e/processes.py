"""Real processes for end-to-end tests: the Temporal dev server and `python worker.py`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from runtime.embedded import EmbeddedTemporal

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Process:
    """A child process with its output in a log file, killed for sure when the test ends."""

    def __init__(self, command: list[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.command = command
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no clean-up code runs."""
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, as an orchestrator stopping the service; returns the exit code."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def dev_server(data_dir: Path, port: int, ui_port: int) -> Process:
    """The same dev-server command the worker embeds, as a process the test can kill."""
    command = EmbeddedTemporal(data_dir, port=port, ui_port=ui_port).command()
    data_dir.mkdir(parents=True, exist_ok=True)
    return Process(command, data_dir / "server.log")


def worker_process(log: Path, env: Mapping[str, str]) -> Process:
    """`python worker.py` with the given environment (TEMPORAL_ADDRESS etc.)."""
    defaults = {"LOCKGATE_METRICS_ADDRESS": "", "PYTHONUNBUFFERED": "1"}
    return Process([sys.executable, "worker.py"], log, {**defaults, **env})

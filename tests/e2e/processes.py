"""Real processes for end-to-end tests: the Temporal dev server, `python worker.py`, and for
the replica tests `redis-server` and `python -m gateway`.

Both are `ManagedProcess`es, so none outlives the test run: a test's teardown stops them, and
if pytest itself is killed (a CI job cancelled, a `kill -9`) its watchdog stops them.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.embedded import EmbeddedTemporal
from runtime.processes import ManagedProcess, free_port, port_open

ROOT = Path(__file__).resolve().parents[2]


def dev_server(data_dir: Path, port: int, ui_port: int) -> ManagedProcess:
    """The same dev-server command the worker embeds, as a process the test can kill."""
    command = EmbeddedTemporal(data_dir, port=port, ui_port=ui_port).command()
    return ManagedProcess("temporal", command, data_dir / "server.log", cwd=ROOT)


def worker_process(log: Path, env: Mapping[str, str]) -> ManagedProcess:
    """`python worker.py` with the given environment (TEMPORAL_ADDRESS etc.)."""
    defaults = {"LOCKGATE_METRICS_ADDRESS": "", "PYTHONUNBUFFERED": "1"}
    return ManagedProcess(
        "worker", [sys.executable, "worker.py"], log, env={**defaults, **env}, cwd=ROOT
    )


REDIS_MISSING = (
    "redis-server is not installed (Debian package `redis-server`; .ci/run installs it): the "
    "replica tests share routes through a real Redis"
)
"""The skip reason of every test that needs a Redis, when the binary is missing locally."""


@dataclass(frozen=True)
class RunningRedis:
    """A redis-server the test started: its process (to kill) and its URL."""

    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        """The route store URL for `--route-store`."""
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(data_dir: Path, port: int | None = None, within: float = 15.0) -> RunningRedis:
    """Debian's redis-server on a free loopback port, in memory only, ready (bounded wait).

    No RDB snapshots and no append-only file (`--save "" --appendonly no`): nothing is left in
    `data_dir` but its log. Stop it with `.process.kill()` (by its pid).
    """
    binary = shutil.which("redis-server")
    assert binary is not None, REDIS_MISSING
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
        "--appendonly", "no", "--dir", str(data_dir), "--daemonize", "no",
    ]  # fmt: skip
    process = ManagedProcess("redis", command, data_dir / "redis.log", cwd=data_dir).start()
    deadline = time.monotonic() + within
    while not port_open(port):
        if not process.alive or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"redis-server did not listen on {port}: {process.output()}")
        time.sleep(0.02)  # polling a port, bounded by the deadline above
    return RunningRedis(process, port)


def gateway_process(
    log: Path,
    port: int,
    control_port: int,
    policy_uris: Sequence[str],
    route_store: str,
) -> ManagedProcess:
    """`python -m gateway` on loopback ports, its routes in the Redis at `route_store`."""
    command = [
        sys.executable, "-m", "gateway", "--port", str(port), "--control-port",
        str(control_port), "--insecure-control-plane", "--route-store", route_store,
    ]  # fmt: skip
    for uri in policy_uris:
        command += ["--policy-uri", uri]
    return ManagedProcess("gateway", command, log, env={"PYTHONUNBUFFERED": "1"}, cwd=ROOT)

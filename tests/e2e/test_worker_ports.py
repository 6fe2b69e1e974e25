"""`python worker.py` with a port already taken: one clear line naming it, no traceback.

The metrics address (LOCKGATE_METRICS_ADDRESS) and, with the embedded server, its gRPC and UI
ports (LOCKGATE_TEMPORAL_PORT, LOCKGATE_UI_PORT) are each held by a plain socket here; the
worker must exit non-zero saying which address is busy and which variable moves it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from runtime.processes import ManagedProcess, free_port
from tests.e2e.processes import worker_process
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port some other program listens on (and never answers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port: int = sock.getsockname()[1]
        yield port


async def _exit_code(worker: ManagedProcess) -> int:
    """Start the worker and wait for it to give up; it is stopped either way."""
    worker.start()
    try:
        await wait_until(lambda: not worker.alive, timeout=45, what="the worker to exit")
    finally:
        code = worker.stop()
    assert code is not None
    return code


def _assert_one_clear_line(output: str, address: str, variable: str) -> None:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, output
    assert "lockgate worker cannot start" in errors[0]
    assert address in errors[0]
    assert "already in use" in errors[0]
    assert f"set {variable} to" in errors[0]


async def test_a_busy_metrics_address_names_it_and_its_variable(
    tmp_path: Path, client: Client, held_port: int
) -> None:
    address = f"127.0.0.1:{held_port}"
    worker = worker_process(
        tmp_path / "worker.log",
        {
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "LOCKGATE_TASK_QUEUE": "ports-metrics",
            "LOCKGATE_METRICS_ADDRESS": address,
        },
    )

    assert await _exit_code(worker) != 0
    _assert_one_clear_line(worker.output(), address, "LOCKGATE_METRICS_ADDRESS")


@pytest.mark.parametrize("busy", ["LOCKGATE_TEMPORAL_PORT", "LOCKGATE_UI_PORT"])
async def test_a_busy_embedded_server_port_names_it_and_its_variable(
    tmp_path: Path, held_port: int, busy: str
) -> None:
    ports = {"LOCKGATE_TEMPORAL_PORT": str(free_port()), "LOCKGATE_UI_PORT": str(free_port())}
    ports[busy] = str(held_port)
    worker = worker_process(
        tmp_path / "worker.log", {"LOCKGATE_DATA_DIR": str(tmp_path / "data"), **ports}
    )
    worker.env.pop("TEMPORAL_ADDRESS", None)  # the embedded server, whatever this shell has

    assert await _exit_code(worker) != 0
    _assert_one_clear_line(worker.output(), f"127.0.0.1:{held_port}", busy)
    assert not (tmp_path / "data" / "temporal.log").exists(), "no server was started"

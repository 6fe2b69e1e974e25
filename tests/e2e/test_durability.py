"""Durability: `python worker.py` killed mid-stage, the server restarted on its SQLite file."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from rollout_specs import RolloutSpec
from runtime.client import connect
from runtime.processes import ManagedProcess, free_port, port_open
from runtime.rollouts import query_status, submit_rollout
from runtime.settings import Settings
from tests.conftest import build_spec, spec_document
from tests.e2e.processes import dev_server, worker_process
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from workflows.state import Phase

pytestmark = pytest.mark.e2e


def _slow_spec(router: RouterServer, metrics: MetricsServer) -> RolloutSpec:
    document = spec_document(router.url, metrics.url)
    for stage, bake in zip(document["spec"]["stages"], ["2s", "4s", "4s", "2s"], strict=True):
        stage["min_duration"] = bake
    return build_spec(document)


async def _client(port: int) -> Client:
    return await connect(Settings(temporal_address=f"127.0.0.1:{port}"))


def _started(worker: ManagedProcess) -> bool:
    return "polling task queue" in worker.output()


def _distinct_routes(router: RouterServer) -> list[tuple[str, float]]:
    return [(r["mode"], r["percent"]) for r in router.history]


EXPECTED_ROUTES = [("shadow", 0), ("split", 10), ("split", 50), ("split", 100), ("off", 0)]


async def test_a_killed_worker_is_replaced_and_the_rollout_continues_from_the_same_stage(
    tmp_path: Path, processes: list[ManagedProcess], router: RouterServer, metrics: MetricsServer
) -> None:
    port = free_port()
    processes.append(dev_server(tmp_path / "server", port, free_port()).start())
    client = await _wait_for_client(port, "the dev server")
    queue = f"q-{uuid.uuid4().hex[:8]}"
    env = {"TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "LOCKGATE_TASK_QUEUE": queue}
    first = worker_process(tmp_path / "worker1.log", env).start()
    processes.append(first)
    await wait_until(lambda: _started(first), what="the first worker", timeout=60)

    metrics.set("error_rate", 0.0)
    spec = _slow_spec(router, metrics)
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=queue)
    target = spec.spec.target
    await wait_until(lambda: (router.current(target) or {}).get("percent") == 10, what="canary")
    first.kill()
    killed_at = time.monotonic()

    second = worker_process(tmp_path / "worker2.log", env).start()
    processes.append(second)
    result = await handle.result()
    print(
        f"\nworker killed mid-canary: rollout completed {time.monotonic() - killed_at:.1f}s later"
    )

    assert result.phase is Phase.COMPLETED
    assert _distinct_routes(router) == EXPECTED_ROUTES, "no stage was re-run or skipped"
    status = await query_status(client, target)
    assert [s.name for s in status.state.stages] == ["shadow", "canary", "half", "full"]
    assert [s.outcome for s in status.state.stages] == ["advanced"] * 4


async def test_the_rollout_survives_a_server_restart_on_the_same_sqlite_file(
    tmp_path: Path, processes: list[ManagedProcess], router: RouterServer, metrics: MetricsServer
) -> None:
    port = free_port()
    server = dev_server(tmp_path / "server", port, free_port())
    processes.append(server.start())
    client = await _wait_for_client(port, "the dev server")
    queue = f"q-{uuid.uuid4().hex[:8]}"
    worker = worker_process(
        tmp_path / "worker.log",
        {"TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "LOCKGATE_TASK_QUEUE": queue},
    ).start()
    processes.append(worker)
    await wait_until(lambda: _started(worker), what="the worker", timeout=60)

    metrics.set("error_rate", 0.0)
    spec = _slow_spec(router, metrics)
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=queue)
    target = spec.spec.target
    await wait_until(lambda: (router.current(target) or {}).get("percent") == 10, what="canary")

    server.kill()
    await wait_until(lambda: not port_open(port), what="the server to be gone")
    restarted = dev_server(tmp_path / "server", port, free_port())
    processes.append(restarted.start())

    client = await _wait_for_client(port, "the restarted server")
    result = await client.get_workflow_handle(handle.id).result()
    assert result["phase"] == "completed"
    assert _distinct_routes(router) == EXPECTED_ROUTES
    assert worker.alive, "the worker rode out the server restart by itself"


async def test_worker_py_alone_embeds_a_server_and_stops_it_on_sigterm(
    tmp_path: Path, processes: list[ManagedProcess], router: RouterServer, metrics: MetricsServer
) -> None:
    port, ui_port, metrics_port = free_port(), free_port(), free_port()
    data_dir = tmp_path / "data"
    worker = worker_process(
        tmp_path / "worker.log",
        {
            "LOCKGATE_DATA_DIR": str(data_dir),
            "LOCKGATE_TEMPORAL_PORT": str(port),
            "LOCKGATE_UI_PORT": str(ui_port),
            "LOCKGATE_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        },
    )
    worker.env.pop("TEMPORAL_ADDRESS", None)
    processes.append(worker.start())
    await wait_until(lambda: _started(worker), what="the worker and its server", timeout=60)
    assert (data_dir / "temporal.db").exists()
    async with httpx.AsyncClient() as http:
        ui = await http.get(f"http://127.0.0.1:{ui_port}/", timeout=5)
    assert ui.status_code == 200

    client = await _client(port)
    metrics.set("error_rate", 0.0)
    spec = build_spec(spec_document(router.url, metrics.url))
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue="lockgate")
    result = await handle.result()
    assert result.phase is Phase.COMPLETED
    async with httpx.AsyncClient() as http:
        scraped = await http.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    assert "temporal_workflow_completed" in scraped.text, "the SDK's metrics for Prometheus"

    assert worker.stop() == 0
    assert not port_open(port), "the embedded server stopped with the worker"
    assert "lockgate worker stopped" in worker.output()


async def _wait_for_client(port: int, what: str) -> Client:
    client = await wait_until(lambda: _try_client(port), what=what, timeout=30)
    assert client is not None
    return client


async def _try_client(port: int) -> Client | None:
    try:
        client = await _client(port)
        await client.count_workflows()
    except Exception:
        return None
    return client

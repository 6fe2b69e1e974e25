"""Several replicas: two gateways over one Redis, two workers on one task queue, real processes.

- A route PUT on gateway A is served by gateway B on B's very next decision, and once a
  rollback PUT has been answered by A, no decision B starts afterwards is the candidate's (B is
  hammered while the PUT lands).
- A gateway SIGKILLed mid-rollout and restarted serves the route written while it was down.
- Redis gone: B serves the incumbent alone, A refuses route writes (503).
- Two `python worker.py` on one task queue: the one running a rollout is SIGKILLed mid-stage, and
  the other carries the rollout to its rollback.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from runtime.processes import ManagedProcess, free_port
from runtime.rollouts import submit_rollout
from tests.conftest import build_spec, spec_document
from tests.e2e.processes import RunningRedis, gateway_process, worker_process
from tests.gateway.servers import PolicyServer
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from workflows.state import Phase

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[1] / "gateway" / "artifacts"
TARGET = "offers"
CONTEXT = {"basket": 30.0, "risky": 0.0}


@dataclass
class Replica:
    """One `python -m gateway` process and its two planes' URLs."""

    process: ManagedProcess
    port: int
    control_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"


@pytest.fixture
def policies() -> Iterator[tuple[PolicyServer, PolicyServer]]:
    """The incumbent (41) and the candidate (42), real policy servers on loopback."""
    with (
        PolicyServer(ARTIFACTS / "offers-41.json") as incumbent,
        PolicyServer(ARTIFACTS / "offers-42.json") as candidate,
    ):
        yield incumbent, candidate


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        yield client


async def _two_replicas(
    tmp_path: Path,
    redis: RunningRedis,
    policies: tuple[PolicyServer, PolicyServer],
    http: httpx.AsyncClient,
    processes: list[ManagedProcess],
) -> tuple[Replica, Replica]:
    """Gateways `a` and `b`, started together on one route store."""
    a, b = await asyncio.gather(
        *(_start(None, tmp_path, n, redis, policies, http, processes) for n in "ab")
    )
    return a, b


async def _start(
    replica: Replica | None,
    tmp_path: Path,
    name: str,
    redis: RunningRedis,
    policies: tuple[PolicyServer, PolicyServer],
    http: httpx.AsyncClient,
    processes: list[ManagedProcess],
) -> Replica:
    """Start a gateway replica (again, on the same ports, when `replica` is given)."""
    port = replica.port if replica else free_port()
    control_port = replica.control_port if replica else free_port()
    process = gateway_process(
        tmp_path / f"{name}.log", port, control_port, [p.url for p in policies], redis.url
    ).start()
    processes.append(process)
    started = Replica(process, port, control_port)

    async def ready() -> bool:
        try:
            for url in (started.url, started.control_url):
                if (await http.get(f"{url}/healthz")).status_code != 200:
                    return False
        except httpx.TransportError:
            return False
        return True

    await process.wait_ready(ready, within=30)
    return started


def _route(
    generation: int, policies: tuple[PolicyServer, PolicyServer], percent: float
) -> dict[str, Any]:
    incumbent, candidate = policies
    return {
        "rollout_id": "rollout-offers/1",
        "generation": generation,
        "incumbent": incumbent.as_version(),
        "candidate": candidate.as_version() if percent else None,
        "mode": "split" if percent else "off",
        "percent": percent,
    }


def _generation() -> int:
    """Milliseconds since the epoch, as lockgate's generations are (and the admission bound)."""
    return int(time.time() * 1000)


async def _put(http: httpx.AsyncClient, replica: Replica, route: dict[str, Any]) -> httpx.Response:
    return await http.put(f"{replica.control_url}/v1/targets/{TARGET}/route", json=route)


async def _decide(http: httpx.AsyncClient, replica: Replica, unit: str) -> dict[str, Any]:
    answer = await http.post(
        f"{replica.url}/v1/targets/{TARGET}/decide", json={"unit_id": unit, "context": CONTEXT}
    )
    assert answer.status_code == 200, answer.text
    decision: dict[str, Any] = answer.json()
    return decision


async def test_two_gateways_serve_one_route_and_a_rollback_is_never_served_stale(
    tmp_path: Path,
    redis_store: RunningRedis,
    policies: tuple[PolicyServer, PolicyServer],
    http: httpx.AsyncClient,
    processes: list[ManagedProcess],
) -> None:
    a, b = await _two_replicas(tmp_path, redis_store, policies, http, processes)
    generation = _generation()
    assert (await _put(http, a, _route(generation, policies, 100))).status_code == 200
    first = await _decide(http, b, "u-0")
    assert (first["arm"], first["version"]) == ("candidate", "42"), "B's very next decision"
    assert (await http.get(f"{b.control_url}/v1/targets/{TARGET}/route")).json()["percent"] == 100

    # hammer B from 8 clients while the rollback lands on A; each decision keeps when it started
    decisions: list[tuple[float, str]] = []
    answered = asyncio.Event()
    after_answer = 0

    async def hammer(client: int) -> None:
        nonlocal after_answer
        sent = 0
        deadline = time.monotonic() + 60
        while after_answer < 400 and time.monotonic() < deadline:
            started = time.monotonic()
            decision = await _decide(http, b, f"u-{client}-{sent}")
            sent += 1
            decisions.append((started, decision["arm"]))
            if answered.is_set():
                after_answer += 1

    async def rollback() -> float:
        await wait_until(lambda: len(decisions) >= 100, what="B under load", interval=0.01)
        put = await _put(http, a, _route(generation + 1, policies, 0))
        landed = time.monotonic()
        answered.set()
        assert put.status_code == 200, put.text
        return landed

    hammers = [asyncio.create_task(hammer(n)) for n in range(8)]
    landed = await rollback()
    await asyncio.gather(*hammers)
    before = [arm for started, arm in decisions if started < landed]
    after = [arm for started, arm in decisions if started >= landed]
    print(f"\n{len(before)} decisions before the rollback's answer, {len(after)} after")
    assert "candidate" in before, "the candidate served until the rollback"
    assert len(after) >= 100
    assert set(after) == {"incumbent"}, "no decision started after the answer was a candidate's"
    for replica in (a, b):
        assert replica.process.stop() == 0, "SIGTERM closes the store's connections and exits 0"
        assert "Traceback" not in replica.process.output()


async def test_a_killed_replica_restarts_on_the_route_written_while_it_was_down(
    tmp_path: Path,
    redis_store: RunningRedis,
    policies: tuple[PolicyServer, PolicyServer],
    http: httpx.AsyncClient,
    processes: list[ManagedProcess],
) -> None:
    a, b = await _two_replicas(tmp_path, redis_store, policies, http, processes)
    generation = _generation()
    assert (await _put(http, a, _route(generation, policies, 10))).status_code == 200
    assert (await _decide(http, b, "u-1"))["mode"] == "split"

    b.process.kill()  # SIGKILL, mid-rollout
    current = _route(generation + 1, policies, 100)
    assert (await _put(http, a, current)).status_code == 200

    b = await _start(b, tmp_path, "b-restarted", redis_store, policies, http, processes)
    held = (await http.get(f"{b.control_url}/v1/targets/{TARGET}/route")).json()
    assert (held["generation"], held["percent"]) == (generation + 1, 100)
    decision = await _decide(http, b, "u-1")
    assert (decision["arm"], decision["version"]) == ("candidate", "42")


async def test_without_redis_the_incumbent_serves_and_route_writes_are_refused(
    tmp_path: Path,
    redis_store: RunningRedis,
    policies: tuple[PolicyServer, PolicyServer],
    http: httpx.AsyncClient,
    processes: list[ManagedProcess],
) -> None:
    a, b = await _two_replicas(tmp_path, redis_store, policies, http, processes)
    generation = _generation()
    assert (await _put(http, a, _route(generation, policies, 100))).status_code == 200
    assert (await _decide(http, b, "u-1"))["arm"] == "candidate"

    redis_store.process.kill()
    decision = await _decide(http, b, "u-1")
    assert (decision["arm"], decision["version"], decision["mode"]) == ("incumbent", "41", "off")
    refused = await _put(http, a, _route(generation + 1, policies, 0))
    assert refused.status_code == 503
    assert "route not applied" in refused.json()["detail"]
    assert "cannot be reached" in refused.json()["detail"]
    unconfirmed = await http.post(
        f"{a.url}/v1/targets/ranker/decide", json={"unit_id": "u", "context": CONTEXT}
    )
    assert unconfirmed.status_code == 503


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ([], "cannot reach the route store"),
        (["--state-file", "routes.json"], "a state file or to a route store, not both"),
    ],
)
def test_a_replica_without_its_store_exits_2_before_it_listens(
    tmp_path: Path, extra: list[str], says: str
) -> None:
    port, control_port = free_port(), free_port()
    command = gateway_process(
        tmp_path / "gateway.log",
        port,
        control_port,
        ["http://127.0.0.1:8101"],
        f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
    ).command
    ended = subprocess.run(
        [*command, *extra], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
    )
    assert ended.returncode == 2, ended.stderr
    assert says in ended.stderr
    assert "Traceback" not in ended.stderr


async def test_two_workers_on_one_queue_a_killed_one_leaves_the_rollout_to_the_other(
    tmp_path: Path,
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    processes: list[ManagedProcess],
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    env = {
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "LOCKGATE_TASK_QUEUE": queue,
    }
    workers = [worker_process(tmp_path / f"worker{n}.log", env).start() for n in (1, 2)]
    processes.extend(workers)
    await asyncio.gather(*(worker.wait_ready(_polling(worker)) for worker in workers))

    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    for stage, bake in zip(document["spec"]["stages"], ["1s", "60s", "1s", "1s"], strict=True):
        stage["min_duration"] = bake
    spec = build_spec(document)
    target = spec.spec.target
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=queue)
    await wait_until(lambda: (router.current(target) or {}).get("percent") == 10, what="canary")

    holder = await _last_workflow_task_identity(handle)
    victim = next(w for w in workers if holder.startswith(f"{w.pid}@"))
    survivor = next(w for w in workers if w is not victim)
    victim.kill()  # SIGKILL, mid-canary, the worker that ran the rollout's last workflow task
    metrics.set("error_rate", 0.5)  # the trigger fails from now on: only a live worker sees it

    result = await asyncio.wait_for(handle.result(), timeout=90)
    assert result.phase is Phase.ROLLED_BACK
    assert (router.current(target) or {}).get("mode") == "off"
    assert (await _last_workflow_task_identity(handle)).startswith(f"{survivor.pid}@")


def _polling(worker: ManagedProcess) -> Callable[[], Awaitable[bool]]:
    async def polling() -> bool:
        return "polling task queue" in worker.output()

    return polling


async def _last_workflow_task_identity(handle: WorkflowHandle[Any, Any]) -> str:
    """Which worker (`pid@host`) ran the rollout's latest workflow task."""
    identity = ""
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            identity = event.workflow_task_completed_event_attributes.identity
    assert identity, "no workflow task completed yet"
    return identity

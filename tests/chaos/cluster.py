"""The chaos suite's world: a dev server, workers and a router as processes, monitoring in-thread.

`Cluster` owns every process it starts and kills them all in `kill_all` (the fixture's teardown).
The Temporal server keeps its SQLite file and port across restarts; workers share one task queue;
the router keeps its port and directory across restarts (see router_process.py).
"""

from __future__ import annotations

import functools
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle

from rollout_specs import RolloutSpec, workflow_id_for
from runtime.client import connect
from runtime.processes import ManagedProcess, free_port, port_open
from runtime.rollouts import query_status, submit_rollout
from runtime.settings import Settings
from tests.chaos.router_process import RouterProcess
from tests.conftest import build_spec, spec_document
from tests.e2e.processes import dev_server, worker_process
from tests.helpers.servers import MetricsServer, MetricValue, Reply, metric_key
from tests.helpers.waiting import wait_until
from workflows.messages import RolloutResult, StatusResult
from workflows.rollout import RolloutWorkflow

__all__ = ["CHECK_INTERVAL", "Cluster", "MonitoringQuery", "TimedMetricsServer", "chaos_spec"]

CHECK_INTERVAL: Final = 1.0
"""Seconds between checks in every chaos spec (spec_document's `check_interval: 1s`)."""
ROUTER_TIMEOUT: Final = "2s"
"""Per-request router timeout: how long each attempt waits on a hung router."""
MONITORING_TIMEOUT: Final = "3s"
"""Per-query monitoring timeout, above the 2 s a test makes monitoring slow for."""
SUBMITTER: Final = "alice"
WORKER_READY: Final = "polling task queue"
_WORKFLOW_ID: Final = re.compile(r"'workflow_id': '(rollout-[^']+)'")


def chaos_spec(
    router_url: str, metrics_url: str, bakes: Sequence[str], target: str | None = None
) -> RolloutSpec:
    """spec_document's rollout (1 s checks; shadow, 10%, 50%, 100%) with these stage bakes."""
    document = spec_document(router_url, metrics_url, target)
    body = document["spec"]
    body["router"]["timeout"] = ROUTER_TIMEOUT
    body["monitoring"]["timeout"] = MONITORING_TIMEOUT
    for stage, bake in zip(body["stages"], bakes, strict=True):
        stage["min_duration"] = bake
    return build_spec(document)


@dataclass(frozen=True)
class MonitoringQuery:
    """One query the monitoring server received or answered: when (wall clock), what, the value."""

    at: float
    query: str
    value: MetricValue


class TimedMetricsServer(MetricsServer):
    """MetricsServer that remembers when each query arrived and was answered, and can be slow."""

    def __init__(self) -> None:
        self._arrived: list[MonitoringQuery] = []
        self._answered: list[MonitoringQuery] = []
        self._delay = 0.0
        self._record_lock = threading.Lock()
        super().__init__()

    def slow_queries(self, seconds: float) -> None:
        """Make every query wait `seconds` before it is answered (0: answer at once)."""
        with self._record_lock:
            self._delay = seconds

    def arrived(self, target: str | None = None) -> list[MonitoringQuery]:
        """Every query received (for one target's label when given), oldest first."""
        with self._record_lock:
            return _for_target(self._arrived, target)

    def answered(self, target: str | None = None) -> list[MonitoringQuery]:
        """Every query answered (for one target's label when given), oldest first."""
        with self._record_lock:
            return _for_target(self._answered, target)

    def _handle(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Reply:
        texts = query.get("query")
        if method != "GET" or not texts:
            return super()._handle(method, path, query, body)
        with self._lock:
            value = self._values.get(metric_key(texts[0]))
        with self._record_lock:
            self._arrived.append(MonitoringQuery(time.time(), texts[0], value))
            delay = self._delay
        if delay > 0:
            time.sleep(delay)  # the fault: monitoring that takes this long to answer
        reply = super()._handle(method, path, query, body)
        with self._record_lock:
            self._answered.append(MonitoringQuery(time.time(), texts[0], value))
        return reply


def _for_target(queries: list[MonitoringQuery], target: str | None) -> list[MonitoringQuery]:
    label = f'target="{target}"'
    return [q for q in queries if target is None or label in q.query]


BIND_ATTEMPTS = 3
"""Dev-server starts tried when the ports chosen for it are taken before it binds them."""


class Cluster:
    """One Temporal dev server, its workers and a router, all processes; monitoring in-thread."""

    def __init__(self, root: Path, metrics: TimedMetricsServer) -> None:
        self.root = root
        self.metrics = metrics
        self.temporal_port = free_port()
        self.queue = f"chaos-{uuid.uuid4().hex[:8]}"
        self.router = RouterProcess(root / "router")
        self.server: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []
        self.processes: list[ManagedProcess] = []
        """Every Temporal server and worker process started, for teardown."""
        self._client: Client | None = None

    async def start(self, workers: int = 1) -> None:
        """The router, the dev server, then `workers` workers, each ready."""
        self.router.directory.mkdir(parents=True, exist_ok=True)
        self.router.slow_puts(0)
        await self.router.start()
        await self.start_server()
        for _ in range(workers):
            await self.start_worker()

    # ----------------------------------------------------------------------------- Temporal

    async def start_server(self) -> None:
        """Start the dev server on the cluster's port and SQLite file; wait for a client.

        A free port can be taken between choosing it and binding it (any outgoing connection
        on this machine may get it as its local port), and then the server exits at once with
        "address already in use". It is started again on other ports: a new UI port always,
        a new frontend port only while no worker depends on the old one.
        """
        for _ in range(BIND_ATTEMPTS):
            server = dev_server(self.root / "temporal", self.temporal_port, free_port())
            self.processes.append(server.start())
            self.server = server
            self._client = None
            up = await wait_until(
                functools.partial(self._client_or_bind_failure, server),
                what="the Temporal dev server",
                timeout=60,
            )
            if isinstance(up, Client):
                self._client = up
                return
            if not self.workers:
                self.temporal_port = free_port()
        raise AssertionError(f"the dev server found no free port in {BIND_ATTEMPTS} attempts")

    async def _client_or_bind_failure(self, server: ManagedProcess) -> Client | str | None:
        """A connected client; "port taken" if the server exited unable to bind; else None."""
        if not server.alive and "address already in use" in server.output():
            return "port taken"
        return await self._try_client()

    async def kill_server(self) -> None:
        """SIGKILL the dev server (its whole process group) and wait until its port is closed."""
        assert self.server is not None
        self.server.kill()
        await wait_until(lambda: not port_open(self.temporal_port), what="the server to be gone")
        self._client = None

    @property
    def client(self) -> Client:
        assert self._client is not None, "no Temporal server is up"
        return self._client

    async def _try_client(self) -> Client | None:
        try:
            client = await connect(Settings(temporal_address=f"127.0.0.1:{self.temporal_port}"))
            await client.count_workflows()
        except Exception:
            return None
        return client

    # ----------------------------------------------------------------------------- workers

    async def start_worker(self) -> ManagedProcess:
        """Start `python worker.py` on the cluster's queue; wait until it polls."""
        number = len(self.workers) + 1
        env = {
            "TEMPORAL_ADDRESS": f"127.0.0.1:{self.temporal_port}",
            "LOCKGATE_TASK_QUEUE": self.queue,
        }
        worker = worker_process(self.root / f"worker{number}.log", env)
        self.processes.append(worker.start())
        self.workers.append(worker)
        await worker.wait_ready(self._logged(worker, WORKER_READY), within=60)
        return worker

    @staticmethod
    def _logged(process: ManagedProcess, text: str) -> Callable[[], Awaitable[bool]]:
        async def ready() -> bool:
            return text in process.output()

        return ready

    @staticmethod
    def identity(worker: ManagedProcess) -> str:
        """The worker's Temporal identity (the SDK's default, `pid@host`), as histories show it."""
        assert worker.popen is not None
        return f"{worker.popen.pid}@{socket.gethostname()}"

    @staticmethod
    def freeze(process: ManagedProcess) -> None:
        """SIGSTOP the process group: it holds whatever it was doing, and answers nothing."""
        assert process.popen is not None
        os.killpg(process.popen.pid, signal.SIGSTOP)

    @staticmethod
    def workflow_tasks_logged(worker: ManagedProcess) -> Counter[str]:
        """Per workflow id, how many lines its workflow code logged on this worker.

        Workflow code logs (e.g. every check's decision) only where it runs, never on replay.
        """
        lines = worker.output().splitlines()
        return Counter(
            match[1]
            for line in lines
            if " temporalio.workflow: " in line and (match := _WORKFLOW_ID.search(line))
        )

    # ----------------------------------------------------------------------------- rollouts

    def spec(self, bakes: Sequence[str], target: str | None = None) -> RolloutSpec:
        return chaos_spec(self.router.url, self.metrics.url, bakes, target)

    async def submit(self, spec: RolloutSpec) -> WorkflowHandle[RolloutWorkflow, RolloutResult]:
        return await submit_rollout(
            self.client, spec, submitted_by=SUBMITTER, task_queue=self.queue
        )

    async def status(self, target: str) -> StatusResult:
        """The rollout's status query, retried while workers or the server come and go."""

        async def attempt() -> StatusResult | None:
            if self._client is None:
                return None
            try:
                return await query_status(self._client, target)
            except Exception:
                return None

        return await wait_until(attempt, what=f"the status of {target}", timeout=60)

    async def history(self, target: str) -> list[HistoryEvent]:
        """The events of the rollout's latest run."""
        handle = self.client.get_workflow_handle(workflow_id_for(target))
        return list((await handle.fetch_history()).events)

    async def baking(self, target: str, stage: str, checks: int = 1) -> StatusResult | None:
        """The status once `stage` is routed and has counted `checks` checks; else None."""
        status = await self.status(target)
        records = status.state.stages
        if not status.state.stage_routed or not records or records[-1].name != stage:
            return None
        return status if records[-1].checks >= checks else None

    async def result(self, target: str, timeout: float = 90) -> RolloutResult:
        """The rollout's result, waiting at most `timeout` seconds for it to end."""

        async def attempt() -> RolloutResult | None:
            if self._client is None:
                return None
            handle = self._client.get_workflow_handle_for(
                RolloutWorkflow.run, workflow_id_for(target)
            )
            try:
                description = await handle.describe()
            except Exception:
                return None
            if description.close_time is None:
                return None
            return await handle.result()

        return await wait_until(attempt, what=f"the end of {target}", timeout=timeout, interval=0.2)

    # ----------------------------------------------------------------------------- teardown

    def kill_all(self) -> None:
        """SIGKILL every process this cluster started, stopped or not."""
        for process in self.processes:
            process.kill()
        self.router.kill_all()

    def log_tails(self, lines: int = 25) -> str:
        """The last lines of every process's log, for a failing test's report."""
        parts = []
        for process in [*self.processes, *self.router.started]:
            tail = "\n".join(process.output().splitlines()[-lines:])
            parts.append(f"--- {process.name} ({process.log}) ---\n{tail}")
        return "\n".join(parts)

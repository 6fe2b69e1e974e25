"""Decisions per second, latency and CPU of the gateway's decide endpoint, against two baselines.

    .venv/bin/python benchmarks/gateway.py [--seconds 10 --concurrency 32]

Every service is a real process on 127.0.0.1: two policy servers (`python -m gateway.policy_server`
with generated 8-feature, 4-action artifacts), the gateway (`python -m gateway`), a second
gateway evaluating the same artifacts in-process (`--policy-artifact`), and two baselines on
the gateway's own serving stack (gateway.serving: one process, uvicorn, no access log):

- the **bare endpoint** parses the same JSON body and answers a decision-shaped JSON without
  asking any policy: what the HTTP framework costs;
- the **bare proxy** does that plus the one policy call decide makes, made as the gateway's
  policy client makes it (its pooled client, its bound on calls in flight per server): the
  fair baseline of decide over HTTP, which adds routing, metrics and guardrails to the call.

The load comes from another process (`--role load`): `concurrency` keep-alive connections,
each sending its next request as soon as the last is answered, for `seconds` after a warm-up,
over a minimal HTTP/1.1 client (so the client's own cost stays small next to the server's).
Units are drawn from 100,000 ids, so split mode really splits.

Rows: both baselines; decide with the route in `off` (one policy call), `split` at 50% (one
call, half to each policy server), `shadow` (two concurrent calls), `shadow` by a gateway
mirroring the candidate's calls in batches after answering (`--shadow-mirror batched`: one
call per decision, the candidate's batched), `split` again with every guardrail at work (a
binding share cap, a value cap, a reviewed action queueing proposals); the in-process
gateway in `off`, `split` and `shadow`; and each baseline again (the ratios use
the mean of its two rows, so that drift over the run weighs on both sides). Each row prints
its throughput, p50 and p99 latency, its ratio to each baseline, and the CPU time per request
of the serving process and of the policy servers (read from /proc): steadier than throughput
when other work shares the machine. All processes share this machine's cores, so the numbers
compare rows, not machines.

This file is named like the `gateway` package; run as a script, its directory comes first on
`sys.path`, so it starts the gateway as `python -m gateway`, and its own baseline processes put
the project's root first before they import from the package.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
TARGET = "bench"
FEATURES = [f"f{n}" for n in range(8)]
ACTIONS = ["none", "discount_5", "discount_10", "free_shipping"]
UNITS = 100_000
READY_WITHIN = 30.0
"""Seconds a started service may take to answer its health check."""
WARMUP = 1.0
"""Seconds of load before measuring: connections opened, caches warm."""


# --------------------------------------------------------------------------- the bare endpoint


def _import_the_gateway_package() -> None:
    """Let `import gateway.serving` find the package, not this file (named like it)."""
    if sys.path[0] != str(ROOT):
        sys.path.insert(0, str(ROOT))


def _bare_app(decide: Any) -> Any:
    """A Starlette app with the gateway's decide path (POST) answered by `decide`, and /healthz."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/targets/{target}/decide", decide, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def _answer(body: dict[str, Any], action: str, version: str) -> dict[str, Any]:
    """A decision-shaped answer, as large as the gateway's."""
    return {
        "decision_id": os.urandom(16).hex(),
        "action": action,
        "arm": "incumbent",
        "version": version,
        "mode": "off",
        "shadow_action": None,
        "guardrail": None,
        "intervention": None,
        "proposal": None,
        "params": None,
        "unit": body["unit_id"],
    }


def serve_bare(port: int) -> None:
    """The baseline: the gateway's serving stack (gateway.serving), no routing, no policy call."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    _import_the_gateway_package()
    from gateway.serving import serve

    async def decide(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        return JSONResponse(_answer(body, "none", "bare"))

    serve(_bare_app(decide), "127.0.0.1", port)


def serve_proxy(port: int, policy_uri: str) -> None:
    """The baseline of one policy call: the bare endpoint plus the one HTTP call decide makes.

    The call is made as the gateway's policy client makes it: its pooled client
    (`policy_http_client`, gateway.policy_http), its bound on calls in flight to one server
    (which bounds the pooled connections), the same compact JSON body, and the answer parsed
    and its action read. Nothing else: no route, assignment, metrics,
    guardrails or decision memory, which is what decide adds on top.
    """
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    _import_the_gateway_package()
    from gateway.policy_client import DEFAULT_PER_SERVER, policy_http_client
    from gateway.policy_http import Endpoint
    from gateway.serving import serve

    http = policy_http_client()
    endpoint = Endpoint.parse(policy_uri.rstrip("/") + "/act")
    gate = asyncio.Semaphore(DEFAULT_PER_SERVER)

    async def decide(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        payload = json.dumps({"context": body["context"]}, separators=(",", ":")).encode()
        async with gate:
            status, answer = await http.post(endpoint, payload)
        if status != 200:
            raise RuntimeError(f"the policy server answered {status}")
        return JSONResponse(_answer(body, json.loads(answer)["action"], "proxy"))

    serve(_bare_app(decide), "127.0.0.1", port)


# ------------------------------------------------------------------------- the load generator


@dataclass
class LoadResult:
    """What one load run measured (latencies in seconds, after the warm-up)."""

    requests: int
    failures: int
    seconds: float
    latencies: list[float]
    answered: int = 0
    """Every request answered, the warm-up's included (the servers' CPU time covers both)."""


async def _connection(
    host: str,
    port: int,
    path: str,
    deadline: float,
    measure_from: float,
    result: LoadResult,
    rng: random.Random,
) -> None:
    """One keep-alive connection sending decide requests back to back until `deadline`."""
    reader, writer = await asyncio.open_connection(host, port)
    head = f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
    context = {name: 0.0 for name in FEATURES}
    try:
        while (started := time.perf_counter()) < deadline:
            context[FEATURES[0]] = rng.random()
            body = json.dumps(
                {"unit_id": f"user-{rng.randrange(UNITS)}", "context": context, "attributes": {}}
            ).encode()
            writer.write(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionError(f"{host}:{port} closed the connection mid-run")
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            result.answered += 1
            if started >= measure_from:
                result.requests += 1
                result.latencies.append(time.perf_counter() - started)
                if not status_line.startswith(b"HTTP/1.1 200"):
                    result.failures += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _load(url: str, seconds: float, concurrency: int) -> LoadResult:
    parsed = httpx.URL(url)
    host, port = parsed.host, parsed.port or 80
    measure_from = time.perf_counter() + WARMUP
    deadline = measure_from + seconds
    result = LoadResult(0, 0, seconds, [])
    path = parsed.raw_path.decode()
    connections = [
        _connection(host, port, path, deadline, measure_from, result, random.Random(n))
        for n in range(concurrency)
    ]
    await asyncio.gather(*connections)
    return result


def run_load(url: str, seconds: float, concurrency: int) -> None:
    """The load process: drive `url`, print one JSON line with the measurements."""
    result = asyncio.run(_load(url, seconds, concurrency))
    sys.stdout.write(json.dumps(result.__dict__) + "\n")


# ------------------------------------------------------------------------------ orchestration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _artifact(version: str, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    return {
        "name": TARGET,
        "version": version,
        "actions": ACTIONS,
        "features": FEATURES,
        "weights": [[rng.gauss(0, 0.5) for _ in FEATURES] for _ in ACTIONS],
        "bias": [rng.gauss(0, 0.5) for _ in ACTIONS],
        "temperature": 1.0,
    }


class Services:
    """The processes of one benchmark run, all stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.pids: dict[str, int] = {}
        """The process serving each started URL."""

    def start(self, name: str, args: Sequence[str]) -> str:
        """Start `python args...` on a free port (appended as `--port N`); return its URL."""
        port = _free_port()
        with (self.workdir / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, *args, "--port", str(port)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        self.pids[url] = process.pid
        deadline = time.monotonic() + READY_WITHIN
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited: {(self.workdir / f'{name}.log').read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    return url
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} was not ready within {READY_WITHIN:g}s")
            time.sleep(0.05)  # polling a health check, bounded by READY_WITHIN

    def stop(self) -> None:
        """Stop every process, last started first."""
        for process in reversed(self.processes):
            _signal_group(process, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(10)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)


@contextlib.contextmanager
def services() -> Iterator[Services]:
    """Services in a temporary directory, stopped whatever happens."""
    with tempfile.TemporaryDirectory(prefix="lockgate-bench-") as workdir:
        running = Services(Path(workdir))
        try:
            yield running
        finally:
            running.stop()


@dataclass
class Row:
    """One line of the table."""

    name: str
    result: LoadResult
    cpu: tuple[float, float] = (math.nan, math.nan)
    """CPU seconds the serving process, and the policy servers together, used during the run."""
    overruled: float = 0.0
    """Share of the candidate's decisions the guardrails overruled (the overruling row)."""

    def cpu_per_request(self, which: int) -> float:
        """Microseconds of CPU per answered request: the server's (0) or the policies' (1).

        Steadier than throughput on a shared machine: other work slows a row down but does
        not make its requests cost more CPU.
        """
        return 1e6 * self.cpu[which] / self.result.answered if self.result.answered else math.nan

    @property
    def rate(self) -> float:
        """Answered requests per second."""
        return self.result.requests / self.result.seconds

    def percentile(self, q: float) -> float:
        """Latency percentile in milliseconds (nearest rank)."""
        ordered = sorted(self.result.latencies)
        if not ordered:
            return float("nan")
        return 1000 * ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def measure(url: str, seconds: float, concurrency: int) -> LoadResult:
    """Run the load process against `url` and read its measurements."""
    result, _ = _measure(url, seconds, concurrency, [], [])
    return result


def _cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds the processes have used so far (Linux /proc; NaN elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        except OSError:
            return math.nan
        fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def _measure(
    url: str, seconds: float, concurrency: int, server: Sequence[int], policies: Sequence[int]
) -> tuple[LoadResult, tuple[float, float]]:
    """Load `url`, and count the CPU time the server and the policy servers spent meanwhile."""
    before = _cpu_seconds(server), _cpu_seconds(policies)
    done = subprocess.run(
        [sys.executable, __file__, "--role", "load", "--url", url,
         "--seconds", str(seconds), "--concurrency", str(concurrency)],
        cwd=ROOT, capture_output=True, timeout=seconds + WARMUP + 60, check=True,
    )  # fmt: skip
    after = _cpu_seconds(server), _cpu_seconds(policies)
    return LoadResult(**json.loads(done.stdout)), (after[0] - before[0], after[1] - before[1])


GUARDED: dict[str, Any] = {
    "blocked_actions": ["discount_90"],
    "caps": [
        {"action": "discount_10", "max_share": 0.5, "window": "1m"},
        {"field": "amount", "max": 1000},
    ],
    "review": {"actions": ["discount_90_review"], "max_pending": 1000},
}
"""Every guardrail checked on every candidate decision, as in a healthy rollout: the share cap
is counted over its sliding window but seldom binds, and the reviewed action is rare."""
BINDING: dict[str, Any] = {
    "blocked_actions": ["discount_90"],
    "caps": [
        {"action": "discount_10", "max_share": 0.05, "window": "1m"},
        {"field": "amount", "max": 1000},
    ],
    "review": {"actions": ["free_shipping"], "max_pending": 1000},
}
"""The guardrails overruling the candidate often (its discount_10 past a 5% cap, every
free_shipping proposed for review): each overruled decision also asks the incumbent, a second
policy call, and its proposals fill the review queue (past max_pending the oldest drop)."""


def _put_route(
    gateway: str,
    generation: int,
    mode: str,
    incumbent: str,
    candidate: str,
    guardrails: dict[str, Any] | None = None,
) -> None:
    route = {
        "rollout_id": "rollout-bench/1",
        "generation": generation,
        "incumbent": {"version": "41", "uri": incumbent},
        "candidate": None if mode == "off" else {"version": "42", "uri": candidate},
        "mode": mode,
        "percent": 50.0 if mode == "split" else 0.0,
        "scope": None,
        "guardrails": guardrails or {"blocked_actions": ["discount_90"]},  # never picked
    }
    httpx.put(f"{gateway}/v1/targets/{TARGET}/route", json=route, timeout=5).raise_for_status()


def benchmark(seconds: float, concurrency: int) -> list[Row]:
    """Start every service, load each row in turn, and return the rows."""
    rows = []
    with services() as running:

        def load(name: str, server: str, policies: Sequence[str] = ()) -> Row:
            result, cpu = _measure(
                f"{server}/v1/targets/{TARGET}/decide",
                seconds,
                concurrency,
                [running.pids[server]],
                [running.pids[policy] for policy in policies],
            )
            rows.append(Row(name, result, cpu))
            return rows[-1]

        artifacts = {}
        for version, seed in [("41", 1), ("42", 2)]:
            path = artifacts[version] = running.workdir / f"policy-{version}.json"
            path.write_text(json.dumps(_artifact(version, seed)), encoding="utf-8")
        policy = ["-m", "gateway.policy_server", "--seed", "7", "--policy"]
        incumbent = running.start("incumbent", [*policy, str(artifacts["41"])])
        candidate = running.start("candidate", [*policy, str(artifacts["42"])])
        both = [incumbent, candidate]
        bare = running.start("bare", [__file__, "--role", "bare"])
        proxy = running.start("proxy", [__file__, "--role", "proxy", "--policy-uri", incumbent])
        load(BARE_ROW, bare)
        load(PROXY_ROW, proxy, [incumbent])
        # routes go to the control plane (its own port; no token: loopback-only benchmark)
        control_port = _free_port()
        gateway = running.start("gateway", ["-m", "gateway", "--control-port", str(control_port),
                                            "--insecure-control-plane", "--policy-uri", incumbent,
                                            "--policy-uri", candidate])  # fmt: skip
        control = f"http://127.0.0.1:{control_port}"
        # Split with and without guardrails alternate, twice: the machine drifts over a run,
        # and the guardrails' cost is a few percent, so rows far apart would compare the drift.
        routes = [
            ("off", OFF_ROW, None),
            ("split", SPLIT_ROW, None),
            ("split", GUARDED_ROW, GUARDED),
            ("split", SPLIT_ROW, None),
            ("split", GUARDED_ROW, GUARDED),
            ("shadow", SHADOW_ROW, None),
        ]
        for generation, (mode, name, guardrails) in enumerate(routes, start=1):
            _put_route(control, generation, mode, incumbent, candidate, guardrails)
            load(name, gateway, both)
        # Shadow again, by a gateway mirroring the candidate's calls in batches, off the
        # response path (--shadow-mirror batched; gateway.mirror)
        mirror_port = _free_port()
        mirroring = running.start("mirroring gateway", ["-m", "gateway", "--control-port",
                                  str(mirror_port), "--insecure-control-plane", "--policy-uri",
                                  incumbent, "--policy-uri", candidate, "--shadow-mirror",
                                  "batched"])  # fmt: skip
        _put_route(f"http://127.0.0.1:{mirror_port}", 1, "shadow", incumbent, candidate)
        load(MIRROR_ROW, mirroring, both)
        load(PROXY_ROW, proxy, [incumbent])  # the baseline of the rows just measured, again
        _put_route(control, len(routes) + 1, "split", incumbent, candidate, BINDING)
        before = _overruled_and_decided(control)
        binding = load(BINDING_ROW, gateway, both)
        after = _overruled_and_decided(control)
        decided = after[1] - before[1]
        binding.overruled = (after[0] - before[0]) / decided if decided else 0.0
        # The same routes (same policy server URLs) served by a gateway that evaluates the two
        # artifacts in-process: the policy servers stay up but are never called.
        local_port = _free_port()
        local = running.start("in-process gateway", ["-m", "gateway", "--control-port",
                              str(local_port), "--insecure-control-plane", "--policy-seed", "7",
                              "--policy-artifact", f"{incumbent}={artifacts['41']}",
                              "--policy-artifact", f"{candidate}={artifacts['42']}"])  # fmt: skip
        local_control = f"http://127.0.0.1:{local_port}"
        for generation, (mode, name) in enumerate(IN_PROCESS_ROWS.items(), start=1):
            _put_route(local_control, generation, mode, incumbent, candidate)
            load(name, local, both)
        load(BARE_ROW, bare)  # the baseline of the in-process rows, again
    return rows


BARE_ROW = "bare endpoint"
PROXY_ROW = "bare proxy (one policy call)"
OFF_ROW = "decide off"
SPLIT_ROW = "decide split 50%"
SHADOW_ROW = "decide shadow"
MIRROR_ROW = "decide shadow, batched mirror"
GUARDED_ROW = "decide split 50% + caps + review"
BINDING_ROW = "decide split 50%, guardrails overruling"
IN_PROCESS_ROWS = {
    "off": "in-process decide off",
    "split": "in-process decide split 50%",
    "shadow": "in-process decide shadow",
}


def _overruled_and_decided(control: str) -> tuple[float, float]:
    """Interventions and the candidate's decisions so far, from the gateway's /metrics."""
    text = httpx.get(f"{control}/metrics", timeout=5).text
    overruled = decided = 0.0
    for line in text.splitlines():
        if line.startswith("lockgate_guardrail_interventions_total{"):
            overruled += float(line.rsplit(" ", 1)[1])
        elif line.startswith("lockgate_decisions_total{") and 'arm="candidate"' in line:
            decided += float(line.rsplit(" ", 1)[1])
    return overruled, decided


def _mean_rate(rows: list[Row], name: str) -> float:
    """The mean throughput of the rows named `name` (a setting measured more than once)."""
    rates = [row.rate for row in rows if row.name == name]
    return sum(rates) / len(rates)


def _mean_p50(rows: list[Row], name: str) -> float:
    """The mean median latency (ms) of the rows named `name`."""
    medians = [row.percentile(50) for row in rows if row.name == name]
    return sum(medians) / len(medians)


def _mean_cpu(rows: list[Row], name: str) -> float:
    """The mean CPU microseconds per request of the serving process in the rows named `name`."""
    costs = [row.cpu_per_request(0) for row in rows if row.name == name]
    return sum(costs) / len(costs)


def table(rows: list[Row], seconds: float, concurrency: int, load_before: float) -> str:
    """The markdown report: settings, one line per row, and the ratios to both baselines.

    Ratios are to the mean of each baseline's two rows: the bare endpoint is what the HTTP
    framework costs, the bare proxy that plus one policy call, so decide / bare proxy is what
    routing, metrics and guardrails cost on top of the call. The CPU columns (microseconds per
    request, of the serving process and of the policy servers) are steadier than the rates on
    a shared machine; the CPU ratios are the serving process's, bare or proxy over decide.
    """
    bare = _mean_rate(rows, BARE_ROW)
    proxy = _mean_rate(rows, PROXY_ROW)
    lines = [
        f"gateway decide benchmark: {seconds:g}s per row after {WARMUP:g}s warm-up, "
        f"{concurrency} connections, 1 load process; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average before the run "
        f"{load_before:.2f}",
        "",
        "| row | decisions/s | p50 ms | p99 ms | failed | vs bare | vs bare proxy "
        "| server CPU us | policy CPU us |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.rate:,.0f} | {row.percentile(50):.2f} | "
            f"{row.percentile(99):.2f} | {row.result.failures} | {row.rate / bare:.2f}x | "
            f"{row.rate / proxy:.2f}x | {row.cpu_per_request(0):.0f} | "
            f"{row.cpu_per_request(1):.0f} |"
        )
    split_rate = _mean_rate(rows, SPLIT_ROW)
    guarded_rate = _mean_rate(rows, GUARDED_ROW)
    binding = next(row for row in rows if row.name == BINDING_ROW)
    local = {mode: _mean_rate(rows, name) for mode, name in IN_PROCESS_ROWS.items()}
    bare_cpu, proxy_cpu = _mean_cpu(rows, BARE_ROW), _mean_cpu(rows, PROXY_ROW)
    local_cpu = {mode: bare_cpu / _mean_cpu(rows, name) for mode, name in IN_PROCESS_ROWS.items()}
    http_cpu = {name: proxy_cpu / _mean_cpu(rows, name) for name in (OFF_ROW, SPLIT_ROW)}
    lines += [
        "",
        f"ratio decide / bare proxy: off {_mean_rate(rows, OFF_ROW) / proxy:.2f}, split "
        f"{split_rate / proxy:.2f} (goal >= 0.8), shadow (two calls) "
        f"{_mean_rate(rows, SHADOW_ROW) / proxy:.2f}, shadow with the batched mirror "
        f"{_mean_rate(rows, MIRROR_ROW) / proxy:.2f} (goal >= 0.6) in throughput; split "
        f"{_mean_p50(rows, SPLIT_ROW) / _mean_p50(rows, PROXY_ROW):.1f}x the p50 latency; "
        f"CPU per request, proxy / decide: off {http_cpu[OFF_ROW]:.2f}, split "
        f"{http_cpu[SPLIT_ROW]:.2f}, shadow {proxy_cpu / _mean_cpu(rows, SHADOW_ROW):.2f}, "
        f"batched {proxy_cpu / _mean_cpu(rows, MIRROR_ROW):.2f}",
        f"ratio in-process decide / bare endpoint: off {local['off'] / bare:.2f}, split "
        f"{local['split'] / bare:.2f}, shadow {local['shadow'] / bare:.2f} (goal >= 0.7) in "
        f"throughput; CPU per request, bare / decide: off {local_cpu['off']:.2f}, split "
        f"{local_cpu['split']:.2f}, shadow {local_cpu['shadow']:.2f}",
        f"ratio guardrails on / off (split 50%, mean of the alternating rows): "
        f"{guarded_rate / split_rate:.2f} in throughput (goal >= 0.9)",
        f"ratio guardrails overruling / off (split 50%): {binding.rate / split_rate:.2f}, with "
        f"{binding.overruled:.0%} of the candidate's decisions overruled (each asks the "
        "incumbent too)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark (default), or one of its processes (`--role bare|proxy|load`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row")
    parser.add_argument("--concurrency", type=int, default=32, help="open connections")
    parser.add_argument("--role", choices=["bench", "bare", "proxy", "load"], default="bench")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--policy-uri", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "bare":
        serve_bare(args.port)
    elif args.role == "proxy":
        serve_proxy(args.port, args.policy_uri)
    elif args.role == "load":
        run_load(args.url, args.seconds, args.concurrency)
    else:
        load_before = os.getloadavg()[0]  # other work on the machine skews every row
        rows = benchmark(args.seconds, args.concurrency)
        sys.stdout.write(table(rows, args.seconds, args.concurrency, load_before) + "\n")


if __name__ == "__main__":
    main()

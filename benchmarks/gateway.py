"""Decisions per second and latency of the gateway's decide endpoint, against a bare endpoint.

    .venv/bin/python benchmarks/gateway.py [--seconds 10 --concurrency 32]

Every service is a real process on 127.0.0.1: two policy servers (`python -m gateway.policy_server`
with generated 8-feature, 4-action artifacts), the gateway (`python -m gateway`), and as the
baseline a bare Starlette endpoint served by the same uvicorn setup (`serving`: one process,
h11, no access log) that parses the same JSON body and answers a decision-shaped JSON without
asking any policy. The load comes from a second process (`--role load`): `concurrency`
keep-alive connections, each sending its next request as soon as the last is answered, for
`seconds` after a warm-up, over a minimal HTTP/1.1 client (so the client's own cost stays small
next to the server's). Units are drawn from 100,000 ids, so split mode really splits.

Rows: the bare endpoint; decide with the route in `off` (one policy call), `split` at 50% (one
call, half to each policy server), `shadow` (two concurrent calls), and `split` again with
every guardrail at work (a binding share cap, a value cap, a reviewed action queueing
proposals). The ratio is decide's throughput over the bare endpoint's: what a decision costs
beyond the HTTP framework itself.
All processes share this machine's cores, so the numbers compare rows, not machines.

This file is named like the `gateway` package; run as a script, its directory comes first on
`sys.path`, so it never imports the package and starts the gateway as `python -m gateway`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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


def serve_bare(port: int) -> None:
    """The baseline: the same HTTP stack and uvicorn settings, no routing and no policy call."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def decide(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        return JSONResponse(
            {
                "decision_id": os.urandom(16).hex(),
                "action": "none",
                "arm": "incumbent",
                "version": "bare",
                "mode": "off",
                "shadow_action": None,
                "guardrail": None,
                "unit": body["unit_id"],
            }
        )

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/v1/targets/{target}/decide", decide, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ------------------------------------------------------------------------- the load generator


@dataclass
class LoadResult:
    """What one load run measured (latencies in seconds, after the warm-up)."""

    requests: int
    failures: int
    seconds: float
    latencies: list[float]


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
    overruled: float = 0.0
    """Share of the candidate's decisions the guardrails overruled (the overruling row)."""

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
    done = subprocess.run(
        [sys.executable, __file__, "--role", "load", "--url", url,
         "--seconds", str(seconds), "--concurrency", str(concurrency)],
        cwd=ROOT, capture_output=True, timeout=seconds + WARMUP + 60, check=True,
    )  # fmt: skip
    return LoadResult(**json.loads(done.stdout))


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
        for version, seed in [("41", 1), ("42", 2)]:
            path = running.workdir / f"policy-{version}.json"
            path.write_text(json.dumps(_artifact(version, seed)), encoding="utf-8")
        bare = running.start("bare", [__file__, "--role", "bare"])
        bare_decide = f"{bare}/v1/targets/{TARGET}/decide"
        rows.append(Row("bare endpoint", measure(bare_decide, seconds, concurrency)))
        policy = ["-m", "gateway.policy_server", "--seed", "7", "--policy"]
        incumbent = running.start("incumbent", [*policy, str(running.workdir / "policy-41.json")])
        candidate = running.start("candidate", [*policy, str(running.workdir / "policy-42.json")])
        # routes go to the control plane (its own port; no token: loopback-only benchmark)
        control_port = _free_port()
        gateway = running.start("gateway", ["-m", "gateway", "--control-port", str(control_port),
                                            "--insecure-control-plane", "--policy-uri", incumbent,
                                            "--policy-uri", candidate])  # fmt: skip
        control = f"http://127.0.0.1:{control_port}"
        decide = f"{gateway}/v1/targets/{TARGET}/decide"
        # Split with and without guardrails alternate, twice: the machine drifts over a run,
        # and the guardrails' cost is a few percent, so rows far apart would compare the drift.
        routes = [
            ("off", "decide off", None),
            ("split", SPLIT_ROW, None),
            ("split", GUARDED_ROW, GUARDED),
            ("split", SPLIT_ROW, None),
            ("split", GUARDED_ROW, GUARDED),
            ("shadow", "decide shadow", None),
        ]
        for generation, (mode, name, guardrails) in enumerate(routes, start=1):
            _put_route(control, generation, mode, incumbent, candidate, guardrails)
            rows.append(Row(name, measure(decide, seconds, concurrency)))
        _put_route(control, len(routes) + 1, "split", incumbent, candidate, BINDING)
        before = _overruled_and_decided(control)
        rows.append(Row(BINDING_ROW, measure(decide, seconds, concurrency)))
        after = _overruled_and_decided(control)
        decided = after[1] - before[1]
        rows[-1].overruled = (after[0] - before[0]) / decided if decided else 0.0
    return rows


SPLIT_ROW = "decide split 50%"


GUARDED_ROW = "decide split 50% + caps + review"
BINDING_ROW = "decide split 50%, guardrails overruling"


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


def table(rows: list[Row], seconds: float, concurrency: int, load_before: float) -> str:
    """The markdown report: settings, one line per row, and the ratios to the bare endpoint."""
    bare = rows[0]
    lines = [
        f"gateway decide benchmark: {seconds:g}s per row after {WARMUP:g}s warm-up, "
        f"{concurrency} connections, 1 load process; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average before the run "
        f"{load_before:.2f}",
        "",
        "| row | decisions/s | p50 ms | p99 ms | failed | vs bare (rate) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.rate:,.0f} | {row.percentile(50):.2f} | "
            f"{row.percentile(99):.2f} | {row.result.failures} | {row.rate / bare.rate:.2f}x |"
        )
    split = next(row for row in rows if row.name == SPLIT_ROW)
    split_rate = _mean_rate(rows, SPLIT_ROW)
    guarded_rate = _mean_rate(rows, GUARDED_ROW)
    binding = next(row for row in rows if row.name == BINDING_ROW)
    lines += [
        "",
        f"ratio decide (split 50%) / bare: {split.rate / bare.rate:.2f} in throughput, "
        f"{split.percentile(50) / bare.percentile(50):.1f}x the p50 latency",
        f"ratio guardrails on / off (split 50%, mean of the alternating rows): "
        f"{guarded_rate / split_rate:.2f} in throughput (goal >= 0.9)",
        f"ratio guardrails overruling / off (split 50%): {binding.rate / split_rate:.2f}, with "
        f"{binding.overruled:.0%} of the candidate's decisions overruled (each asks the "
        "incumbent too)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark (default), or one of its processes (`--role bare|load`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row")
    parser.add_argument("--concurrency", type=int, default=32, help="open connections")
    parser.add_argument("--role", choices=["bench", "bare", "load"], default="bench")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "bare":
        serve_bare(args.port)
    elif args.role == "load":
        run_load(args.url, args.seconds, args.concurrency)
    else:
        load_before = os.getloadavg()[0]  # other work on the machine skews every row
        rows = benchmark(args.seconds, args.concurrency)
        sys.stdout.write(table(rows, args.seconds, args.concurrency, load_before) + "\n")


if __name__ == "__main__":
    main()

"""A router that runs as its own process, so chaos tests can kill, restart, hang and slow it.

`python -m tests.chaos.router_process --port P --dir D` serves lockgate's HTTP route contract on
127.0.0.1:P with exactly the semantics of the in-thread `RouterServer` of tests/helpers/servers.py,
whose contract code (and request handler) it reuses: PUT stores a newer generation, the same
generation is idempotent, an older one is refused with 409 naming the generation and rollout held;
GET answers the route or 404. On top of that, in D:

- `routes.json` holds every target's route. It is rewritten atomically before a PUT is answered,
  so a router SIGKILLed and restarted on the same port and directory keeps its state.
- `puts.jsonl` gets a line when a PUT arrives (`event: received`) and one when it is answered
  (`event: answered`, with the status code): time, target, generation, rollout id, mode, percent,
  incumbent. The test reads it back as the router's ground truth.
- `faults.json`, read on every PUT, may hold `{"put_delay": seconds}` (optionally with
  `"targets": [...]`): the router then waits that long before it handles the PUT, which lets a
  test kill a worker (or the Temporal server) while a route change is in flight.

`RouterProcess` is the test's side: start, SIGKILL, restart on the same port, SIGSTOP/SIGCONT, set
the faults, read the log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import httpx

from runtime.processes import ManagedProcess, free_port, port_open
from tests.helpers.servers import Reply, RouterServer, _Handler

__all__ = ["FileBackedRouter", "PutRecord", "RouterProcess", "main"]

ROOT: Final = Path(__file__).resolve().parents[2]
ROUTES_FILE: Final = "routes.json"
PUT_LOG: Final = "puts.jsonl"
FAULTS_FILE: Final = "faults.json"


# ----------------------------------------------------------------------------- the process side


class FileBackedRouter(RouterServer):
    """RouterServer's contract, with its routes on disk, every PUT logged, and slow PUTs.

    Requests come through `serve`, on a fixed port a restarted router gets back. (RouterServer
    also listens on an ephemeral port of its own, which nobody is told about.)
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._write_lock = threading.Lock()
        """Held from storing a route to logging the answer, so the log is in storage order."""
        self._log_lock = threading.Lock()
        super().__init__()
        routes_file = directory / ROUTES_FILE
        if routes_file.exists():
            with self._lock:
                self._routes.update(json.loads(routes_file.read_text(encoding="utf-8")))

    def serve(self, port: int) -> None:
        """Answer on 127.0.0.1:`port` until the process is killed."""
        httpd = _FixedPortServer(self, port)
        print(f"router {os.getpid()} listening on 127.0.0.1:{port}, state in {self.directory}")
        httpd.serve_forever(poll_interval=0.05)

    def _put(self, target: str, body: bytes) -> Reply:
        route = _json_object(body)
        self._log("received", target, route, None)
        delay = self._put_delay(target)
        if delay > 0:
            time.sleep(delay)  # the fault: a router that takes this long to answer
        with self._write_lock:
            status, reply = super()._put(target, body)
            if status == 200:
                self._save()
            self._log("answered", target, route, status)
        return status, reply

    def _put_delay(self, target: str) -> float:
        path = self.directory / FAULTS_FILE
        try:
            faults = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return 0.0
        targets = faults.get("targets")
        if targets is not None and target not in targets:
            return 0.0
        return float(faults.get("put_delay", 0.0))

    def _save(self) -> None:
        with self._lock:
            text = json.dumps(self._routes, sort_keys=True)
        _write_atomically(self.directory / ROUTES_FILE, text)

    def _log(self, event: str, target: str, route: dict[str, Any], status: int | None) -> None:
        incumbent = route.get("incumbent")
        record = {
            "at": time.time(),
            "event": event,
            "pid": os.getpid(),
            "target": target,
            "generation": route.get("generation"),
            "rollout_id": route.get("rollout_id"),
            "mode": route.get("mode"),
            "percent": route.get("percent"),
            "incumbent": incumbent.get("version") if isinstance(incumbent, dict) else None,
            "status": status,
        }
        with self._log_lock, (self.directory / PUT_LOG).open("a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")


class _FixedPortServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: FileBackedRouter, port: int) -> None:
        self.app = app  # what tests.helpers.servers._Handler dispatches to
        super().__init__(("127.0.0.1", port), _Handler)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m tests.chaos.router_process`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True, help="routes, PUT log and faults")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        FileBackedRouter(args.dir).serve(args.port)


# ----------------------------------------------------------------------------- the test side


@dataclass(frozen=True)
class PutRecord:
    """One line of the router's PUT log."""

    at: float
    event: str
    """`received` when the PUT arrived, `answered` when its answer was decided."""
    pid: int
    target: str
    generation: int
    rollout_id: str
    mode: str
    percent: float
    incumbent: str
    status: int | None
    """The HTTP status of an `answered` PUT; None for `received`."""


class RouterProcess:
    """The chaos router as the test sees it: one port and one directory across restarts."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: ManagedProcess | None = None
        self.started: list[ManagedProcess] = []
        """Every process started for this router, for teardown."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start (or restart) the router on its port and directory; wait until it listens."""
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "tests.chaos.router_process"]
        command += ["--port", str(self.port), "--dir", str(self.directory)]
        process = ManagedProcess(
            f"router:{self.port}",
            command,
            self.directory / "router.log",
            env={"PYTHONUNBUFFERED": "1"},
            cwd=ROOT,
        )
        self.started.append(process.start())
        self.process = process

        async def listening() -> bool:
            return port_open(self.port)

        await process.wait_ready(listening, within=20)

    def kill(self) -> None:
        """SIGKILL: the router is down and its port refuses connections."""
        assert self.process is not None
        self.process.kill()

    def freeze(self) -> None:
        """SIGSTOP: the router hangs; connections are queued by the kernel but never answered."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: the hung router carries on, with whatever queued up meanwhile."""
        self._signal(signal.SIGCONT)

    def slow_puts(self, seconds: float, targets: list[str] | None = None) -> None:
        """Make every PUT (to `targets`, or any) wait `seconds` before it is handled; 0: off."""
        faults: dict[str, object] = {"put_delay": seconds}
        if targets is not None:
            faults["targets"] = targets
        _write_atomically(self.directory / FAULTS_FILE, json.dumps(faults))

    def puts(self, target: str | None = None) -> list[PutRecord]:
        """The PUT log, oldest first (only `target`'s lines when given)."""
        path = self.directory / PUT_LOG
        if not path.exists():
            return []
        records = [
            PutRecord(**json.loads(line))
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        return [r for r in records if target is None or r.target == target]

    def pending(self, target: str, mode: str, percent: float | None = None) -> PutRecord | None:
        """A PUT of `target` in `mode` that has arrived and not been answered yet, if any."""
        records = self.puts(target)
        answered = {r.generation for r in records if r.event == "answered"}
        for record in records:
            if record.event != "received" or record.generation in answered:
                continue
            if record.mode == mode and (percent is None or record.percent == percent):
                return record
        return None

    async def route(self, target: str) -> dict[str, Any] | None:
        """GET the target's route from the router itself; None on 404."""
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{self.url}/v1/targets/{target}/route", timeout=5)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        route: dict[str, Any] = response.json()
        return route

    def kill_all(self) -> None:
        """SIGKILL every router process this object started (stopped ones too)."""
        for process in self.started:
            process.kill()

    def _signal(self, sig: signal.Signals) -> None:
        popen = self.process.popen if self.process is not None else None
        assert popen is not None, "the router was never started"
        os.killpg(popen.pid, sig)


if __name__ == "__main__":
    main()

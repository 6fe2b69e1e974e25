"""Clean stops: whatever stops `lockgate demo` or `python worker.py`, nothing they started is left.

SIGINT is a terminal's Ctrl-C; SIGTERM is what systemd, `docker stop`, `timeout` and a cancelled
CI job send; SIGHUP is a closed terminal; SIGKILL (the OOM killer, `kill -9`) cannot be caught,
so the children's end then rests on the parent's watchdog. Each test starts the real command,
records its whole process tree from /proc once it is up (or, for start-up, once the Temporal
server exists), sends one signal to the parent alone, and expects every process of that tree to
have ended within STOP_WITHIN seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.processes import ManagedProcess, free_port
from runtime.stack import PORTS_ENV, StackPorts
from tests.e2e.processes import ROOT, worker_process
from tests.helpers.proctree import Proc, descendants, kill_left, running
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.e2e

STOP_WITHIN = 5.0
"""Every stop completes within this many seconds, SIGKILL of the parent included."""

DEMO_UP_WITHIN = 150.0
"""The demo stack's start on a loaded two-core machine: offline log, Temporal, five services."""


def _isolated_env(**extra: str) -> dict[str, str]:
    """This environment without any TEMPORAL_* or LOCKGATE_* setting of the developer's."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TEMPORAL_", "LOCKGATE_"))
    }
    return {**env, "PYTHONUNBUFFERED": "1", "COLUMNS": "120", **extra}


@pytest.fixture
def started() -> Iterator[list[ManagedProcess | Proc]]:
    """What a test started; whatever a failed test leaves is killed here, by pid."""
    things: list[ManagedProcess | Proc] = []
    yield things
    kill_left([thing for thing in things if isinstance(thing, Proc)])
    for thing in things:
        if isinstance(thing, ManagedProcess):
            thing.kill()


def _has(tree: list[Proc], *words: str) -> int:
    """How many processes of `tree` have all of `words` among their arguments."""
    return sum(all(word in proc.argv for word in words) for proc in tree)


def _script(tree: list[Proc], name: str) -> int:
    return sum(any(Path(arg).name == name for arg in proc.argv[:2]) for proc in tree)


def _demo_up(tree: list[Proc]) -> bool:
    expected = [
        _script(tree, "worker.py") == 1,
        _has(tree, "server", "start-dev") == 1,
        _has(tree, "-m", "gateway.policy_server") == 2,
        _has(tree, "-m", "gateway") == 1,
        _has(tree, "-m", "simulator") == 1,
        _has(tree, "-m", "runtime.processes") == 2,  # the demo's watchdog and the worker's
    ]
    if shutil.which("prometheus"):
        expected.append(sum(Path(proc.argv[0]).name == "prometheus" for proc in tree) == 1)
    return all(expected)


def _temporal_started(watchdogs: int) -> Callable[[list[Proc]], bool]:
    """The Temporal server runs, watched: start-up is under way, the stack not up yet."""

    def ready(tree: list[Proc]) -> bool:
        return (
            _has(tree, "server", "start-dev") == 1
            and _has(tree, "-m", "runtime.processes") == watchdogs
        )

    return ready


async def _stop_and_check(
    parent: ManagedProcess,
    sig: signal.Signals,
    ready: Callable[[list[Proc]], bool],
    what: str,
    started: list[ManagedProcess | Proc],
    within: float,
) -> tuple[int, list[Proc]]:
    """Wait for `ready(tree)`, send `sig` to the parent alone, expect the whole tree gone."""
    pid = parent.pid
    assert pid is not None

    def tree_when_ready() -> list[Proc] | None:
        assert parent.alive, f"{parent.name} exited early:\n{parent.output()[-3000:]}"
        tree = descendants(pid)
        return tree if ready(tree) else None

    tree = await wait_until(tree_when_ready, timeout=within, interval=0.2, what=what)
    started.extend(tree)
    signalled = time.monotonic()
    os.kill(pid, sig)

    def all_gone() -> bool:
        left = [proc for proc in tree if running(proc)]
        assert not left, "still running: " + "; ".join(proc.command for proc in left)
        return not parent.alive

    await wait_until(all_gone, timeout=STOP_WITHIN, interval=0.1, what="every process to end")
    took = time.monotonic() - signalled
    assert took <= STOP_WITHIN
    assert parent.popen is not None
    assert parent.popen.returncode is not None
    return parent.popen.returncode, tree


# ------------------------------------------------------------------------------ lockgate demo


def _lockgate_demo(tmp_path: Path) -> ManagedProcess:
    """`lockgate demo --fast` as a person runs it, from their own directory, on free ports."""
    ports = StackPorts.free()
    moved = ",".join(f"{name}={port}" for name, port in vars(ports).items())
    return ManagedProcess(
        "lockgate demo",
        [sys.executable, str(ROOT / "cli.py"), "demo", "--fast", "--rate", "20"],
        tmp_path / "demo.out",
        env=_isolated_env(**{PORTS_ENV: moved}),
        cwd=tmp_path,
    )


DEMO_EXIT = {
    signal.SIGINT: 0,  # as Ctrl-C always did: "stopped"
    signal.SIGTERM: 128 + signal.SIGTERM,
    signal.SIGHUP: 128 + signal.SIGHUP,
    signal.SIGKILL: -signal.SIGKILL,
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("sig", "when"),
    [
        (signal.SIGINT, "up"),
        (signal.SIGTERM, "up"),
        (signal.SIGHUP, "up"),
        (signal.SIGKILL, "up"),
        (signal.SIGHUP, "start-up"),
    ],
    ids=["SIGINT", "SIGTERM", "SIGHUP", "SIGKILL", "SIGHUP-during-start-up"],
)
async def test_a_signal_to_lockgate_demo_leaves_no_process_behind(
    tmp_path: Path, started: list[ManagedProcess | Proc], sig: signal.Signals, when: str
) -> None:
    demo = _lockgate_demo(tmp_path).start()
    started.append(demo)
    ready, what = (
        (_demo_up, "the whole demo stack with its traffic")
        if when == "up"
        else (_temporal_started(2), "the demo's Temporal server")
    )

    code, tree = await _stop_and_check(demo, sig, ready, what, started, DEMO_UP_WITHIN)

    shown = demo.output()
    assert code == DEMO_EXIT[sig], shown[-3000:]
    assert ("stack up" in shown) is (when == "up"), shown[-3000:]
    assert "Traceback" not in shown, shown[-3000:]
    if sig is not signal.SIGKILL:
        said = "stopped" if sig is signal.SIGINT else f"stopped ({sig.name})"
        assert shown.rstrip().endswith(said), shown[-3000:]
    assert len(tree) >= (9 if when == "up" else 3), [proc.command for proc in tree]


# ------------------------------------------------------------------------------ worker.py


def _embedded_worker(tmp_path: Path) -> ManagedProcess:
    """`python worker.py` with no TEMPORAL_ADDRESS: it starts its own Temporal server."""
    return worker_process(
        tmp_path / "worker.log",
        _isolated_env(
            LOCKGATE_DATA_DIR=str(tmp_path / "data"),
            LOCKGATE_TEMPORAL_PORT=str(free_port()),
            LOCKGATE_UI_PORT=str(free_port()),
            LOCKGATE_METRICS_ADDRESS="",
        ),
    )


def _worker_polling(worker: ManagedProcess) -> Callable[[list[Proc]], bool]:
    def ready(tree: list[Proc]) -> bool:
        return "polling task queue" in worker.output() and _temporal_started(1)(tree)

    return ready


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("sig", "when", "exit_code"),
    [
        (signal.SIGTERM, "serving", 0),
        (signal.SIGHUP, "serving", 0),
        (signal.SIGKILL, "serving", -signal.SIGKILL),
        (signal.SIGTERM, "start-up", 0),
    ],
    ids=["SIGTERM", "SIGHUP", "SIGKILL", "SIGTERM-during-start-up"],
)
async def test_a_signal_to_the_worker_stops_its_embedded_temporal_server(
    tmp_path: Path,
    started: list[ManagedProcess | Proc],
    sig: signal.Signals,
    when: str,
    exit_code: int,
) -> None:
    worker = _embedded_worker(tmp_path)
    worker.env.pop("TEMPORAL_ADDRESS", None)
    worker.start()
    started.append(worker)
    ready = _worker_polling(worker) if when == "serving" else _temporal_started(1)

    code, tree = await _stop_and_check(worker, sig, ready, "the worker", started, 90)

    assert code == exit_code, worker.output()[-3000:]
    assert _has(tree, "-m", "runtime.processes") == 1, "the worker's own watchdog"
    if when == "start-up":
        assert "polling task queue" not in worker.output()
    if sig is not signal.SIGKILL:
        assert "Traceback" not in worker.output(), worker.output()[-3000:]

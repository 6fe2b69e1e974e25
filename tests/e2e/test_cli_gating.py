"""CI gating as a CI job runs it: the real `lockgate` process, piped, judged by its exit code.

Rollouts run on the session's real dev server with a real worker and real loopback router and
Prometheus stand-ins; their output is piped (never a terminal), so `watch` and `submit --wait`
print one line per event. The codes are runtime.outcomes': 0 completed, 3 rolled back,
4 escalated, 5 timed out, 2 bad input.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import pty
import re
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client, WorkflowExecutionStatus

from rollout_specs import workflow_id_for
from runtime.listing import ROW_KEYS, STATUS_KEYS
from runtime.rollouts import query_status
from runtime.watching import EVENT_KEYS
from tests.conftest import spec_document
from tests.e2e.processes import ROOT
from tests.e2e.test_cli import lockgate, write_spec
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from workflows.state import Phase

pytestmark = pytest.mark.e2e

EVENT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (?P<target>\S+) "
    r"(?P<event>phase|stage|verdict|approval_asked|escalation|unavailable|outcome)[ :]"
)


def _events(stdout: str, target: str) -> list[tuple[str, str]]:
    """Every line of piped watch output as (event, line); each must be one event of `target`."""
    events = []
    for text in stdout.splitlines():
        match = EVENT_LINE.match(text)
        assert match, f"not an event line: {text!r}\n{stdout}"
        assert match["target"] == target, text
        events.append((match["event"], text))
    return events


def _json_events(stdout: str) -> list[dict[str, Any]]:
    """Every line of `watch -o json` as an object; each has exactly the documented keys."""
    objects = [json.loads(text) for text in stdout.splitlines()]
    for document in objects:
        assert tuple(document) == EVENT_KEYS, document
    return objects


def _stages(events: list[tuple[str, str]]) -> list[str]:
    return [text.split(": ", 1)[1].split(" (")[0] for kind, text in events if kind == "stage"]


def _in_a_terminal(client: Client, *args: str) -> tuple[int, str]:
    """Run `lockgate *args` with a pseudo-terminal as stdout; its exit code and all it wrote."""
    env = {
        "PATH": "/usr/bin:/bin",
        "TERM": "xterm",
        "COLUMNS": "200",
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
    }
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "cli.py", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    chunks = []
    try:
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(primary)


async def _end(client: Client, target: str) -> None:
    """Terminate a rollout a test left running (the dev server outlives the test)."""
    handle = client.get_workflow_handle(workflow_id_for(target))
    if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
        await handle.terminate("the test is over")


@pytest.mark.usefixtures("worker")
async def test_submit_wait_exits_0_on_completed_with_one_line_per_event_and_json_lines(
    tmp_path: Path,
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
) -> None:
    metrics.set("error_rate", 0.0)
    spec = tmp_path / "spec.yaml"
    bakes = {"shadow": "2s", "canary": "2s", "half": "2s", "full": "2s"}
    target = write_spec(spec, router, metrics, **bakes)
    run = functools.partial(lockgate, client=client, task_queue=task_queue)

    waiting = asyncio.create_task(run("submit", str(spec), "--wait", "--timeout", "50s"))
    await wait_until(lambda: router.current(target), what="the shadow route")
    watched = await run("watch", target, "-o", "json", "--interval", "0.2")
    submitted = await waiting

    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    first, *rest = submitted.stdout.splitlines()
    assert first.startswith(f"submitted rollout-{target}")
    events = _events("\n".join(rest), target)
    assert events[0][0] == "phase"
    assert events[-1][0] == "outcome"
    assert "outcome completed (exit 0): rollout ended: completed" in events[-1][1]
    seen = _stages(events)
    assert seen[0] == "shadow"
    assert seen == sorted(set(seen), key=list(bakes).index), "each stage change is one line"
    assert [kind for kind, _ in events].count("outcome") == 1

    assert watched.returncode == 0, watched.stdout + watched.stderr
    objects = _json_events(watched.stdout)
    assert [o["stage"] for o in objects if o["event"] == "stage"] == list(bakes)
    assert ("verdict", "error-rate", "pass") in [
        (o["event"], o["trigger"], o["verdict"]) for o in objects
    ]
    final = objects[-1]
    assert (final["event"], final["outcome"], final["exit_code"]) == ("outcome", "completed", 0)
    assert final["phase"] == "completed"
    assert all(o["target"] == target and o["at"].endswith("Z") for o in objects)


@pytest.mark.usefixtures("worker")
async def test_watch_exits_3_when_a_trigger_rolls_the_rollout_back(
    tmp_path: Path,
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
) -> None:
    metrics.set("error_rate", 0.0)
    spec = tmp_path / "spec.yaml"
    target = write_spec(spec, router, metrics, shadow="1h")
    run = functools.partial(lockgate, client=client, task_queue=task_queue)
    submitted = await run("submit", str(spec))
    assert submitted.returncode == 0, submitted.stderr
    await wait_until(lambda: router.current(target), what="the shadow route")

    metrics.set("error_rate", 0.5)
    watched = await run("watch", target, "--interval", "0.2")

    assert watched.returncode == 3, watched.stdout + watched.stderr
    events = _events(watched.stdout, target)
    assert any(kind == "verdict" and "error-rate fail: " in text for kind, text in events), (
        watched.stdout
    )
    assert events[-1][0] == "outcome"
    assert "outcome rolled_back (exit 3): rollout ended: rolled_back: " in events[-1][1]
    assert (router.current(target) or {}).get("mode") == "off"

    # On a terminal: the live tables, not event lines, and the same exit code.
    code, screen = await asyncio.to_thread(_in_a_terminal, client, "watch", target)
    assert code == 3, screen
    assert "rollout ranker-v42" in screen
    assert "audit (latest 8)" in screen
    assert "rollout ended: rolled_back: " in screen
    assert "(exit 3: rolled_back)" in screen
    assert not any(EVENT_LINE.match(text.strip()) for text in screen.splitlines()), screen


@pytest.mark.usefixtures("worker")
async def test_waiting_for_an_approval_past_the_timeout_exits_5(
    tmp_path: Path,
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
) -> None:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][1]["approval"] = {"approvers": ["bob"]}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(document), encoding="utf-8")
    target = document["spec"]["target"]
    run = functools.partial(lockgate, client=client, task_queue=task_queue, actor="alice")
    try:
        # --timeout implies --wait: submit gives up after 2 s, long before anyone approves.
        started = time.monotonic()
        submitted = await run("submit", str(spec), "--timeout", "2s")
        assert submitted.returncode == 5, submitted.stdout + submitted.stderr
        assert time.monotonic() - started < 30
        assert "outcome timed_out (exit 5): timed out after 2s in phase " in submitted.stdout

        async def awaiting_approval() -> bool:
            status = await query_status(client, target)
            return status.state.phase is Phase.AWAITING_APPROVAL

        await wait_until(awaiting_approval, what="the approval request")
        watched = await run("watch", target, "--timeout", "1s", "-o", "json", "--interval", "0.2")
        assert watched.returncode == 5, watched.stdout + watched.stderr
        objects = _json_events(watched.stdout)
        asked = [o for o in objects if o["event"] == "approval_asked"]
        assert len(asked) == 1
        assert "bob" in asked[0]["message"]
        assert asked[0]["stage"] == "canary"
        assert objects[-1]["exit_code"] == 5
        assert objects[-1]["outcome"] == "timed_out"
        assert objects[-1]["phase"] == "awaiting_approval"
    finally:
        await _end(client, target)


@pytest.mark.usefixtures("worker")
async def test_an_escalation_ends_the_watch_with_4_unless_until_terminal(
    tmp_path: Path,
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
) -> None:
    metrics.set("error_rate", None)  # no evidence at all: held, then escalated
    spec = tmp_path / "spec.yaml"
    target = write_spec(spec, router, metrics)
    run = functools.partial(lockgate, client=client, task_queue=task_queue)
    try:
        submitted = await run("submit", str(spec), "--no-preflight", "--wait")
        assert submitted.returncode == 4, submitted.stdout + submitted.stderr
        events = _events(submitted.stdout.split("\n", 1)[1], target)
        assert events[-1][0] == "outcome"
        assert "outcome needs_human (exit 4): a human is needed: " in events[-1][1]
        assert "escalation" in [kind for kind, _ in events]

        started = time.monotonic()
        patient = await run("watch", target, "--until-terminal", "--timeout", "2s")
        assert patient.returncode == 4, patient.stdout + patient.stderr
        assert time.monotonic() - started >= 2, "--until-terminal watches on past escalated"
        assert "timed out after 2s in phase escalated" in patient.stdout
    finally:
        await _end(client, target)


@pytest.mark.usefixtures("worker")
async def test_list_prints_json_and_refuses_an_unknown_phase(
    tmp_path: Path,
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
) -> None:
    metrics.set("error_rate", 0.0)
    spec = tmp_path / "spec.yaml"
    target = write_spec(spec, router, metrics, shadow="1h")
    run = functools.partial(lockgate, client=client, task_queue=task_queue)
    try:
        submitted = await run("submit", str(spec))
        assert submitted.returncode == 0, submitted.stderr
        await wait_until(lambda: router.current(target), what="the shadow route")

        async def listed_running() -> list[dict[str, Any]]:
            result = await run("list", "--target", target, "--phase", "running", "-o", "json")
            assert result.returncode == 0, result.stderr
            rows: list[dict[str, Any]] = json.loads(result.stdout)
            return rows

        rows = await wait_until(listed_running, what="the rollout listed as running")
        assert [tuple(row) for row in rows] == [ROW_KEYS]
        assert rows[0]["workflow_id"] == f"rollout-{target}"
        assert rows[0]["status"] == "running"
        nothing = await run("list", "--target", target, "--phase", "completed", "-o", "json")
        assert nothing.returncode == 0, nothing.stderr
        assert json.loads(nothing.stdout) == []

        bogus = await run("list", "--phase", "bogus")
        assert bogus.returncode == 2
        assert "bogus" in bogus.stderr
        for phase in ("awaiting_approval", "escalated", "rolled_back", "completed"):
            assert phase in bogus.stderr
        assert bogus.stdout == ""
    finally:
        await _end(client, target)


async def test_status_json_has_the_same_keys_with_and_without_a_worker(
    tmp_path: Path,
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    worker: None,
    task_queue: str,
) -> None:
    metrics.set("error_rate", 0.0)
    answered_spec, orphan_spec = tmp_path / "answered.yaml", tmp_path / "orphan.yaml"
    answered = write_spec(answered_spec, router, metrics, shadow="1h")
    orphan = write_spec(orphan_spec, router, metrics, shadow="1h")
    run = functools.partial(lockgate, client=client)
    # The orphan's task queue has no worker: its status query is never answered.
    nobody = f"{task_queue}-{uuid.uuid4().hex[:6]}-no-worker"
    try:
        for path, queue in ((answered_spec, task_queue), (orphan_spec, nobody)):
            submitted = await run("submit", str(path), task_queue=queue)
            assert submitted.returncode == 0, submitted.stderr
        await wait_until(lambda: router.current(answered), what="the shadow route")

        with_worker, without_worker, unwatched = await asyncio.gather(
            run("status", answered, "-o", "json"),
            run("status", orphan, "-o", "json"),
            run("watch", orphan, "-o", "json", "--timeout", "15s"),
        )
        assert with_worker.returncode == 0, with_worker.stderr
        assert without_worker.returncode == 0, without_worker.stderr
        full, fallback = json.loads(with_worker.stdout), json.loads(without_worker.stdout)
        assert tuple(full) == tuple(fallback) == STATUS_KEYS
        assert full["source"] == "query"
        assert fallback["source"] == "description"
        assert full["state"]["phase"] == full["phase"] == "running"
        assert fallback["state"] is None
        assert fallback["spec"] is None
        assert (fallback["target"], fallback["workflow_id"]) == (orphan, f"rollout-{orphan}")
        assert fallback["status"] == full["status"] == "running"

        # Watching it: a missing worker is reported once, and is not an outcome by itself.
        assert unwatched.returncode == 5, unwatched.stdout + unwatched.stderr
        events = _json_events(unwatched.stdout)
        assert [e["event"] for e in events] == ["unavailable", "outcome"]
        assert "no worker answered the status query" in events[0]["message"]
        assert events[-1]["message"] == "timed out after 15s before any status was read"
    finally:
        await asyncio.gather(_end(client, answered), _end(client, orphan))


def test_the_event_line_pattern_rejects_other_text() -> None:
    """The pattern the tests judge lines by matches events only (so they can fail)."""
    assert not EVENT_LINE.match("rollout ended: completed: promoted")
    assert EVENT_LINE.match("2026-11-30T22:00:00Z t-1 outcome completed (exit 0): done")
    with pytest.raises(AssertionError):
        _events("╭── rollout ranker-v42\n", "t-1")


async def test_status_json_stays_parseable_when_the_sdk_warns(
    tmp_path: Path, client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    """The SDK's own warnings go to stderr: stdout carries the JSON document and nothing else.

    A rollout nobody works on, and a query the test keeps waiting on it, fill the server's
    buffer of queries (the CLI's start-up alone gives the test's query the time to arrive
    first, and the test checks that it still waits when the CLI is done). The CLI's own status
    query is then refused and retried, and the SDK warns ("gRPC call query_workflow retried 5
    times"). That warning once reached stdout ahead of the JSON, so a CI job's
    `lockgate status -o json | jq` broke whenever the server was busy.
    """
    spec = tmp_path / "orphan.yaml"
    orphan = write_spec(spec, router, metrics, shadow="1h")
    nobody = f"{task_queue}-{uuid.uuid4().hex[:6]}-no-worker"
    submitted = await lockgate("submit", str(spec), client=client, task_queue=nobody)
    assert submitted.returncode == 0, submitted.stderr
    handle = client.get_workflow_handle(workflow_id_for(orphan))
    holding = asyncio.ensure_future(handle.query("status", rpc_timeout=timedelta(seconds=30)))
    try:
        result = await lockgate("status", orphan, "-o", "json", client=client)
        assert not holding.done(), "the buffer emptied: the CLI's query may not have been refused"
    finally:
        holding.cancel()
        await asyncio.gather(holding, return_exceptions=True)
        await _end(client, orphan)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["source"], document["target"]) == ("description", orphan)


async def test_watch_reports_a_missing_worker_within_its_timeout_on_a_busy_server(
    tmp_path: Path, client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    """A status query gives up within its own deadline, however busy the server is.

    Other clients' queries keep the worker-less rollout's query buffer full, so the server
    refuses `watch`'s query and the SDK retries it, each attempt with its own timeout: one query
    once took 18 s, and a `watch --timeout 10s` ended without ever saying that no worker
    answers (the `unavailable` event a CI log needs to explain the timeout).
    """
    spec = tmp_path / "orphan.yaml"
    orphan = write_spec(spec, router, metrics, shadow="1h")
    nobody = f"{task_queue}-{uuid.uuid4().hex[:6]}-no-worker"
    submitted = await lockgate("submit", str(spec), client=client, task_queue=nobody)
    assert submitted.returncode == 0, submitted.stderr
    handle = client.get_workflow_handle(workflow_id_for(orphan))
    holding = [
        asyncio.ensure_future(handle.query("status", rpc_timeout=timedelta(seconds=60)))
        for _ in range(3)
    ]
    try:
        watched = await lockgate("watch", orphan, "-o", "json", "--timeout", "10s", client=client)
    finally:
        for query in holding:
            query.cancel()
        await asyncio.gather(*holding, return_exceptions=True)
        await _end(client, orphan)
    assert watched.returncode == 5, watched.stdout + watched.stderr
    events = _json_events(watched.stdout)
    assert [e["event"] for e in events][:1] == ["unavailable"], watched.stdout
    assert events[-1]["event"] == "outcome"

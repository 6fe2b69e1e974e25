"""Why a rollout is stuck: a rollback the router refuses, as `lockgate status` shows it.

The router goes away after the rollout started, then a human rolls back: the workflow retries
`apply_route` forever. The server's description of the workflow carries that activity's attempt
count and last error; status must show them with a worker answering queries and without one.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from activities.contracts import APPLY_ROUTE
from activities.registry import BackendRegistry
from runtime.rollouts import PendingActivity, pending_activities, send_command, submit_rollout
from tests.conftest import build_spec, spec_document
from tests.e2e.test_cli import lockgate
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from worker import build_worker, http_client

pytestmark = pytest.mark.e2e


def _stuck_route(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The apply_route entry of a `pending_activities` JSON list (asserting there is one)."""
    routes = [entry for entry in entries if entry["activity"] == APPLY_ROUTE]
    assert len(routes) == 1, entries
    return routes[0]


def _assert_router_error(text: str | None, route_url: str) -> None:
    """The activity's own error (not the server's "Failure exceeds size limit." around it),
    with its type, the URL a human has to check, and what the connection attempt said."""
    assert text is not None
    assert text.startswith("RouterUnavailable: "), text
    assert route_url in text, text
    assert "All connection attempts failed" in text, text


async def test_status_shows_the_error_and_attempts_of_a_rollback_the_router_refuses(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][0]["min_duration"] = "1h"
    spec = build_spec(document)
    target = spec.spec.target
    route_url = f"{router.url}/v1/targets/{target}/route"
    run = functools.partial(lockgate, client=client, task_queue=task_queue)

    async with http_client() as http:
        async with build_worker(client, task_queue, BackendRegistry(http)):
            handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
            try:
                await wait_until(lambda: router.current(target), what="the shadow route")
                router.close()  # nothing listens on its port any more: every PUT is refused
                await send_command(client, target, "rollback", actor="bob", reason="router swap")

                async def retried_route() -> PendingActivity | None:
                    found = [
                        activity
                        for activity in pending_activities(await handle.describe())
                        if activity.activity == APPLY_ROUTE and activity.attempt >= 2
                    ]
                    return found[0] if found else None

                stuck = await wait_until(
                    retried_route, timeout=60, what="apply_route's second attempt"
                )
                assert stuck.maximum_attempts is None, "a rollback is retried forever"
                _assert_router_error(stuck.last_error, route_url)
                assert stuck.last_failed_at is not None

                full = await run("status", target, "--output", "json")
                assert full.returncode == 0, full.stderr
                document = json.loads(full.stdout)
                assert document["state"]["phase"] == "rolling_back"
                entry = _stuck_route(document["pending_activities"])
                assert entry["attempt"] >= 2
                assert entry["maximum_attempts"] is None
                _assert_router_error(entry["last_error"], route_url)

                table = await run("status", target)
                assert table.returncode == 0, table.stderr
                assert "in flight" in table.stdout
                row = rf"{APPLY_ROUTE}\s*│\s*\d+ \(no limit\)\s*│\s*(scheduled|started)"
                assert re.search(row, table.stdout), table.stdout
                assert "RouterUnavailable: " in table.stdout
                assert route_url in table.stdout
            except BaseException:
                await handle.terminate("test failed")
                raise

        # No worker now: the status query goes unanswered, and status falls back to the
        # server's view, which still says why the rollout is stuck, in the same shape.
        fallback = await run("status", target, "--output", "json")
        try:
            assert fallback.returncode == 0, fallback.stderr
            document = json.loads(fallback.stdout)
            assert document["status"] == "running"
            entry = _stuck_route(document["pending_activities"])
            assert entry["attempt"] >= stuck.attempt
            _assert_router_error(entry["last_error"], route_url)
            fallback_table = await run("status", target)
            assert fallback_table.returncode == 0, fallback_table.stderr
            assert "no worker answered" in fallback_table.stderr
            assert "in flight" in fallback_table.stdout
            assert "RouterUnavailable: " in fallback_table.stdout
            assert route_url in fallback_table.stdout
        finally:
            await handle.terminate("the test is over; nothing would ever accept this rollback")
    description = await handle.describe()
    assert description.status is WorkflowExecutionStatus.TERMINATED

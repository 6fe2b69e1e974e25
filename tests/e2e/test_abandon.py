"""The way out of a stuck rollout: `lockgate abandon`, driven through the real CLI.

The case from the field: a spec submitted (past preflight) against a router that is not there.
The rollout rolls back and retries forever; every verb but abandon is refused, and the refusal
says how to get out. Abandon ends the rollout in `abandoned`, records who and why, notifies,
prints what the router holds (here: it cannot tell) and frees the target.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client, WorkflowExecutionStatus

from runtime.processes import free_port
from runtime.rollouts import pending_activities, query_status
from tests.conftest import spec_document
from tests.e2e.test_cli import lockgate
from tests.helpers.servers import MetricsServer, RouterServer, WebhookServer
from tests.helpers.waiting import wait_until
from workflows.messages import RolloutResult
from workflows.state import Phase

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]


async def test_a_rollout_stuck_on_a_missing_router_is_abandoned_and_frees_its_target(
    tmp_path: Path, client: Client, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    router_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with WebhookServer() as webhook:
        document = spec_document(router_url, metrics.url)
        document["spec"]["notify"] = [{"type": "webhook", "url": webhook.url}]
        spec = tmp_path / "spec.yaml"
        spec.write_text(yaml.safe_dump(document), encoding="utf-8")
        target = document["spec"]["target"]
        run = functools.partial(lockgate, client=client, task_queue=task_queue)

        submitted = await run("submit", str(spec), "--no-preflight", "--as", "alice")
        assert submitted.returncode == 0, submitted.stderr
        handle = client.get_workflow_handle(f"rollout-{target}", result_type=RolloutResult)

        async def stuck() -> bool:
            state = (await query_status(client, target)).state
            retried = [p for p in pending_activities(await handle.describe()) if p.attempt >= 2]
            return state.phase is Phase.ROLLING_BACK and bool(retried)

        await wait_until(stuck, timeout=90, what="the rollback retrying an unreachable router")

        status = await run("status", target)
        assert status.returncode == 0, status.stderr
        assert f"RouterUnavailable: router at {router_url}/v1/targets/{target}/route" in (
            status.stdout
        ), status.stdout
        paused = await run("pause", target, "--reason", "stop it", "--as", "bob")
        assert paused.returncode == 1
        assert "the rollout is rolling back" in paused.stderr
        assert "RouterUnavailable: " in paused.stderr, "the activity's own error, not ConnectError"
        assert f"`lockgate abandon {target} --reason ... --yes`" in paused.stderr

        unconfirmed = await run("abandon", target, "--reason", "router is gone", "--as", "bob")
        assert unconfirmed.returncode == 2
        assert "--yes" in unconfirmed.stderr
        assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING

        abandoned = await run(
            "abandon", target, "--reason", "router is gone", "--yes", "--actor", "carol"
        )
        assert abandoned.returncode == 0, abandoned.stderr
        assert "abandon: abandoned" in abandoned.stdout
        assert f"cannot tell: the router at {router_url} did not answer (RouterUnavailable" in (
            abandoned.stdout
        ), abandoned.stdout
        assert "retrying" not in abandoned.stderr, "one line names the failure, not each retry"

        result = await handle.result()
        assert result.phase is Phase.ABANDONED
        assert result.outcome.startswith("abandoned by carol: router is gone"), result.outcome
        await wait_until(lambda: "rolled_back" in webhook.events(), what="the last notification")
        told = [b for b in webhook.received if b["event"] == "rolled_back"]
        assert "abandoned by carol: router is gone" in told[0]["text"]
        assert told[0]["phase"] == "abandoned"

    trail = await run("history", target, "--output", "json")
    assert trail.returncode == 0, trail.stderr
    entries = [(e["actor"], e["action"]) for e in json.loads(trail.stdout)["entries"]]
    assert ("carol", "abandon") in entries
    assert entries[-1] == ("lockgate", "ended")
    description = await handle.describe()
    assert description.status is WorkflowExecutionStatus.COMPLETED
    assert description.raw_description.pending_activities == []

    again = await run("submit", str(spec), "--no-preflight", "--as", "alice")
    assert again.returncode == 0, "the target is free again: " + again.stderr
    await client.get_workflow_handle(f"rollout-{target}").terminate(reason="test over")


async def test_abandon_refuses_a_rollout_that_is_not_stuck_unless_forced(
    tmp_path: Path, client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][0]["min_duration"] = "1h"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(document), encoding="utf-8")
    target = document["spec"]["target"]
    run = functools.partial(lockgate, client=client, task_queue=task_queue)

    submitted = await run("submit", str(spec), "--as", "alice")
    assert submitted.returncode == 0, submitted.stderr
    await wait_until(lambda: router.current(target), what="the shadow route")

    refused = await run("abandon", target, "--reason", "bored", "--yes", "--as", "bob")
    assert refused.returncode == 1
    assert "the rollout is not stuck (phase running" in refused.stderr
    assert "--force" in refused.stderr

    forced = await run("abandon", target, "--reason", "wrong spec", "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"route of rollout 'rollout-{target}/" in forced.stdout
    assert "mode shadow, 0% to candidate 42, incumbent 41" in forced.stdout
    handle = client.get_workflow_handle(f"rollout-{target}", result_type=RolloutResult)
    result = await handle.result()
    assert result.phase is Phase.ABANDONED
    assert router.current(target)["mode"] == "shadow", "abandon sends no route"  # type: ignore[index]

    late = await run("abandon", target, "--reason", "again", "--yes", "--force")
    assert late.returncode == 1
    assert "is not running (completed)" in late.stderr

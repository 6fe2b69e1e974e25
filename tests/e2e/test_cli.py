"""The `lockgate` command as a release engineer runs it: a process, its output, its exit code."""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client

from tests.conftest import spec_document
from tests.e2e.processes import ROOT
from tests.helpers.servers import MetricsServer, RouterServer, WebhookServer
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]


async def lockgate(
    *args: str, client: Client | None = None, task_queue: str = "", actor: str = "cli-user"
) -> subprocess.CompletedProcess[str]:
    env = {
        "LOCKGATE_ACTOR": actor,
        "PATH": "/usr/bin:/bin",
        "LOCKGATE_TASK_QUEUE": task_queue,
        "COLUMNS": "200",
    }
    if client is not None:
        env["TEMPORAL_ADDRESS"] = client.service_client.config.target_host
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "cli.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_spec(path: Path, router: RouterServer, metrics: MetricsServer, **bakes: str) -> str:
    """Write a fast test spec with the given stage bakes to `path`; return its target."""
    document = spec_document(router.url, metrics.url)
    for stage in document["spec"]["stages"]:
        stage["min_duration"] = bakes.get(stage["name"], stage["min_duration"])
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    target: str = document["spec"]["target"]
    return target


async def test_validate_reports_every_problem_with_file_and_field_and_exits_2(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.yaml"
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2")
    document["spec"]["stages"][1]["percent"] = 0.5
    document["spec"]["stages"][2]["percent"] = 0.5
    document["spec"]["monitoring"]["typo"] = True
    bad.write_text(yaml.safe_dump(document), encoding="utf-8")

    result = await lockgate("validate", str(bad))
    assert result.returncode == 2
    assert f"{bad}: spec.monitoring.typo: unknown key 'typo'" in result.stderr

    examples = sorted(str(p) for p in (ROOT / "rollout_specs" / "examples").glob("*.yaml"))
    good = await lockgate("validate", *examples)
    assert good.returncode == 0, good.stderr
    assert good.stdout.count("ok ") == len(examples)


async def test_schema_is_json_schema_of_the_spec() -> None:
    result = await lockgate("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert {"apiVersion", "kind", "metadata", "spec"} <= set(schema["properties"])


async def test_submit_status_commands_and_refusals(
    tmp_path: Path,
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
) -> None:
    metrics.set("error_rate", 0.0)
    spec = tmp_path / "spec.yaml"
    target = write_spec(tmp_path / "spec.yaml", router, metrics, shadow="1h")
    run = functools.partial(lockgate, client=client, task_queue=task_queue)

    submitted = await run("submit", str(spec))
    assert submitted.returncode == 0, submitted.stderr
    assert f"rollout-{target}" in submitted.stdout
    again = await run("submit", str(spec))
    assert again.returncode == 1
    assert f"already has a running rollout: workflow rollout-{target}" in again.stderr

    await wait_until(lambda: router.current(target), what="the shadow route")
    paused = await run("pause", target, "--reason", "look", "--as", "bob")
    assert paused.returncode == 0, paused.stderr
    refused = await run("pause", target, "--reason", "again")
    assert refused.returncode == 1
    assert "already paused by bob" in refused.stderr

    status = await run("status", target, "--output", "json")
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)["state"]
    assert state["phase"] == "paused"
    assert [(e["actor"], e["action"]) for e in state["audit"]][-1] == ("bob", "pause")
    assert state["audit"][0]["actor"] == "cli-user"

    table = await run("status", target)
    assert table.returncode == 0
    assert "paused" in table.stdout
    assert "error-rate" in table.stdout

    listed = await run("list", "--target", target)
    assert listed.returncode == 0
    assert f"rollout-{target}" in listed.stdout

    for command in ("resume", "promote"):
        done = await run(command, target, "--reason", "ok", "--as", "bob")
        assert done.returncode == 0, done.stderr
    rolled = await run("rollback", target, "--reason", "enough", "--as", "bob")
    assert rolled.returncode == 0, rolled.stderr
    watched = await run("watch", target, "--interval", "0.5")
    assert watched.returncode == 3, watched.stderr  # rolled back: a CI job gating on it fails
    assert "rollout ended: rolled_back: rolled back to 41 by bob: enough" in watched.stdout


async def test_status_of_an_unknown_target_exits_1(client: Client) -> None:
    result = await lockgate("status", "no-such-target", client=client)
    assert result.returncode == 1
    assert "no rollout of target 'no-such-target' was found" in result.stderr


async def test_a_command_without_a_reason_is_a_usage_error(client: Client) -> None:
    result = await lockgate("pause", "anything", client=client)
    assert result.returncode == 2
    assert "--reason" in result.stderr


async def test_an_approval_a_pause_and_a_webhook_as_a_release_engineer_sees_them(
    tmp_path: Path,
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
) -> None:
    metrics.set("error_rate", 0.0)
    with WebhookServer() as webhook:
        document = spec_document(router.url, metrics.url)
        document["spec"]["stages"][1]["approval"] = {"approvers": ["alice", "bob"]}
        document["spec"]["notify"] = [{"type": "webhook", "url": webhook.url}]
        spec = tmp_path / "spec.yaml"
        spec.write_text(yaml.safe_dump(document), encoding="utf-8")
        target = document["spec"]["target"]
        run = functools.partial(lockgate, client=client, task_queue=task_queue)

        submitted = await run("submit", str(spec), "--as", "alice")
        assert submitted.returncode == 0, submitted.stderr
        await wait_until(
            lambda: "approval_needed" in webhook.events(), what="the approval_needed webhook"
        )
        asked = next(b for b in webhook.received if b["event"] == "approval_needed")
        assert asked["stage"] == "canary"
        assert "1 of alice, bob must approve stage canary" in asked["text"]

        self_approval = await run("approve", target, "--reason", "mine", "--as", "alice")
        assert self_approval.returncode == 1
        assert "four eyes: alice submitted this rollout and cannot approve it" in (
            self_approval.stderr
        )
        paused = await run("pause", target, "--reason", "wait for the on-call", "--as", "bob")
        assert paused.returncode == 0, paused.stderr
        approved = await run("approve", target, "--reason", "numbers look fine", "--as", "bob")
        assert approved.returncode == 0, approved.stderr
        assert "stage canary starts now" in approved.stdout
        # Approved but paused: no traffic moves until the pause is lifted.
        status = json.loads((await run("status", target, "--output", "json")).stdout)["state"]
        assert status["phase"] == "paused"
        assert [r["mode"] for r in router.history] == ["shadow"]

        resumed = await run("resume", target, "--reason", "on-call is here", "--as", "bob")
        assert resumed.returncode == 0, resumed.stderr
        await wait_until(
            lambda: (router.current(target) or {}).get("percent") == 10, what="the canary"
        )
        await wait_until(
            lambda: webhook.events().count("stage_started") >= 2, what="canary stage_started"
        )
        rolled = await run("rollback", target, "--reason", "demo over", "--as", "bob")
        assert rolled.returncode == 0, rolled.stderr
        await wait_until(lambda: "rolled_back" in webhook.events(), what="the rolled_back hook")

    events = webhook.events()
    assert events.index("approval_needed") < events.index("paused") < events.index("rolled_back")
    state = json.loads((await run("status", target, "--output", "json")).stdout)["state"]
    trail = [(e["actor"], e["action"]) for e in state["audit"]]
    for step in [("bob", "pause"), ("bob", "approve"), ("bob", "resume"), ("bob", "rollback")]:
        assert step in trail
    assert ("alice", "approve") not in trail, "a refused command leaves no trace as done"

"""`lockgate review` as a reviewer runs it: a process, its output, its exit code.

The real gateway queues the candidate's proposals; the CLI only talks to Temporal, and the
worker (which holds the router's credentials) reads and judges them at the gateway.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client

from tests.e2e.test_cli import lockgate
from tests.helpers.reviews import (
    ReviewStack,
    decide,
    review_spec_document,
    review_stack,
    route_percent,
)
from tests.helpers.servers import MetricsServer
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]


@pytest.fixture
def stack() -> Iterator[ReviewStack]:
    with review_stack() as running:
        yield running


async def test_list_approve_reject_and_refusals_with_their_exit_codes(
    tmp_path: Path, client: Client, stack: ReviewStack, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    document = review_spec_document(stack, metrics.url)
    document["spec"]["stages"][0]["min_reviews"] = 3  # the canary stays while the test runs
    target = document["spec"]["target"]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(document), encoding="utf-8")
    run = functools.partial(lockgate, client=client, task_queue=task_queue)

    submitted = await run("submit", str(spec), "--no-preflight")
    assert submitted.returncode == 0, submitted.stderr

    async def canary_routed() -> bool:
        return await route_percent(stack.gateway, target) == 50

    await wait_until(canary_routed, what="the canary route at the gateway")
    proposed = await decide(stack.gateway, target, units=30)
    assert len(proposed) >= 3

    table = await run("review", target, "--as", "bob")
    assert table.returncode == 0, table.stderr
    assert f"proposals waiting for review: {target}" in table.stdout
    assert proposed[0] in table.stdout
    assert "refund_full" in table.stdout
    assert "stage canary: 0 of 3 proposals reviewed" in " ".join(table.stdout.split())

    listed = await run("review", target, "--limit", "2", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    document_out = json.loads(listed.stdout)
    assert [p["id"] for p in document_out["pending"]] == proposed[:2]
    assert document_out["min_reviews"] == 3

    approved = await run("review", target, "--approve", proposed[0], "--as", "bob")
    assert approved.returncode == 0, approved.stderr
    assert f"review: approved proposal {proposed[0]}; 1 approved, 0 rejected" in approved.stdout

    again = await run("review", target, "--reject", proposed[0], "-r", "no", "--as", "carol")
    assert again.returncode == 1
    assert "already reviewed: approve by bob" in again.stderr

    silent = await run("review", target, "--reject", proposed[1], "--as", "carol")
    assert silent.returncode == 2
    assert "a rejection needs a reason" in silent.stderr

    rejected = await run(
        "review", target, "--reject", proposed[1], "--reason", "too generous", "--as", "carol"
    )
    assert rejected.returncode == 0, rejected.stderr
    assert "1 approved, 1 rejected; stage canary: 2 of 3 proposals reviewed" in rejected.stdout

    status = await run("status", target)
    assert status.returncode == 0, status.stderr
    assert "1 approved, 1 rejected; stage canary: 2 of 3 proposals reviewed" in status.stdout

    history = await run("history", target, "-o", "json")
    assert history.returncode == 0, history.stderr
    reviews = [e for e in json.loads(history.stdout)["entries"] if e["action"] == "review"]
    assert [(e["actor"], e["reason"].split(":")[0]) for e in reviews] == [
        ("bob", f"approve proposal {proposed[0]}"),
        ("carol", f"reject proposal {proposed[1]}"),
    ]

    rolled = await run("rollback", target, "--reason", "done", "--as", "bob")
    assert rolled.returncode == 0, rolled.stderr
    ended = await run("watch", target, "--interval", "0.5")
    assert ended.returncode == 3, ended.stderr
    late = await run("review", target, "--approve", proposed[2], "--as", "bob")
    assert late.returncode == 1
    assert "is not running" in late.stderr

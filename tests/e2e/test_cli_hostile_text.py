"""Hostile text through the real `lockgate` command: printed as written, never run as markup.

Actors and reasons are whatever a human types (`--as`, `--reason`); messages come back from the
workflow and the server. Rich markup in them (`[/]` crashed the command, `[bold]`/`[link=...]`
restyled it), `$...$` (matplotlib mathtext, which crashed `lockgate report`) and `<script>` must
all reach the operator literally. `lockgate list` must refuse a phase or target that could
rewrite its visibility query, and quote whatever it sends.
"""

from __future__ import annotations

import functools
import html
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from rollout_specs import workflow_id_for
from runtime.listing import rollouts_query
from tests.e2e.test_cli import lockgate, write_spec
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from workflows.state import Phase
from workflows.visibility import PHASE, TARGET

pytestmark = pytest.mark.e2e

ACTOR = "[/]eve [bold]$x^{$"
REASON = "[/] cost $5 to $10 [link=http://example.invalid]click[/link] <script>x</script>"


@pytest.mark.usefixtures("worker")
async def test_actors_and_reasons_are_printed_and_reported_as_written(
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

    submitted = await run("submit", str(spec), "--as", ACTOR)
    assert submitted.returncode == 0, submitted.stderr
    await wait_until(lambda: router.current(target), what="the shadow route")
    paused = await run("pause", target, "--reason", REASON, "--as", ACTOR)
    assert paused.returncode == 0, paused.stderr

    # A refusal quotes the actor and reason back: the error line prints them as written.
    refused = await run("pause", target, "--reason", "again")
    assert refused.returncode == 1
    assert f"error: already paused by {ACTOR} at " in refused.stderr, refused.stderr
    assert f"({REASON})" in refused.stderr
    assert "Traceback" not in refused.stderr

    status = await run("status", target)
    assert status.returncode == 0, status.stderr
    assert ACTOR in status.stdout
    assert REASON in status.stdout

    rolled = await run("rollback", target, "--reason", REASON, "--as", ACTOR)
    assert rolled.returncode == 0, rolled.stderr
    watched = await run("watch", target, "--interval", "0.5")
    assert watched.returncode == 3, watched.stderr  # rolled back
    outcome = f"rolled back to 41 by {ACTOR}: {REASON}"
    assert f"rollout ended: rolled_back: {outcome}" in watched.stdout

    history = await run("history", target)
    assert history.returncode == 0, history.stderr
    assert outcome in history.stdout, "the caption"
    assert REASON in history.stdout

    listed = await run("list", "--target", target, "--phase", "rolled_back")
    assert listed.returncode == 0, listed.stderr
    assert workflow_id_for(target) in listed.stdout

    page_path = tmp_path / "report.html"
    report = await run("report", target, "--out", str(page_path))
    assert report.returncode == 0, report.stderr
    page = page_path.read_text(encoding="utf-8")
    assert f">rollback ({ACTOR})</text>" in page, "the actor, drawn as one literal label"
    assert f"<td>{html.escape(REASON)}</td>" in page
    assert "<script" not in page


async def test_a_target_with_markup_is_named_as_written_when_not_found(client: Client) -> None:
    result = await lockgate("status", "[/]x[bold]", client=client)

    assert result.returncode == 1
    assert "error: no rollout of target '[/]x[bold]' was found" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--phase", "x' OR WorkflowType = 'Rollout", "Invalid value for '--phase'"),
        ("--phase", "Escalated", "Invalid value for '--phase'"),
        ("--target", "x' OR LockgateTarget != 'x", "is not a target"),
        ("--target", "a\\", "is not a target"),
    ],
)
async def test_list_refuses_a_phase_or_target_that_could_rewrite_its_query(
    client: Client, option: str, value: str, message: str
) -> None:
    result = await lockgate("list", option, value, client=client)

    assert result.returncode == 2, result.stdout
    assert message in result.stderr, result.stderr


async def test_the_visibility_server_reads_quoted_values_exactly(client: Client) -> None:
    """Quoted as the server's parser reads it: a quote matches itself and ends no literal."""
    hostile = f"q'uote-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow(
        "Rollout",
        id=f"listing-{uuid.uuid4().hex[:8]}",
        task_queue=f"nobody-polls-{uuid.uuid4().hex[:8]}",
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(TARGET, hostile), SearchAttributePair(PHASE, "escalated")]
        ),
    )
    try:
        exact = rollouts_query(phase=Phase.ESCALATED, target=hostile)

        async def found() -> bool:
            return (await client.count_workflows(exact)).count == 1

        await wait_until(found, what="the workflow in the visibility store")
        # Each would match every rollout (this one included) if it escaped its literal; a
        # backslash before the quote is the classic way out of a quote-only escape.
        for injected in (
            f"{hostile}' OR WorkflowType = 'Rollout",
            "x\\' OR WorkflowType = 'Rollout",
            "x\\",
        ):
            assert (await client.count_workflows(rollouts_query(target=injected))).count == 0
    finally:
        await handle.terminate(reason="test over")

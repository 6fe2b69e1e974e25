"""A command that races the rollout's end is refused in words, never a server traceback.

`lockgate pause`, `review` and the other commands first check that the rollout runs, then send
their update; the rollout can end in between (a rollback lands, a holdback completes). The
server then answers NOT_FOUND "workflow execution already completed", which must reach the
person (and the demo's scripted reviewer) as the refusal it is.
"""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client

from runtime import rollouts
from runtime.rollouts import CommandRefused, submit_rollout
from tests.conftest import build_spec, spec_document
from workflows.commands import PENDING_REVIEWS, Command
from workflows.messages import (
    ControlInput,
    ControlResult,
    PendingReviewsInput,
    PendingReviewsResult,
)


@pytest.mark.parametrize(
    ("name", "payload", "result_type"),
    [
        (Command.PAUSE.value, ControlInput(actor="bob", reason="look"), ControlResult),
        (PENDING_REVIEWS, PendingReviewsInput(actor="bob"), PendingReviewsResult),
    ],
    ids=["pause", "pending-reviews"],
)
async def test_an_update_reaching_an_ended_rollout_is_refused_with_its_status(
    client: Client, name: str, payload: object, result_type: type[object]
) -> None:
    target = f"race-{uuid.uuid4().hex[:8]}"
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2", target=target)
    spec = build_spec(document)
    # No worker polls this queue: the rollout only has to exist, then end.
    handle = await submit_rollout(client, spec, submitted_by="e2e", task_queue="no-worker")
    await handle.terminate(reason="ended before the command arrived")

    with pytest.raises(CommandRefused, match=f"the rollout of '{target}' ended .*terminated"):
        await rollouts._update(client, target, name, payload, result_type)

"""A target without a rollout is told apart by the server's NOT_FOUND status, not its wording."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from runtime.rollouts import (
    Command,
    RolloutNotFound,
    describe_rollout,
    query_status,
    send_command,
)

MISSING = "no rollout of target 'no-such-target' was found"


async def test_describe_query_and_commands_name_the_missing_target(client: Client) -> None:
    with pytest.raises(RolloutNotFound, match=MISSING):
        await describe_rollout(client, "no-such-target")
    with pytest.raises(RolloutNotFound, match=MISSING):
        await query_status(client, "no-such-target")  # no worker needed to learn it is missing
    with pytest.raises(RolloutNotFound, match=MISSING):
        await send_command(client, "no-such-target", Command.PAUSE, actor="bob", reason="look")


async def test_an_unknown_command_is_refused_before_any_call(client: Client) -> None:
    with pytest.raises(ValueError, match="unknown command 'freeze'; use one of approve, pause"):
        await send_command(client, "no-such-target", "freeze", actor="bob", reason="look")

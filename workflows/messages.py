"""Inputs and results of the workflow, its updates and its query."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from rollout_specs import RolloutSpec
from workflows.state import Phase, RolloutState

__all__ = [
    "AbandonInput",
    "ControlInput",
    "ControlResult",
    "RolloutInput",
    "RolloutResult",
    "StatusResult",
]


class Message(BaseModel):
    """Base of messages: strict on unknown fields."""

    model_config = ConfigDict(extra="forbid")


class RolloutInput(Message):
    """Start (or continue) a rollout. `state` is set only by continue-as-new."""

    spec: RolloutSpec
    submitted_by: str
    state: RolloutState | None = None


class ControlInput(Message):
    """A human command. Both fields are required and go to the audit trail."""

    actor: str
    reason: str


class AbandonInput(ControlInput):
    """`lockgate abandon`: end a stuck rollout. `force` ends one that is not stuck too.

    A separate message from ControlInput because ending a rollout without landing its route is
    a last resort: the flag that overrides the stuck-only rule must be asked for explicitly.
    """

    force: bool = False


class ControlResult(Message):
    """What a command did."""

    message: str
    phase: Phase


class StatusResult(Message):
    """The `status` query: the spec being rolled out and the whole state."""

    spec: RolloutSpec
    state: RolloutState


class RolloutResult(Message):
    """How the rollout ended."""

    phase: Phase
    outcome: str

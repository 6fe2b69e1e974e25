"""Reading a rollout's history the way the Temporal server stores it: which events are checks."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from activities.contracts import RUN_CHECKS
from runtime.history import LOCAL_ACTIVITY_MARKER


def check_kind(event: HistoryEvent) -> str | None:
    """`quick` (`quick-failed`) for a check run in its workflow task, `activity` for one run as
    an activity, None for any other event."""
    if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
        attributes = event.marker_recorded_event_attributes
        if attributes.marker_name == LOCAL_ACTIVITY_MARKER:
            return "quick-failed" if attributes.HasField("failure") else "quick"
    scheduled = event.activity_task_scheduled_event_attributes
    if (
        event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and scheduled.activity_type.name == RUN_CHECKS
    ):
        return "activity"
    return None

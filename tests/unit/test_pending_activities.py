"""Why a rollout is stuck, read from hand-built descriptions: the pending activities' errors."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from temporalio.api.common.v1 import ActivityType
from temporalio.api.enums.v1 import PendingActivityState, TimeoutType
from temporalio.api.failure.v1 import (
    ActivityFailureInfo,
    ApplicationFailureInfo,
    Failure,
    ServerFailureInfo,
    TimeoutFailureInfo,
)
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionResponse
from temporalio.client import WorkflowExecutionDescription
from temporalio.converter import DataConverter

from cli import render_pending
from runtime.rollouts import PendingActivity, failure_text, pending_activities, pending_activity

FAILED_AT = datetime(2026, 11, 30, 16, 20, 8, 500000, tzinfo=UTC)
NEXT_AT = datetime(2026, 11, 30, 16, 20, 12, tzinfo=UTC)
URL = "http://127.0.0.1:1/v1/targets/ranker/route"
ROUTER_MESSAGE = (
    f"router at {URL} could not be reached (1 attempt, ConnectError: All connection attempts "
    "failed); check router.url and that the router is up"
)


def _app(message: str, kind: str, cause: Failure | None = None) -> Failure:
    failure = Failure(
        message=message,
        stack_trace='  File "activities/routing.py", line 41, in apply_route\n',
        application_failure_info=ApplicationFailureInfo(type=kind),
    )
    if cause is not None:
        failure.cause.CopyFrom(cause)
    return failure


def _router_failure_as_the_server_keeps_it() -> Failure:
    """The shape a dev server returned for a refused rollback (tests/e2e/test_status_stuck.py).

    The activity's ApplicationError chain (RouterUnavailable from RouterUnavailable from
    Unreachable from httpx's ConnectError) outgrew the size a pending activity's last failure
    may have, so the server wrapped its trimmed copy in a server failure of its own.
    """
    connect = _app("All connection attempts failed", "ConnectError")
    unreachable = _app(
        "could not be reached (1 attempt, ConnectError: All connection attempts failed)",
        "Unreachable",
        connect,
    )
    inner = _app(ROUTER_MESSAGE, "RouterUnavailable", unreachable)
    outer = _app(ROUTER_MESSAGE, "RouterUnavailable", inner)
    wrapper = Failure(
        message="Failure exceeds size limit.",
        server_failure_info=ServerFailureInfo(non_retryable=False),
    )
    wrapper.cause.CopyFrom(outer)
    return wrapper


def _stamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def _stuck_route() -> PendingActivityInfo:
    return PendingActivityInfo(
        activity_id="2",
        activity_type=ActivityType(name="apply_route"),
        state=PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED,
        attempt=7,
        maximum_attempts=0,
        last_failure=_router_failure_as_the_server_keeps_it(),
        last_attempt_complete_time=_stamp(FAILED_AT),
        next_attempt_schedule_time=_stamp(NEXT_AT),
    )


def _running_check() -> PendingActivityInfo:
    return PendingActivityInfo(
        activity_id="5",
        activity_type=ActivityType(name="run_checks"),
        state=PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
        attempt=1,
        maximum_attempts=2,
    )


def test_a_refused_rollback_shows_the_router_error_not_the_servers_size_note() -> None:
    activity = pending_activity(_stuck_route())

    assert activity == PendingActivity(
        activity_id="2",
        activity="apply_route",
        attempt=7,
        maximum_attempts=None,
        state="scheduled",
        last_error=f"RouterUnavailable: {ROUTER_MESSAGE}",
        last_failed_at=FAILED_AT,
        next_attempt_at=NEXT_AT,
    )
    assert activity.retrying


def test_an_activity_running_its_first_attempt_has_no_error_and_is_not_retrying() -> None:
    activity = pending_activity(_running_check())

    assert activity.state == "started"
    assert activity.maximum_attempts == 2
    assert activity.last_error is None
    assert activity.last_failed_at is None
    assert activity.next_attempt_at is None
    assert not activity.retrying


def test_a_state_newer_than_the_sdk_knows_is_shown_by_number() -> None:
    info = _running_check()
    info.state = 42  # type: ignore[assignment]

    assert pending_activity(info).state == "state 42"


async def test_pending_activities_reads_every_one_from_the_raw_description_in_order() -> None:
    raw = DescribeWorkflowExecutionResponse(pending_activities=[_stuck_route(), _running_check()])
    # The SDK builds descriptions from a response like this one; there is no public constructor.
    description = await WorkflowExecutionDescription._from_raw_description(
        raw, namespace="default", converter=DataConverter.default
    )

    assert [(a.activity, a.attempt) for a in pending_activities(description)] == [
        ("apply_route", 7),
        ("run_checks", 1),
    ]
    empty = await WorkflowExecutionDescription._from_raw_description(
        DescribeWorkflowExecutionResponse(), namespace="default", converter=DataConverter.default
    )
    assert pending_activities(empty) == []


def test_failure_text_skips_a_wrapper_and_appends_a_root_cause_it_does_not_quote() -> None:
    wrapper = Failure(message="Activity task failed", activity_failure_info=ActivityFailureInfo())
    wrapper.cause.CopyFrom(
        _app("route body rejected", "RouterError", _app("'percent'", "KeyError"))
    )

    assert (
        failure_text(wrapper) == "RouterError: route body rejected (caused by KeyError: 'percent')"
    )


def test_failure_text_of_a_timeout_is_its_message_and_of_an_empty_failure_says_so() -> None:
    timeout = Failure(
        message="activity StartToClose timeout",
        timeout_failure_info=TimeoutFailureInfo(
            timeout_type=TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE
        ),
    )

    assert failure_text(timeout) == "activity StartToClose timeout"
    assert failure_text(Failure()) == "(no message)"


def test_a_deep_chain_is_walked_to_a_bound() -> None:
    failure = _app("level 0", "Deep")
    for level in range(1, 200):
        failure = _app(f"level {level}", "Deep", failure)

    assert failure_text(failure).startswith("Deep: level 199 (caused by Deep: level ")


def _render(pending: list[PendingActivity]) -> str:
    table = render_pending(pending)
    assert table is not None
    console = Console(width=300, record=True, file=None, force_terminal=False)
    with console.capture() as captured:
        console.print(table)
    return captured.get()


def test_the_in_flight_table_lists_only_retrying_activities_and_prints_markup_literally() -> None:
    hostile = pending_activity(_stuck_route()).model_copy(
        update={"last_error": "RouterError: bad [/] body [bold]x[/bold] [link=http://a]y"}
    )
    limited = pending_activity(_running_check()).model_copy(
        update={"attempt": 2, "last_error": "ProviderUnavailable: 503"}
    )

    text = _render([hostile, pending_activity(_running_check()), limited])

    assert "in flight" in text
    assert "RouterError: bad [/] body [bold]x[/bold] [link=http://a]y" in text
    assert "7 (no limit)" in text
    assert "2/2" in text
    assert "16:20:12" in text, "the next attempt's time"
    assert text.count("run_checks") == 1, "the first attempt of a check is not listed"
    assert render_pending([pending_activity(_running_check())]) is None
    assert render_pending([]) is None

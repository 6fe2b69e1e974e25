"""The times activities report for decisions follow the server's stamp of the attempt's start."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from temporalio.testing import ActivityEnvironment

from activities.server_clock import AttemptClock


def _now_in(started: datetime) -> datetime:
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(environment.info, started_time=started)
    clock = AttemptClock()
    return environment.run(clock.now)


def test_the_time_is_the_servers_start_plus_the_attempts_run() -> None:
    # A time-skipping server stamps an attempt a day ahead of the wall clock: the bake follows it.
    started = datetime.now(UTC) + timedelta(days=1)
    now = _now_in(started)
    assert started <= now < started + timedelta(seconds=5)


def test_an_unset_start_falls_back_to_the_wall_clock() -> None:
    before = datetime.now(UTC)
    now = _now_in(datetime.fromtimestamp(0, UTC))
    assert before <= now <= datetime.now(UTC)


def test_outside_an_activity_it_is_the_wall_clock() -> None:
    before = datetime.now(UTC)
    assert before <= AttemptClock().now() <= datetime.now(UTC)


def test_a_local_activity_counts_from_the_workflow_time_it_was_scheduled_at() -> None:
    # A local activity's start is the worker's wall clock, which a time-skipping server does not
    # move; the workflow's time (a day ahead here) is what the check's end must follow.
    scheduled = datetime.now(UTC) + timedelta(days=1)
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(
        environment.info, is_local=True, started_time=datetime.now(UTC)
    )
    now = environment.run(AttemptClock(scheduled).now)
    assert scheduled <= now < scheduled + timedelta(seconds=5)


def test_an_activity_ignores_a_scheduled_time_and_keeps_the_servers_stamp() -> None:
    started = datetime.now(UTC) + timedelta(days=1)
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(environment.info, started_time=started)
    now = environment.run(AttemptClock(datetime.now(UTC) - timedelta(days=3)).now)
    assert started <= now < started + timedelta(seconds=5)

"""The backtest's pure parts: the replayed stages, windows and decisions over a fake monitoring.

The fake answers each query as of the instant the backtest asks for, so these tests pin down
when each check runs, what it reads, and which of the workflow's decisions it leads to.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from activities.errors import NoDataError
from activities.providers.base import MetricProvider, Sample
from activities.providers.prometheus import PrometheusProvider
from cli import app, render_backtest
from rollout_specs import PrometheusMonitoring, Stage
from runtime.backtest import (
    Backtest,
    BacktestError,
    BacktestRefused,
    Ending,
    backtest,
    parse_instant,
    prometheus_at,
    replay_check,
    timeline,
)
from runtime.outcomes import ExitCode
from tests.conftest import build_spec, spec_document
from tests.helpers.scripted import NO_WAIT, Scripted
from workflows.progression import Action

T1 = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)


def _spec(**changes: Any) -> Any:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2", target="ranker")
    for stage in document["spec"]["stages"]:
        stage["min_duration"] = "3s"
    document["spec"].update(changes)
    return build_spec(document)


class Recorded:
    """Monitoring's records: the error rate as a function of the instant, None for no data."""

    def __init__(self, error_rate: Any) -> None:
        self.error_rate = error_rate
        self.asked: list[tuple[datetime, str]] = []

    def at(self, moment: datetime) -> MetricProvider:
        return _AsOf(self, moment)


class _AsOf:
    def __init__(self, records: Recorded, moment: datetime) -> None:
        self.records, self.moment = records, moment

    async def query(self, query: str) -> Sample:
        self.records.asked.append((self.moment, query))
        value = self.records.error_rate(self.moment - T1)
        if value is None:
            raise NoDataError("nothing recorded")
        return Sample(value=value)

    async def query_by(self, query: str, label: str) -> dict[str, float]:
        raise NoDataError("not recorded")

    async def query_pairs(
        self, query: str, first: str, second: str
    ) -> dict[tuple[str, str], float]:
        raise NoDataError("not recorded")


def _incident(after: float) -> Any:
    return lambda since: 0.2 if since.total_seconds() > after else 0.01


async def _run(records: Recorded, end: float = 60.0, **changes: Any) -> Backtest:
    spec = _spec(**changes)
    return await backtest(spec, records.at, T1, T1 + timedelta(seconds=end))


async def test_an_incident_rolls_back_at_the_first_check_after_it_in_the_stage_then_running() -> (
    None
):
    records = Recorded(_incident(after=5.5))

    result = await _run(records)

    # shadow checks at +1, +2, +3 (advances: min_duration 3s); canary at +4, +5, +6 (trips)
    assert [(c.stage, c.number, c.action) for c in result.checks] == [
        ("shadow", 1, Action.BAKE),
        ("shadow", 2, Action.BAKE),
        ("shadow", 3, Action.ADVANCE),
        ("canary", 1, Action.BAKE),
        ("canary", 2, Action.BAKE),
        ("canary", 3, Action.ROLLBACK),
    ]
    assert result.ending is Ending.ROLLED_BACK
    assert result.exit_code is ExitCode.ROLLED_BACK
    assert result.tripped == "error-rate"
    assert result.decided_at == T1 + timedelta(seconds=6)
    assert "rollback by trigger error-rate at 2026-11-30T22:00:06Z" in result.decision
    assert [(s.name, s.outcome, s.checks) for s in result.stages] == [
        ("shadow", "advanced", 3),
        ("canary", "rolled_back", 3),
        ("half", "not_reached", 0),
        ("full", "not_reached", 0),
    ]
    assert result.stages[1].started_at == T1 + timedelta(seconds=3)
    # each check read monitoring as of its own instant, and nothing after the rollback
    assert [moment - T1 for moment, _ in records.asked] == [
        timedelta(seconds=s) for s in range(1, 7)
    ]


async def test_passing_checks_promote_at_the_last_stages_gate() -> None:
    result = await _run(Recorded(lambda since: 0.0))

    assert result.ending is Ending.COMPLETED
    assert result.exit_code is ExitCode.COMPLETED
    assert result.decided_at == T1 + timedelta(seconds=12)
    assert [s.outcome for s in result.stages] == ["advanced"] * 4
    assert "promotion at 2026-11-30T22:00:12Z" in result.decision


async def test_no_data_holds_then_escalates_and_the_window_ends_with_a_human_needed() -> None:
    result = await _run(Recorded(lambda since: None), end=4.5)

    assert [c.action for c in result.checks] == [
        Action.HOLD,
        Action.HOLD,
        Action.ESCALATE,  # missing_data_limit 3
        Action.ESCALATE,
    ]
    assert result.ending is Ending.ESCALATED
    assert result.exit_code is ExitCode.NEEDS_HUMAN
    assert result.decided_at is None
    assert result.stages[0].outcome == "running"


async def test_a_window_ending_while_baking_is_no_rollback_and_exits_0() -> None:
    result = await _run(Recorded(lambda since: 0.0), end=2.5)

    assert result.ending is Ending.RUNNING
    assert result.exit_code is ExitCode.COMPLETED
    assert "no rollback by 2026-11-30T22:00:02Z" in result.decision


async def test_a_window_shorter_than_a_check_interval_judges_nothing() -> None:
    result = await _run(Recorded(lambda since: 0.0), end=0.5)

    assert result.checks == []
    assert result.ending is Ending.RUNNING
    assert "no check fell in the window" in result.decision


async def test_windows_grow_from_the_stage_and_rollout_starts_as_the_workflow_renders_them() -> (
    None
):
    spec = _spec()
    stage = spec.spec.stages[1]

    def variables(stage: Stage, at: float, stage_start: float) -> dict[str, str]:
        check = replay_check(
            spec, stage, T1 + timedelta(seconds=at), T1 + timedelta(seconds=stage_start), T1
        )
        return check.variables

    late = variables(stage, 4.4, 3)
    early = variables(stage, 3.2, 3)

    assert late["stage_window"] == "1s"
    assert late["rollout_window"] == "4s"
    assert late["percent"] == "10"
    assert early["stage_window"] == "1s"  # never shorter than a check_interval
    shadow = variables(spec.spec.stages[0], 2, 0)
    assert shadow["percent"] == "0"


async def test_offline_stages_are_skipped_and_review_triggers_said_not_replayable() -> None:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2", target="ranker")
    body = document["spec"]
    body["candidate"]["uri"] = "http://127.0.0.1:3"
    body["stages"].insert(
        0, {"name": "offline", "offline_eval": {"log": "log.parquet", "max_regression": 0.03}}
    )
    body["guardrails"]["review"] = {"actions": ["refund_full"]}
    body["rollback_triggers"].append({"name": "rejections", "review": {"max_reject_share": 0.2}})
    spec = build_spec(document)

    result = await backtest(spec, Recorded(lambda since: 0.0).at, T1, T1 + timedelta(seconds=2))

    assert result.stages[0].outcome == "skipped"
    assert result.checks[0].stage == "shadow"
    assert result.checks[0].at == T1 + timedelta(seconds=1)
    assert [v.trigger for v in result.checks[0].result.verdicts] == ["error-rate"]
    assert any("offline" in note and "skipped" in note for note in result.notes)
    assert any("rejections" in note and "not replayable" in note for note in result.notes)


async def test_the_model_may_start_at_a_later_stage() -> None:
    spec = _spec()

    result = await backtest(
        spec, Recorded(_incident(after=1.5)).at, T1, T1 + timedelta(seconds=9), first_stage="half"
    )

    assert [(c.stage, c.number) for c in result.checks] == [("half", 1), ("half", 2)]
    assert result.tripped == "error-rate"
    outcomes = [s.outcome for s in result.stages]
    assert outcomes == ["not_reached", "not_reached", "rolled_back", "not_reached"]
    with pytest.raises(BacktestError, match="no stage 'nope'"):
        await backtest(
            spec, Recorded(lambda since: 0.0).at, T1, T1 + timedelta(1), first_stage="nope"
        )


async def test_an_empty_or_huge_window_is_refused() -> None:
    spec = _spec()
    with pytest.raises(BacktestError, match="empty"):
        await backtest(spec, Recorded(lambda since: 0.0).at, T1, T1)
    with pytest.raises(BacktestError, match="more than"):
        await backtest(spec, Recorded(lambda since: 0.0).at, T1, T1 + timedelta(days=30))


async def test_monitoring_that_cannot_look_back_is_refused() -> None:
    spec = _spec(monitoring={"type": "http", "url": "http://127.0.0.1:2/v1/stats"})
    async with httpx.AsyncClient() as client:
        with pytest.raises(BacktestRefused, match="http monitoring backend answers only for now"):
            prometheus_at(spec, client)


async def test_prometheus_evaluates_at_the_instant_asked_and_otherwise_now() -> None:
    prometheus = Scripted()
    prometheus.script(
        httpx.Response(
            200,
            json={
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.5"]}]},
            },
        )
    )
    config = PrometheusMonitoring(type="prometheus", url="http://prometheus.test:9090")
    async with httpx.AsyncClient(transport=httpx.MockTransport(prometheus)) as client:
        provider = PrometheusProvider(config, client, read_retries=NO_WAIT)
        assert (await provider.at(T1 + timedelta(milliseconds=250)).query("up")).value == 0.5
        await provider.query("up")
        with pytest.raises(ValueError, match="no timezone"):
            provider.at(datetime(2026, 11, 30, 22))  # noqa: DTZ001

    timed, now = prometheus.requests
    assert timed.url.params["time"] == f"{T1.timestamp() + 0.25:.3f}"
    assert timed.url.params["query"] == "up"
    assert "time" not in now.url.params


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", T1),
        ("NOW", T1),
        ("-2h", T1 - timedelta(hours=2)),
        ("-1h30m", T1 - timedelta(minutes=90)),
        ("2026-11-30T21:00:00Z", T1 - timedelta(hours=1)),
        ("2026-11-30T23:00:00+02:00", T1 - timedelta(hours=1)),
    ],
)
def test_times_are_rfc_3339_now_or_a_duration_ago(text: str, expected: datetime) -> None:
    assert parse_instant(text, T1) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2026-11-30T21:00:00", "no timezone"),
        ("yesterday", "not a time"),
        ("-2 fortnights", "duration ago"),
    ],
)
def test_a_bad_time_says_how_to_write_one(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_instant(text, T1)


async def test_the_timeline_folds_alike_checks_and_keeps_the_decisive_ones_apart() -> None:
    result = await _run(Recorded(_incident(after=5.5)))

    rows = [(r.last.stage, r.first.number, r.last.number, r.last.action) for r in timeline(result)]

    assert rows == [
        ("shadow", 1, 2, Action.BAKE),
        ("shadow", 3, 3, Action.ADVANCE),
        ("canary", 1, 2, Action.BAKE),
        ("canary", 3, 3, Action.ROLLBACK),
    ]
    assert timeline(result)[-1].verdicts == "error-rate fail"


async def test_the_command_prints_the_timeline_and_exits_with_the_outcomes_code() -> None:
    result = await _run(Recorded(_incident(after=5.5)))
    console = Console(width=200, record=True)

    console.print(render_backtest(result))

    text = console.export_text()
    assert "rollback by trigger error-rate at 2026-11-30T22:00:06Z" in text
    assert "(exit 3)" in text
    assert "22:00:04-22:00:05" in text  # canary checks 1-2, folded


def test_the_command_refuses_monitoring_without_history_and_bad_times() -> None:
    runner = CliRunner()
    spec = "rollout_specs/examples/demo-http-monitoring.yaml"

    refused = runner.invoke(app, ["backtest", spec, "--from", "-1h"])
    bad_time = runner.invoke(app, ["backtest", spec, "--from", "yesterday"])

    assert refused.exit_code == 2
    assert "answers only for now" in refused.output
    assert bad_time.exit_code == 2
    assert "not a time" in bad_time.output

"""`lockgate plan`: the predicted time to evidence, checked against a simulation, and its warnings.

The simulation runs the compare trigger's own statistic (plug-in variance, burn-in, the
one-sided boundary at the tuned rho) on a simple normal world at every check, vectorised over
replications, and cross-checks sampled looks against `compare_means` itself; the plan's median
must be within 25% of the simulated median detection time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from rich.console import Console
from scipy import stats  # type: ignore[import-untyped]
from typer.testing import CliRunner

import cli
import runtime.preflight
from analysis.plan import (
    MetricModel,
    Question,
    crossing_probability,
    decision_time,
    interpolated_median,
)
from analysis.sequential import ArmStats, compare_means, one_sided_bound, tuned_rho
from analysis.verdicts import Outcome
from rollout_specs import RolloutSpec, load_spec, parse_spec
from runtime.plan import (
    MonitoringUnanswered,
    PlanInputError,
    build_plan,
    parse_metric_options,
    parse_scope_shares,
    plan_document,
    plan_spec,
)

DEMO = Path(__file__).resolve().parents[2] / "rollout_specs" / "examples" / "demo.yaml"
SEED = 20261201


def simulated_median(
    question: Question,
    sd: float,
    *,
    traffic: float,
    share: float,
    interval: float,
    checks: int,
    reps: int,
    rng: np.random.Generator,
) -> float:
    """Median seconds until the compare trigger decides, on normal(0 / improvement, sd) arms."""
    per_check = round(traffic * interval)
    k_c = round(per_check * share)
    k_i = per_check - k_c
    rho = tuned_rho(question.expected_n, question.alpha)
    sums = np.zeros((4, reps))  # incumbent sum, squares; candidate sum, squares
    found = np.full(reps, np.inf)
    streak = np.zeros(reps)
    for check in range(1, checks + 1):
        for arm, (k, mean) in enumerate(((k_i, 0.0), (k_c, question.improvement))):
            total = k * mean + math.sqrt(k) * sd * rng.standard_normal(reps)
            sums[2 * arm] += total
            sums[2 * arm + 1] += sd * sd * rng.chisquare(k - 1, reps) + total * total / k
        n_i, n_c = check * k_i, check * k_c
        if min(n_i, n_c) < question.burn_in:
            continue
        var_i = (sums[1] - sums[0] ** 2 / n_i) / (n_i - 1)
        var_c = (sums[3] - sums[2] ** 2 / n_c) / (n_c - 1)
        t = n_i + n_c
        estimate = sums[2] / n_c - sums[0] / n_i
        statistic = (
            -(estimate + question.margin) * math.sqrt(t) / np.sqrt(var_i / n_i + var_c / n_c)
        )
        bound = one_sided_bound(float(t), rho, question.alpha)
        if question.direction == "pass":
            decided = -statistic >= bound
        else:
            streak = np.where(statistic >= bound, streak + 1, 0)
            decided = streak >= question.failure_limit
        found[np.isinf(found) & decided] = check * interval
        if check % 7 == 0:  # the simulated statistic is compare_means's own
            row = int(rng.integers(reps))
            verdict = compare_means(
                ArmStats(n_i, float(sums[0, row]), float(sums[1, row])),
                ArmStats(n_c, float(sums[2, row]), float(sums[3, row])),
                max_drop=question.margin, relative=False, alpha=question.alpha,
                expected_n=question.expected_n,
            )  # fmt: skip
            expected = (
                Outcome.FAIL
                if statistic[row] >= bound
                else Outcome.PASS
                if -statistic[row] >= bound
                else Outcome.INCONCLUSIVE
            )
            assert verdict.verdict is expected
    assert np.isfinite(found).mean() > 0.6, "simulate longer: too few replications decided"
    cdf = [float((found <= k * interval).mean()) for k in range(1, checks + 1)]
    median = interpolated_median(cdf)
    assert median is not None
    return median * interval


CASES = [
    ("equal, 50/50", Question("pass", 0.05, 0.0, 0.05, 10_000), 200.0, 0.5, 5.0),
    ("drop 2x, 50/50", Question("fail", 0.05, -0.1, 0.025, 10_000), 200.0, 0.5, 5.0),
    ("equal, 10% canary", Question("pass", 0.05, 0.0, 0.05, 10_000), 200.0, 0.1, 5.0),
    (
        "drop 2x, 10%, failure_limit 3",
        Question("fail", 0.05, -0.1, 0.025, 10_000, failure_limit=3),
        200.0,
        0.1,
        5.0,
    ),
    ("equal, 1%, expected_n 1e6", Question("pass", 0.1, 0.0, 0.05, 10**6), 200.0, 0.01, 30.0),
    ("drop 2x, sparse checks", Question("fail", 0.02, -0.04, 0.025, 10_000), 1000.0, 0.5, 60.0),
]


@pytest.mark.parametrize(
    ("question", "traffic", "share", "interval"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_predicted_median_is_within_25_percent_of_the_simulated_one(
    question: Question, traffic: float, share: float, interval: float
) -> None:
    rng = np.random.default_rng(SEED)
    predicted = decision_time(
        MetricModel(sd=1.0), question, traffic=traffic, candidate_share=share,
        check_interval=interval,
    )  # fmt: skip
    assert predicted.seconds is not None
    assert predicted.checks is not None
    simulated = simulated_median(
        question, 1.0, traffic=traffic, share=share, interval=interval,
        checks=4 * math.ceil(predicted.checks) + 4, reps=1500, rng=rng,
    )  # fmt: skip
    assert 0.75 <= predicted.seconds / simulated <= 1.25, (predicted, simulated)


def test_a_flat_boundary_gives_the_inverse_gaussian_first_passage() -> None:
    """The tangent-line formula is exact for a straight boundary (here a constant one)."""
    drift, level = 0.3, 4.0
    for t in (5.0, 13.3, 40.0):
        exact = stats.invgauss.cdf(t, mu=(level / drift) / level**2, scale=level**2)
        assert crossing_probability(t, drift, level, 0.0) == pytest.approx(exact, rel=1e-9)


def test_more_traffic_or_a_wider_margin_decides_sooner() -> None:
    def seconds(traffic: float, margin: float) -> float:
        found = decision_time(
            MetricModel(sd=1.0), Question("pass", margin, 0.0, 0.05, 10_000),
            traffic=traffic, candidate_share=0.1, check_interval=30.0,
        ).seconds  # fmt: skip
        assert found is not None
        return found

    assert seconds(50.0, 0.05) < seconds(10.0, 0.05)
    assert seconds(10.0, 0.1) < seconds(10.0, 0.05)


def test_no_decision_when_the_truth_sits_on_the_wrong_side_or_past_the_horizon() -> None:
    model = MetricModel(sd=1.0)
    at_margin = decision_time(
        model, Question("fail", 0.05, -0.05, 0.05, 10_000), traffic=100.0, candidate_share=0.5,
        check_interval=5.0,
    )  # fmt: skip
    assert at_margin.seconds is None
    assert at_margin.why_never is not None
    assert "within the margin" in at_margin.why_never
    slow = decision_time(
        model, Question("pass", 0.001, 0.0, 0.05, 10_000), traffic=0.01, candidate_share=0.01,
        check_interval=60.0,
    )  # fmt: skip
    assert slow.seconds is None
    assert slow.why_never is not None
    assert "not within 90 days" in slow.why_never


def test_the_burn_in_and_a_rare_rate_set_the_earliest_verdict() -> None:
    decided = decision_time(
        MetricModel(sd=1.0), Question("pass", 1.0, 0.0, 0.05, 10_000), traffic=10.0,
        candidate_share=0.1, check_interval=1.0,
    )  # fmt: skip
    assert decided.earliest_seconds == 100.0  # 100 candidate observations at 1 a second
    assert decided.seconds == 100.0
    rare = decision_time(
        MetricModel.rate(0.001), Question("pass", 0.01, 0.0, 0.05, 10_000, False),
        traffic=1000.0, candidate_share=0.5, check_interval=1.0,
    )  # fmt: skip
    # 5 expected events at the margin rate 0.011 in the candidate arm: 455 observations.
    assert rare.earliest_seconds == 1.0
    errors = decision_time(
        MetricModel.rate(0.001), Question("pass", 0.002, 0.0, 0.05, 10_000, False),
        traffic=100.0, candidate_share=0.5, check_interval=1.0,
    )  # fmt: skip
    assert errors.earliest_seconds >= 5.0 / 0.003 / 50.0


# ----------------------------------------------------------------------------- the spec


def _spec(**changes: Any) -> RolloutSpec:
    """The demo spec with top-level body keys replaced."""
    import yaml

    document = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    document["spec"].update(changes)
    return parse_spec(document)


def _reward(rate: float = 0.5291) -> dict[str, tuple[MetricModel, str]]:
    return parse_metric_options([], [f"reward={rate}"], [])


def test_the_demo_plan_covers_every_stage_with_the_rollouts_own_alphas() -> None:
    plan = plan_spec(
        load_spec(DEMO), 200.0, _reward(), parse_scope_shares(["region=eu-west-1:0.45"])
    )
    stages = {stage.name: stage for stage in plan.stages}
    assert list(stages) == ["offline", "shadow", "canary", "eu-west-25", "half", "full"]
    canary = stages["canary"]
    assert canary.candidate_rate == pytest.approx(20.0)
    assert canary.incumbent_rate == pytest.approx(180.0)
    assert [(row.source, row.question) for row in canary.evidence] == [
        ("reward-regression", "non-inferior"),
        ("reward-regression", "catch"),
    ]
    assert stages["eu-west-25"].candidate_rate == pytest.approx(200 * 0.45 * 0.25)
    half = stages["half"]
    assert next(row.source for row in half.evidence) == "advance_when"
    assert half.evidence[0].alpha == 0.05
    assert half.evidence[0].margin == 0.03
    assert half.advance_seconds == max(row.seconds or 0.0 for row in half.evidence[:2])
    assert stages["full"].evidence == []
    assert stages["full"].advance_seconds == 30.0
    assert plan.total_seconds == sum(
        s.advance_seconds or 0.0 for s in plan.stages if s.mode != "offline"
    )
    document = plan_document(plan)
    assert json.loads(json.dumps(document))["stages"][2]["evidence"][0]["seconds"] > 0


def test_a_scoped_stage_without_its_share_is_unknown_and_says_how_to_give_it() -> None:
    plan = plan_spec(load_spec(DEMO), 200.0, _reward())
    scoped = next(stage for stage in plan.stages if stage.name == "eu-west-25")
    assert scoped.advance_seconds is None
    assert plan.total_seconds is None
    assert any("--scope-share region=eu-west-1:SHARE" in w for w in scoped.warnings)
    by_stage = plan_spec(load_spec(DEMO), 200.0, _reward(), {"eu-west-25": 0.45})
    assert next(s for s in by_stage.stages if s.name == "eu-west-25").advance_seconds


def test_warnings_for_a_short_bake_a_gate_never_earned_and_a_max_duration_too_short() -> None:
    stages = [
        {"name": "canary", "percent": 1, "min_duration": "1m", "max_duration": "10m"},
        {"name": "tiny", "percent": 2, "min_duration": "1m",
         "advance_when": {"non_inferior": "reward", "margin": 0.0001}},
        {"name": "full", "percent": 100, "min_duration": "1m",
         "advance_when": {"non_inferior": "reward", "margin": 0.03}},
    ]  # fmt: skip
    plan = plan_spec(_spec(stages=stages), 1.0, _reward())
    canary, tiny, full = plan.stages
    assert any("min_duration 1m is shorter than" in w for w in canary.warnings)
    assert any("max_duration 10m comes before the evidence" in w for w in canary.warnings)
    assert any("could never earn its gate" in w for w in tiny.warnings)
    assert tiny.advance_seconds is None
    assert any("advance_when at 100% with no scope can never be shown" in w for w in full.warnings)


def test_a_compare_trigger_judging_a_shadow_stage_is_warned_about() -> None:
    triggers = [
        {"name": "errors", "query": "up", "threshold": {"above": 1}},
        {"name": "reward-regression", "compare": {"metric": "reward", "max_drop": 0.05},
         "modes": ["shadow", "split"]},
    ]  # fmt: skip
    plan = plan_spec(_spec(rollback_triggers=triggers), 200.0, _reward(), {"eu-west-25": 0.45})
    shadow = next(stage for stage in plan.stages if stage.name == "shadow")
    assert shadow.advance_seconds is None
    assert any("candidate serves nothing" in w for w in shadow.warnings)


def test_relative_margins_need_the_mean_and_missing_noise_is_named() -> None:
    triggers = [
        {"name": "errors", "query": "up", "threshold": {"above": 1}},
        {"name": "rel", "compare": {"metric": "reward", "max_drop": 0.1, "relative": True}},
    ]
    spec = _spec(rollback_triggers=triggers)
    no_mean = plan_spec(
        spec, 200.0, parse_metric_options(["reward=0.5"], [], []), {"eu-west-25": 1}
    )
    row = no_mean.stages[2].evidence[1]
    assert row.seconds is None
    assert "--mean reward=MEAN" in row.note
    with_mean = plan_spec(
        spec, 200.0, parse_metric_options(["reward=0.5"], [], ["reward=0.5"]), {"eu-west-25": 1}
    )
    assert with_mean.stages[2].evidence[1].margin == pytest.approx(0.05)
    none = plan_spec(spec, 200.0, {}, {"eu-west-25": 1})
    assert "--sd reward=SD or --rate reward=P" in none.stages[2].evidence[1].note


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_metric_options(["reward"], [], []), "METRIC=NUMBER"),
        (lambda: parse_metric_options(["reward=0.5"], ["reward=0.5"], []), "either --sd or"),
        (lambda: parse_metric_options([], ["reward=1.5"], []), "strictly between 0 and 1"),
        (lambda: parse_metric_options([], [], ["reward=1"]), "needs --sd reward"),
        (lambda: parse_scope_shares(["region=eu-west-1:1.5"]), "0 < SHARE <= 1"),
        (lambda: parse_scope_shares(["0.5"]), "LABEL=VALUE:SHARE"),
    ],
)
def test_malformed_options_say_how_to_write_them(call: Callable[[], object], message: str) -> None:
    with pytest.raises(PlanInputError, match=message):
        call()


def _prometheus(values: dict[str, float]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        assert 'version="41"' in query
        assert "[1h]" in query
        name = next(key for key in values if f"{key}{{" in query)
        return httpx.Response(
            200,
            json={
                "status": "success",
                "data": {"resultType": "vector",
                         "result": [{"metric": {}, "value": [0, str(values[name])]}]},
            },
        )  # fmt: skip

    return httpx.MockTransport(answer)


def test_from_monitoring_reads_the_incumbents_rate_with_the_specs_queries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counters = {
        "lockgate_rewarded_decisions_total": 10_000.0,
        "lockgate_rewards_total": 5_300.0,
        "lockgate_reward_squares_total": 5_300.0,
    }
    transport = _prometheus(counters)
    monkeypatch.setattr(
        runtime.preflight, "http_client", lambda: httpx.AsyncClient(transport=transport)
    )
    from datetime import timedelta

    plan = build_plan(
        load_spec(DEMO), 200.0, scope_shares=["region=eu-west-1:0.45"],
        from_monitoring=timedelta(hours=1),
    )  # fmt: skip
    reward = plan.metrics["reward"]
    assert reward["rate"] is True
    assert reward["mean"] == pytest.approx(0.53)
    assert "monitoring" in reward["source"]
    given = build_plan(
        load_spec(DEMO), 200.0, rates=["reward=0.2"], from_monitoring=timedelta(hours=1)
    )
    assert given.metrics["reward"]["mean"] == 0.2  # an explicit option wins, nothing is asked


def test_from_monitoring_without_an_answer_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(503, text="down"))
    monkeypatch.setattr(
        runtime.preflight, "http_client", lambda: httpx.AsyncClient(transport=transport)
    )
    from datetime import timedelta

    with pytest.raises(MonitoringUnanswered, match="give --sd or --rate instead"):
        build_plan(load_spec(DEMO), 200.0, from_monitoring=timedelta(seconds=5))


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide console, so the table's cells are not wrapped across lines."""
    monkeypatch.setattr(cli, "out", Console(soft_wrap=True, width=220))


@pytest.mark.usefixtures("wide")
def test_plan_command_prints_the_table_and_json() -> None:
    runner = CliRunner()
    args = ["plan", str(DEMO), "--traffic", "200", "--rate", "reward=0.5291",
            "--scope-share", "region=eu-west-1:0.45"]  # fmt: skip
    shown = runner.invoke(cli.app, args)
    assert shown.exit_code == 0, shown.output
    assert "advance_when: reward non-inferior within 0.03" in shown.output
    assert "advances after" in shown.output
    as_json = runner.invoke(cli.app, [*args, "-o", "json"])
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.output)
    assert [stage["name"] for stage in document["stages"]][-1] == "full"


@pytest.mark.usefixtures("wide")
def test_validate_plan_prints_the_same_table_and_usage_errors_exit_2() -> None:
    runner = CliRunner()
    shown = runner.invoke(
        cli.app, ["validate", str(DEMO), "--plan", "--traffic", "200", "--rate", "reward=0.53"]
    )
    assert shown.exit_code == 0, shown.output
    assert "ok " in shown.output
    assert "reward-regression: reward non-inferior" in shown.output
    assert runner.invoke(cli.app, ["validate", str(DEMO), "--plan"]).exit_code == 2
    bad = runner.invoke(cli.app, ["plan", str(DEMO), "--traffic", "200", "--sd", "reward"])
    assert bad.exit_code == 2

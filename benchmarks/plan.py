"""Benchmark ``lockgate plan``: its predicted time to evidence against simulated rollouts.

The demo world (simulator/): the incumbent's and the scenarios' candidates' true values
(``Scenario.arm_values``, expected conversions per decision), at the demo spec's traffic
(200 decisions/s, as ``lockgate demo`` drives it), stages, check interval, alphas and
``expected_samples``; the eu-west-1 scope holds its share of the units (``REGIONS``).

Each stage is simulated on its own (its window restarts with it): per check, each arm's
conversions are binomial draws at its true value, and the compare trigger's and the gate's
verdicts are computed as ``compare_means`` computes them (the score-form variance of 0/1 arms,
burn-in, the one-sided boundary at the tuned ``rho``); sampled looks are cross-checked against
``compare_means`` itself. A stage advances at the first check, not before ``min_duration``, at
which every compare trigger and the gate pass; a compare trigger catches a drop at the first
check at which it has failed ``failure_limit`` times in a row. The table shows the plan's
median (``runtime.plan.plan_spec``, the numbers ``lockgate plan`` prints, or
``analysis.plan.decision_time`` at the scenario's true difference) against the simulated
median. Goal: every ratio within 25% (0.75 to 1.25).

What the simulation leaves out, as the plan does: each arm is drawn at its overall true value
(per-region differences inside a scoped stage are ignored), rewards are observed at once, and
checks are exactly ``check_interval`` apart.

Run:  .venv/bin/python benchmarks/plan.py            (about half a minute)
      .venv/bin/python benchmarks/plan.py --quick    (fewer replications, a few seconds)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from analysis.plan import MetricModel, Question, decision_time, interpolated_median
from analysis.sequential import ArmStats, compare_means, one_sided_bound, tuned_rho
from analysis.verdicts import Outcome
from rollout_specs import CompareTrigger, RolloutSpec, Stage, StageMode, load_spec
from runtime.plan import DROP_MULTIPLE, plan_spec
from simulator.scenarios import scenario
from simulator.world import REGIONS

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DEMO_SPEC = Path(__file__).resolve().parents[1] / "rollout_specs" / "examples" / "demo.yaml"
TRAFFIC = 200.0
SEED = 20261201
GOAL = 0.25
SCOPE_SHARES = {f"region={region}": share for region, share in REGIONS.items()}


def emit(line: str = "") -> None:
    """Print one line of the report (the benchmark's only output)."""
    sys.stdout.write(line + "\n")


@dataclass(frozen=True)
class Test:
    """One compare_means test of a stage: its margin, level and failure limit."""

    name: str
    margin: float
    alpha: float
    failure_limit: int = 1


@dataclass
class CrossCheck:
    """Counts agreements between the vectorised verdicts and ``compare_means``."""

    checked: int = 0
    mismatches: list[str] = field(default_factory=list)

    def sample(
        self, counts: tuple[int, int], events: tuple[int, int], test: Test, expected_n: int,
        verdict: Outcome,
    ) -> None:  # fmt: skip
        """Judge one look with the library and compare."""
        found = compare_means(
            ArmStats.from_events(counts[0], events[0]),
            ArmStats.from_events(counts[1], events[1]),
            max_drop=test.margin, relative=False, alpha=test.alpha, expected_n=expected_n,
        ).verdict  # fmt: skip
        self.checked += 1
        if found is not verdict:
            self.mismatches.append(f"{test.name} {counts} {events}: {found} != {verdict}")


def verdicts(
    n_i: int, x_i: FloatArray, n_c: int, x_c: FloatArray, test: Test, rho: float
) -> tuple[BoolArray, BoolArray]:
    """(fail, pass) of ``compare_means`` on 0/1 arms, for every replication at once.

    The score form: the variance at the two rates closest to the data that differ by exactly
    the margin (Agresti-Caffo counts), and no verdict when a material arm expects fewer than 5
    events or non-events there.
    """
    null = -test.margin
    low, high = max(0.0, -null), min(1.0, 1.0 - null)
    p_i = np.clip((x_i + x_c + 2.0 - (n_c + 2.0) * null) / (n_i + n_c + 4.0), low, high)
    p_c = p_i + null
    v_i, v_c = p_i * (1.0 - p_i) / n_i, p_c * (1.0 - p_c) / n_c
    total = v_i + v_c
    ok_i = (v_i < 0.1 * total) | (n_i * np.minimum(p_i, 1.0 - p_i) >= 5.0)
    ok_c = (v_c < 0.1 * total) | (n_c * np.minimum(p_c, 1.0 - p_c) >= 5.0)
    t = n_i + n_c
    estimate = x_c / n_c - x_i / n_i
    statistic = -(estimate + test.margin) * math.sqrt(t) / np.sqrt(total)
    bound = one_sided_bound(float(t), rho, test.alpha)
    ok = ok_i & ok_c
    return ok & (statistic >= bound), ok & (-statistic >= bound)


@dataclass(frozen=True)
class StageWorld:
    """One stage's simulated world: per-check arm sizes and the arms' true values."""

    stage: Stage
    per_check: tuple[int, int]
    """Observations per check: incumbent, candidate."""
    values: tuple[float, float]
    """True values: incumbent, candidate."""
    interval: float


def simulate_stage(
    world: StageWorld, tests: list[Test], gate_all: bool, reps: int, checks: int,
    rng: np.random.Generator, check: CrossCheck,
) -> tuple[FloatArray, dict[str, FloatArray]]:  # fmt: skip
    """Seconds until the stage advances, and until each test fails ``failure_limit`` times.

    ``inf`` where it did not happen within ``checks`` checks.
    """
    stage = world.stage
    rhos = {t.name: tuned_rho(stage.expected_samples, t.alpha) for t in tests}
    x_i, x_c = np.zeros(reps), np.zeros(reps)
    advance = np.full(reps, np.inf)
    caught = {t.name: np.full(reps, np.inf) for t in tests}
    streaks = {t.name: np.zeros(reps) for t in tests}
    bake = stage.min_duration.total_seconds()
    k_i, k_c = world.per_check
    for k in range(1, checks + 1):
        x_i += rng.binomial(k_i, world.values[0], reps)
        x_c += rng.binomial(k_c, world.values[1], reps)
        n_i, n_c = k * k_i, k * k_c
        now = k * world.interval
        passing = np.ones(reps, dtype=np.bool_)
        burned_in = min(n_i, n_c) >= 100
        for test in tests:
            fail, ok = verdicts(n_i, x_i, n_c, x_c, test, rhos[test.name])
            if not burned_in:
                fail, ok = np.zeros(reps, np.bool_), np.zeros(reps, np.bool_)
            streaks[test.name] = np.where(fail, streaks[test.name] + 1, 0)
            hit = streaks[test.name] >= test.failure_limit
            caught[test.name][np.isinf(caught[test.name]) & hit] = now
            passing &= ok
            if k % 9 == 0 and burned_in:
                row = int(rng.integers(reps))
                verdict = (
                    Outcome.FAIL if fail[row] else Outcome.PASS if ok[row] else Outcome.INCONCLUSIVE
                )
                check.sample((n_i, n_c), (int(x_i[row]), int(x_c[row])), test,
                             stage.expected_samples, verdict)  # fmt: skip
        if now >= bake and gate_all:
            advance[np.isinf(advance) & passing] = now
    return advance, caught


def stage_world(
    spec: RolloutSpec, stage: Stage, values: tuple[float, float]
) -> tuple[StageWorld, float] | None:
    """The stage's arms per check and its candidate share; None for offline/shadow/100%."""
    if stage.mode is not StageMode.SPLIT or stage.percent is None:
        return None
    share = 1.0
    for label, wanted in (stage.scope or {}).items():
        share *= sum(SCOPE_SHARES[f"{label}={value}"] for value in wanted)
    candidate_share = share * stage.percent / 100.0
    if candidate_share >= 1.0:
        return None
    interval = spec.spec.check_interval.total_seconds()
    per_check = TRAFFIC * interval
    k_c = round(per_check * candidate_share)
    return StageWorld(stage, (round(per_check) - k_c, k_c), values, interval), candidate_share


def stage_tests(spec: RolloutSpec, stage: Stage) -> list[Test]:
    """The gate (at the spec's alpha) and each compare trigger (at its share), as checks run."""
    body = spec.spec
    tests: list[Test] = []
    if stage.advance_when is not None:
        tests.append(Test("advance_when", stage.advance_when.margin, body.alpha))
    for trigger in body.triggers_for(stage):
        if isinstance(trigger, CompareTrigger):
            tests.append(
                Test(trigger.name, trigger.compare.max_drop, body.trigger_alpha(trigger),
                     trigger.failure_limit)
            )  # fmt: skip
    return tests


def simulated_median(times: FloatArray, interval: float, checks: int) -> float:
    """The median of decision times on the check grid, read as the plan reads its own.

    ``interpolated_median`` of the empirical probability of having decided by each check, so
    the simulated and the predicted medians follow one convention.
    """
    cdf = [float((times <= k * interval + 1e-9).mean()) for k in range(1, checks + 1)]
    median = interpolated_median(cdf)
    return math.inf if median is None else median * interval


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def ratio_cell(predicted: float | None, simulated: float) -> tuple[str, bool]:
    """`ratio` text and whether it meets the goal."""
    if predicted is None or not math.isfinite(simulated):
        return "-", False
    ratio = predicted / simulated
    return f"{ratio:.2f}", abs(ratio - 1.0) <= GOAL


@dataclass(frozen=True)
class Setting:
    """One stage of the demo spec in the demo world, as the simulation and the plan see it."""

    spec: RolloutSpec
    stage: Stage
    world: StageWorld
    share: float
    model: MetricModel
    tests: list[Test]
    reps: int
    checks: int


Row = tuple[str, str, float | None, FloatArray]


def scenario_rows(
    setting: Setting, candidates: dict[str, float], rng: np.random.Generator, check: CrossCheck
) -> list[Row]:
    """The scenarios' true candidates: when a healthy one advances, when a regression is caught.

    The plan is asked at the scenario's true difference (``decision_time``), as `plan` would
    answer an engineer who knew it.
    """
    stage, world, p = setting.stage, setting.world, setting.world.values[0]
    rows: list[Row] = []
    for label, value in candidates.items():
        real = StageWorld(stage, world.per_check, (p, value), world.interval)
        advance, caught = simulate_stage(
            real, setting.tests, True, setting.reps, setting.checks, rng, check
        )
        what = f"{label} {value - p:+.4f}"
        if value >= p:
            times = [_predict(setting, test, value - p, "pass") for test in setting.tests]
            known = [t for t in times if t is not None]
            bake = stage.min_duration.total_seconds()
            predicted = max([bake, *known]) if len(known) == len(times) else None
            rows.append(("advance (all pass)", what, predicted, advance))
            continue
        for test in setting.tests:
            if test.name != "advance_when":
                predicted = _predict(setting, test, value - p, "fail")
                rows.append((f"{test.name} catches", what, predicted, caught[test.name]))
    return rows


def main() -> int:
    """Print the table; exit 1 when a ratio misses the goal or a cross-check disagrees."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer replications")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    reps = 600 if args.quick else 4000
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    spec = load_spec(DEMO_SPEC)
    healthy = scenario("healthy").arm_values()
    regression = scenario("regression").arm_values()
    p = healthy.incumbent
    model = MetricModel.rate(p)
    plan = plan_spec(spec, TRAFFIC, {"reward": (model, "demo world")}, SCOPE_SHARES)
    planned = {s.name: s for s in plan.stages}
    emit(f"# lockgate plan vs simulated rollouts on the demo world (seed {args.seed})")
    emit()
    emit(
        f"Demo spec at {TRAFFIC:g} decisions/s, checks every "
        f"{spec.spec.check_interval.total_seconds():g}s, {reps} simulated rollouts per row. "
        f"Incumbent true value {p:.4f}; healthy candidate {healthy.candidate:.4f} "
        f"({healthy.candidate - p:+.4f}); regression candidate {regression.candidate:.4f} "
        f"({regression.candidate - p:+.4f}). Times are medians from the stage's start."
    )
    emit()
    emit("| stage | split | what | candidate | predicted | simulated | ratio | goal |")
    emit("|---|---|---|---|---|---|---|---|")
    check = CrossCheck()
    ok = True
    total_sim = np.zeros(reps)
    stage_medians: list[float] = []
    for stage in spec.spec.stages:
        built = stage_world(spec, stage, (p, p))
        if built is None:
            if stage.mode is not StageMode.OFFLINE:
                total_sim += stage.min_duration.total_seconds()
                stage_medians.append(stage.min_duration.total_seconds())
            continue
        world, share = built
        tests = stage_tests(spec, stage)
        split = f"{share:.4g}"
        checks = 400
        rows: list[Row] = []
        # The plan's own assumptions: an equal candidate; a drop of 2 x max_drop.
        advance, _ = simulate_stage(world, tests, True, reps, checks, rng, check)
        total_sim += advance
        rows.append(("advance (all pass)", "equal", planned[stage.name].advance_seconds, advance))
        for test in tests:
            if test.name == "advance_when":
                continue
            drop = DROP_MULTIPLE * test.margin
            dropped = StageWorld(stage, world.per_check, (p, p - drop), world.interval)
            _, caught = simulate_stage(dropped, [test], False, reps, checks, rng, check)
            row = next(
                r for r in planned[stage.name].evidence
                if r.source == test.name and r.question == "catch"
            )  # fmt: skip
            rows.append((f"{test.name} catches", f"-{drop:g}", row.seconds, caught[test.name]))
        rows += scenario_rows(
            Setting(spec, stage, world, share, model, tests, reps, checks),
            {"healthy": healthy.candidate, "regression": regression.candidate},
            rng,
            check,
        )
        for what, candidate, predicted, simulated in rows:
            median = simulated_median(simulated, world.interval, checks)
            cell, met = ratio_cell(predicted, median)
            ok &= met
            if what == "advance (all pass)" and candidate == "equal":
                stage_medians.append(median)
            emit(
                f"| {stage.name} | {split} | {what} | {candidate} | {_s(predicted)} | {_s(median)} "
                f"| {cell} | {'PASS' if met else 'FAIL'} |"
            )
    total_pred = plan.total_seconds
    sum_of_medians = sum(stage_medians)
    cell, met = ratio_cell(total_pred, sum_of_medians)
    ok &= met
    emit(
        f"| whole rollout | | sum of the live stages' medians | equal | {_s(total_pred)} "
        f"| {_s(sum_of_medians)} | {cell} | {'PASS' if met else 'FAIL'} |"
    )
    emit()
    emit(
        f"The simulated whole rollout's own median is {_s(float(np.median(total_sim)))} (its "
        f"mean {_s(float(np.mean(total_sim)))}): stage times are right-skewed, so a rollout "
        "usually takes longer than the sum of its stages' medians, which is what `plan` shows."
    )
    emit()
    emit(
        f"Cross-check: {check.checked} sampled looks judged by compare_means, "
        f"{len(check.mismatches)} disagreements. {time.perf_counter() - started:.1f}s."
    )
    for mismatch in check.mismatches[:5]:
        emit(f"- {mismatch}")
    ok &= not check.mismatches
    emit(f"Goal (every ratio within {GOAL:.0%}): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def _predict(
    setting: Setting, test: Test, improvement: float, direction: Literal["pass", "fail"]
) -> float | None:
    """The plan's median for one test at a given true improvement (what `plan` computes)."""
    question = Question(
        direction,
        test.margin,
        improvement,
        test.alpha,
        setting.stage.expected_samples,
        failure_limit=test.failure_limit,
    )
    return decision_time(
        setting.model,
        question,
        traffic=TRAFFIC,
        candidate_share=setting.share,
        check_interval=setting.spec.spec.check_interval.total_seconds(),
    ).seconds


if __name__ == "__main__":
    sys.exit(main())

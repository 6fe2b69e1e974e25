"""`lockgate plan`: how long each stage of a spec needs for its evidence, before submitting it.

The spec is walked the way the workflow runs it: the triggers that judge each stage
(`triggers_for`), each trigger's share of alpha (`trigger_alpha`), the gate at the spec's alpha,
the stage's `expected_samples`, the check interval and failure limits. The statistics are
`analysis.plan`'s; this module adds the stage's traffic split, the metrics' noise (given on the
command line or read from monitoring), the warnings, and the table and JSON shapes.

Traffic per arm: the metric queries count every decision of a version over the stage's window,
whatever its scope, so in a stage serving `percent` of a scope holding `share` of the traffic
the candidate sees `traffic x share x percent / 100` decisions per second and the incumbent the
rest. Every decision is taken to be observed at once (late rewards are ignored).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Final, Literal

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from analysis.plan import Decision, MetricModel, Question, decision_time
from rollout_specs import (
    CompareTrigger,
    RolloutSpec,
    RolloutSpecBody,
    Stage,
    StageMode,
    format_duration,
)

__all__ = [
    "DROP_MULTIPLE",
    "EvidenceRow",
    "MonitoringUnanswered",
    "PlanInputError",
    "RolloutPlan",
    "StagePlan",
    "build_plan",
    "incumbent_metrics",
    "metrics_needed",
    "parse_metric_options",
    "parse_scope_shares",
    "plan_document",
    "plan_spec",
    "render_plan",
]

DROP_MULTIPLE: Final = 2.0
"""The drop a compare trigger is planned to catch, in multiples of its max_drop. A drop of
exactly max_drop is the test's null (caught with probability at most alpha); at twice it, the
truth lies as far beyond the margin as an equal candidate lies inside it."""
HORIZON_SECONDS: Final = 90 * 86_400.0
"""Evidence that takes longer than this (90 days) is reported as never coming."""


class PlanInputError(ValueError):
    """A plan option that cannot be used (a malformed `--sd`, a share out of range)."""


class MonitoringUnanswered(PlanInputError):
    """Monitoring could not give the incumbent's statistics (unreachable, no data, a secret)."""


@dataclass(frozen=True)
class EvidenceRow:
    """One question a stage's tests must answer, and how long the answer takes (median).

    Attributes:
        source: `advance_when` or the compare trigger's name.
        question: `non-inferior` (needed to advance) or `catch` (a drop that rolls back).
        metric: The metric judged.
        margin: The margin in the metric's units (a relative margin times the incumbent's
            mean); None when it cannot be known.
        assumed: The truth assumed, in words (`equal`, `drop 0.1`).
        alpha: The decision's level.
        seconds: Median seconds from the stage's start; None when unknown or never.
        samples: Observations (both arms) at that time.
        note: Why there is no time, or what else the row needs to be read with.
    """

    source: str
    question: Literal["non-inferior", "catch"]
    metric: str
    margin: float | None
    assumed: str
    alpha: float
    seconds: float | None
    samples: float | None
    note: str = ""


@dataclass(frozen=True)
class StagePlan:
    """One stage: its traffic split, its evidence, when it may advance, and what to fix.

    Attributes:
        name: The stage's name.
        mode: offline, shadow or split.
        percent: The candidate's percent (of the scope); None for offline and shadow stages.
        scope_share: The scope's share of all traffic (1 without scope); None when unknown.
        candidate_rate: Candidate observations per second (None when unknown).
        incumbent_rate: Incumbent observations per second (None when unknown).
        min_duration: The bake, in seconds.
        max_duration: The stage's limit, in seconds, or None.
        evidence: The questions its tests must answer.
        advance_seconds: When it may advance (median): the bake, or the last non-inferiority
            needed if later; None when that cannot be known or never comes.
        warnings: What the engineer should look at.
    """

    name: str
    mode: str
    percent: float | None
    scope_share: float | None
    candidate_rate: float | None
    incumbent_rate: float | None
    min_duration: float
    max_duration: float | None
    evidence: list[EvidenceRow] = field(default_factory=list)
    advance_seconds: float | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RolloutPlan:
    """A whole spec's plan at one traffic level.

    Attributes:
        name: The rollout's name.
        target: The policy slot.
        traffic: Decisions per second the plan assumes.
        check_interval: Seconds between checks.
        metrics: Each planned metric's assumed incumbent statistics and where they came from.
        stages: Every stage, in order.
        total_seconds: The sum of the live stages' advance times (approvals not counted);
            None when one is unknown.
        notes: Assumptions and what the plan leaves out.
    """

    name: str
    target: str
    traffic: float
    check_interval: float
    metrics: dict[str, dict[str, Any]]
    stages: list[StagePlan]
    total_seconds: float | None
    notes: list[str]


# ----------------------------------------------------------------------------- options


def _pairs(values: Sequence[str], option: str) -> dict[str, float]:
    """`name=number` options as a mapping; a malformed one is a PlanInputError naming it."""
    found: dict[str, float] = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            parsed = float(number)
        except ValueError:
            parsed = math.nan
        if not sep or not name.strip() or not math.isfinite(parsed):
            raise PlanInputError(
                f"{option} {value!r}: write METRIC=NUMBER, e.g. {option} reward=0.5"
            )
        found[name.strip()] = parsed
    return found


def parse_metric_options(
    sds: Sequence[str], rates: Sequence[str], means: Sequence[str]
) -> dict[str, tuple[MetricModel, str]]:
    """The metrics' models from `--sd NAME=SD`, `--rate NAME=P` and `--mean NAME=MEAN`.

    Why: the plan is only as good as the noise it is given; a rate (a 0/1 metric) fixes its
    own standard deviation, and a mean is needed for relative margins.

    Returns:
        Each named metric's model and where it came from.
    """
    sd_of, rate_of, mean_of = (
        _pairs(sds, "--sd"), _pairs(rates, "--rate"), _pairs(means, "--mean"),
    )  # fmt: skip
    both = sorted(set(sd_of) & set(rate_of))
    if both:
        raise PlanInputError(f"give {both[0]!r} either --sd or --rate (a rate sets its own sd)")
    models: dict[str, tuple[MetricModel, str]] = {}
    try:
        for name, rate in rate_of.items():
            models[name] = (MetricModel.rate(rate), f"--rate {rate:g}")
        for name, sd in sd_of.items():
            mean = mean_of.get(name)
            source = f"--sd {sd:g}" + ("" if mean is None else f", --mean {mean:g}")
            models[name] = (MetricModel(sd=sd, mean=mean), source)
    except ValueError as exc:
        raise PlanInputError(str(exc)) from exc
    stray = sorted(set(mean_of) - set(sd_of))
    if stray:
        raise PlanInputError(f"--mean {stray[0]}=... needs --sd {stray[0]}=... with it")
    return models


def parse_scope_shares(values: Sequence[str]) -> dict[str, float]:
    """`--scope-share LABEL=VALUE:SHARE` (or `STAGE:SHARE`) options as a mapping.

    Why: a scoped stage's traffic is the scope's share of the whole, which no spec says.
    """
    shares: dict[str, float] = {}
    for value in values:
        key, sep, number = value.rpartition(":")
        try:
            share = float(number)
        except ValueError:
            share = math.nan
        if not sep or not key or not 0.0 < share <= 1.0:
            raise PlanInputError(
                f"--scope-share {value!r}: write LABEL=VALUE:SHARE (e.g. region=eu-west-1:0.3) "
                "or STAGE:SHARE, with 0 < SHARE <= 1"
            )
        shares[key] = share
    return shares


def _scope_share(stage: Stage, shares: Mapping[str, float]) -> float | None:
    """The scope's share of all traffic: given for the stage, or built from its labels' values.

    Values of one label add up; labels multiply (taken as independent). None when a value's
    share is not given.
    """
    if not stage.scope:
        return 1.0
    if stage.name in shares:
        return shares[stage.name]
    total = 1.0
    for label, values in stage.scope.items():
        parts = [shares.get(f"{label}={value}") for value in values]
        if any(part is None for part in parts):
            return None
        total *= min(1.0, sum(part for part in parts if part is not None))
    return total


def metrics_needed(body: RolloutSpecBody) -> list[str]:
    """The metrics a plan of `body` needs the noise of: compared by triggers, or gated on."""
    names: set[str] = set()
    for stage in body.stages:
        if stage.advance_when is not None:
            names.add(stage.advance_when.non_inferior)
        for trigger in body.triggers_for(stage):
            if isinstance(trigger, CompareTrigger):
                names.add(trigger.compare.metric)
    return sorted(names)


async def incumbent_metrics(
    spec: RolloutSpec, names: Sequence[str], window: timedelta
) -> dict[str, tuple[MetricModel, str]]:
    """The incumbent's current mean and variance of each metric, from the spec's monitoring.

    Why: the best guess of the noise a rollout will meet is the incumbent's own, measured by
    the same per-arm queries the checks run (spec.metrics or the built-in ones), over `window`
    instead of the stage's window. A 0/1 metric becomes a rate.

    Raises:
        PlanInputError: Monitoring cannot answer (no data, unreachable, a missing secret).
    """
    from activities.checks import arm_stats
    from activities.errors import BackendError
    from activities.redaction import redact
    from activities.registry import build_provider
    from rollout_specs import TemplateError
    from runtime.preflight import first_live_variables, http_client

    body = spec.spec
    variables = first_live_variables(spec)
    if variables is None:
        return {}
    variables = {**variables, "stage_window": format_duration(window)}
    models: dict[str, tuple[MetricModel, str]] = {}
    async with http_client() as client:
        try:
            provider = build_provider(body.monitoring, client)
            for name in names:
                arm = await arm_stats(
                    provider, body.metric(name), variables, body.incumbent.version
                )
                if arm.n < 2 or not arm.variance > 0.0:
                    raise MonitoringUnanswered(
                        f"monitoring has {arm.n} observations of {name!r} for the incumbent "
                        f"over {format_duration(window)}, without spread; give --sd or --rate"
                    )
                where = f"monitoring, incumbent over {format_duration(window)} (n={arm.n})"
                if arm.is_binary:
                    models[name] = (MetricModel.rate(arm.mean), where)
                else:
                    model = MetricModel(sd=math.sqrt(arm.variance), mean=arm.mean)
                    models[name] = (model, where)
        except (BackendError, TemplateError) as exc:
            raise MonitoringUnanswered(
                f"could not read the incumbent's statistics: {redact(str(exc))}; give --sd "
                "or --rate instead"
            ) from exc
    return models


# ----------------------------------------------------------------------------- the plan


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _clock(seconds: float | None) -> str:
    """Seconds as the spec writes durations, rounded to the second (`-` when unknown)."""
    if seconds is None:
        return "-"
    return format_duration(timedelta(seconds=max(0, round(seconds))))


@dataclass
class _StageContext:
    body: RolloutSpecBody
    metrics: Mapping[str, tuple[MetricModel, str]]
    traffic: float
    share: float  # the candidate's share of the observations
    drop_multiple: float


def _row(
    context: _StageContext,
    stage: Stage,
    *,
    source: str,
    metric: str,
    margin: float,
    relative: bool,
    alpha: float,
    question: Literal["non-inferior", "catch"],
    failure_limit: int = 1,
) -> EvidenceRow:
    body = context.body
    known = context.metrics.get(metric)
    assumed = "equal" if question == "non-inferior" else ""
    if known is None:
        if question == "catch":
            assumed = f"drop {context.drop_multiple:g} x max_drop"
        return EvidenceRow(
            source, question, metric, None, assumed, alpha, None, None,
            f"no noise for {metric!r}: give --sd {metric}=SD or --rate {metric}=P",
        )  # fmt: skip
    model = known[0]
    absolute = margin
    if relative:
        if model.mean is None or model.mean == 0.0:
            return EvidenceRow(
                source, question, metric, None, assumed, alpha, None, None,
                f"a relative margin needs the incumbent's mean: --mean {metric}=MEAN",
            )  # fmt: skip
        absolute = margin * abs(model.mean)
    improvement = 0.0 if question == "non-inferior" else -context.drop_multiple * absolute
    if question == "catch":
        assumed = f"drop {-improvement:.4g}"
    decision: Decision = decision_time(
        model,
        Question(
            direction="pass" if question == "non-inferior" else "fail",
            margin=absolute,
            improvement=improvement,
            alpha=alpha,
            expected_n=stage.expected_samples,
            higher_is_better=body.metric(metric).higher_is_better,
            failure_limit=failure_limit,
        ),
        traffic=context.traffic,
        candidate_share=context.share,
        check_interval=body.check_interval.total_seconds(),
        horizon=HORIZON_SECONDS,
    )
    return EvidenceRow(
        source, question, metric, absolute, assumed, alpha, decision.seconds, decision.samples,
        decision.why_never or "",
    )  # fmt: skip


def _plan_stage(
    body: RolloutSpecBody,
    stage: Stage,
    traffic: float,
    metrics: Mapping[str, tuple[MetricModel, str]],
    scope_shares: Mapping[str, float],
    drop_multiple: float,
) -> StagePlan:
    bake = stage.min_duration.total_seconds()
    limit = _seconds(stage.max_duration)
    if stage.mode is StageMode.OFFLINE:
        return StagePlan(stage.name, stage.mode.value, None, None, None, None, 0.0, None, [], 0.0)
    compares = [t for t in body.triggers_for(stage) if isinstance(t, CompareTrigger)]
    if stage.mode is StageMode.SHADOW:
        # advance_when on a shadow stage is refused when the spec loads; a compare trigger
        # told to judge shadow stages is not, and it never has candidate outcomes there.
        warnings = [
            f"compare trigger {trigger.name!r} judges this shadow stage, where the candidate "
            "serves nothing: it never has evidence, so the stage holds and escalates; remove "
            "'shadow' from its modes"
            for trigger in compares
        ]
        return StagePlan(
            stage.name, stage.mode.value, None, 1.0, 0.0, traffic, bake, limit, [],
            None if compares else bake, warnings,
        )  # fmt: skip
    assert stage.percent is not None
    share = _scope_share(stage, scope_shares)
    if share is None:
        labels = ", ".join(f"{k}={v[0]}" for k, v in (stage.scope or {}).items())
        warning = (
            f"scoped to {labels}: its share of the traffic is unknown, so the stage's time is "
            f"unknown; give --scope-share {labels}:SHARE (or --scope-share {stage.name}:SHARE)"
        )
        return StagePlan(
            stage.name, stage.mode.value, stage.percent, None, None, None, bake, limit, [], None,
            [warning],
        )  # fmt: skip
    candidate_share = share * stage.percent / 100.0
    rates = (traffic * candidate_share, traffic * (1.0 - candidate_share))
    if candidate_share >= 1.0:
        gated = stage.advance_when is not None
        warnings = (
            [
                "advance_when at 100% with no scope can never be shown: no incumbent traffic "
                "is left to compare with, so the stage never advances by itself; move it to an "
                "earlier stage"
            ]
            if gated
            else []
        )
        return StagePlan(
            stage.name, stage.mode.value, stage.percent, share, *rates, bake, limit, [],
            None if gated else bake, warnings,
        )  # fmt: skip
    context = _StageContext(body, metrics, traffic, candidate_share, drop_multiple)
    rows = _split_rows(context, stage, compares)
    advance, warnings = _advance(stage, rows)
    return StagePlan(
        stage.name, stage.mode.value, stage.percent, share, *rates, bake, limit, rows, advance,
        warnings,
    )  # fmt: skip


def _split_rows(
    context: _StageContext, stage: Stage, compares: list[CompareTrigger]
) -> list[EvidenceRow]:
    """The gate's question, then each compare trigger's two, as the stage's checks ask them."""
    body = context.body
    rows: list[EvidenceRow] = []
    gate = stage.advance_when
    if gate is not None:
        rows.append(
            _row(
                context, stage, source="advance_when", metric=gate.non_inferior,
                margin=gate.margin, relative=gate.relative, alpha=body.alpha,
                question="non-inferior",
            )
        )  # fmt: skip
    questions: tuple[Literal["non-inferior", "catch"], ...] = ("non-inferior", "catch")
    for trigger in compares:
        rule = trigger.compare
        for question in questions:
            rows.append(
                _row(
                    context, stage, source=trigger.name, metric=rule.metric,
                    margin=rule.max_drop, relative=rule.relative,
                    alpha=body.trigger_alpha(trigger), question=question,
                    failure_limit=trigger.failure_limit,
                )
            )  # fmt: skip
    return rows


def _advance(stage: Stage, rows: list[EvidenceRow]) -> tuple[float | None, list[str]]:
    """When the stage may advance (every non-inferiority shown, and the bake), and warnings.

    A stage advances only once every compare trigger passes (non-inferiority within its
    max_drop) and its gate is shown, and not before min_duration.
    """
    bake = stage.min_duration.total_seconds()
    limit = _seconds(stage.max_duration)
    warnings: list[str] = []
    needed = [row for row in rows if row.question == "non-inferior"]
    advance: float | None = bake
    for row in needed:
        if row.seconds is None:
            advance = None
            if row.note.startswith(("never", "not within")):
                warnings.append(
                    f"could never earn its gate: {row.source} ({row.metric} non-inferior within "
                    f"{row.margin:.4g}) is {row.note}"
                )
        elif advance is not None:
            advance = max(advance, row.seconds)
    slowest = max((row.seconds or 0.0 for row in needed), default=0.0)
    if advance is not None and slowest > bake:
        warnings.append(
            f"min_duration {_clock(bake)} is shorter than the {_clock(slowest)} the evidence "
            f"needs (median): the stage will bake about {_clock(slowest)}"
        )
    if limit is not None and advance is not None and advance > limit:
        warnings.append(
            f"max_duration {_clock(limit)} comes before the evidence ({_clock(advance)}, median): "
            f"the stage would more often than not {stage.on_inconclusive.value} instead of "
            "advancing"
        )
    return advance, warnings


def plan_spec(
    spec: RolloutSpec,
    traffic: float,
    metrics: Mapping[str, tuple[MetricModel, str]],
    scope_shares: Mapping[str, float] | None = None,
    *,
    drop_multiple: float = DROP_MULTIPLE,
) -> RolloutPlan:
    """The plan of every stage of `spec` at `traffic` decisions per second.

    Why: before submitting, the engineer learns how long each stage will really bake, which
    `min_duration` is too short for its evidence, and which stage could never earn its gate.

    Args:
        spec: The validated spec.
        traffic: Decisions per second reaching the target (all of them, both arms), > 0.
        metrics: Each metric's incumbent statistics and where they came from.
        scope_shares: Scope shares, by `label=value` or stage name (see parse_scope_shares).
        drop_multiple: The drop a compare trigger is planned to catch, in max_drops, > 1.
    """
    if not (traffic > 0.0 and math.isfinite(traffic)):
        raise PlanInputError(
            f"--traffic must be a positive number of decisions per second, got {traffic!r}"
        )
    if not drop_multiple > 1.0:
        raise PlanInputError("the planned drop must exceed max_drop (a multiple above 1)")
    body = spec.spec
    stages = [
        _plan_stage(body, stage, traffic, metrics, scope_shares or {}, drop_multiple)
        for stage in body.stages
    ]
    live = [s for s in stages if s.mode != StageMode.OFFLINE.value]
    total: float | None = 0.0
    for stage in live:
        total = (
            None
            if total is None or stage.advance_seconds is None
            else total + stage.advance_seconds
        )
    notes = [
        "times are medians from each stage's start: half of the rollouts take longer",
        "non-inferior: the candidate assumed equal to the incumbent; catch: a drop of "
        f"{drop_multiple:g} x max_drop (a drop of exactly max_drop is the test's own null)",
        "every decision's outcome assumed known at once (late rewards delay it all by their "
        "delay); approvals and the offline gate not counted",
    ]
    others = sorted(
        {t.name for t in body.rollback_triggers if t.statistical and t.kind != "compare"}
    )
    if others:
        notes.append(
            f"not planned (they must pass too): {', '.join(others)}; only compare triggers and "
            "advance_when are"
        )
    return RolloutPlan(
        name=spec.metadata.name,
        target=body.target,
        traffic=traffic,
        check_interval=body.check_interval.total_seconds(),
        metrics={
            name: {"sd": model.sd, "mean": model.mean, "rate": model.binary, "source": source}
            for name, (model, source) in sorted(metrics.items())
        },
        stages=stages,
        total_seconds=total,
        notes=notes,
    )


def build_plan(
    spec: RolloutSpec,
    traffic: float,
    *,
    sds: Sequence[str] = (),
    rates: Sequence[str] = (),
    means: Sequence[str] = (),
    scope_shares: Sequence[str] = (),
    from_monitoring: timedelta | None = None,
) -> RolloutPlan:
    """The plan from the command line's options: what `lockgate plan` and `validate --plan` show.

    Metrics named with `--sd`/`--rate` win over what monitoring says (with `from_monitoring`,
    the window to read the incumbent over); the rest is read from monitoring.

    Raises:
        PlanInputError: A malformed option (MonitoringUnanswered: monitoring could not answer).
    """
    given = parse_metric_options(sds, rates, means)
    shares = parse_scope_shares(scope_shares)
    metrics: dict[str, tuple[MetricModel, str]] = {}
    if from_monitoring is not None:
        wanted = [name for name in metrics_needed(spec.spec) if name not in given]
        if wanted:
            metrics.update(asyncio.run(incumbent_metrics(spec, wanted, from_monitoring)))
    metrics.update(given)
    return plan_spec(spec, traffic, metrics, shares)


def plan_document(plan: RolloutPlan) -> dict[str, Any]:
    """The plan as JSON-ready data (`-o json`): seconds as numbers, null where unknown."""
    return asdict(plan)


def _split(stage: StagePlan) -> str:
    if stage.mode == StageMode.OFFLINE.value:
        return "offline"
    if stage.mode == StageMode.SHADOW.value:
        return "shadow"
    where = "" if stage.scope_share in (None, 1.0) else f" of {stage.scope_share:g}"
    head = f"{stage.percent:g}%{where}"
    if stage.candidate_rate is None or stage.incumbent_rate is None:
        return head
    return f"{head}: {stage.candidate_rate:.4g}/{stage.incumbent_rate:.4g} per s"


def _evidence(row: EvidenceRow) -> str:
    margin = "?" if row.margin is None else f"{row.margin:.4g}"
    if row.question == "non-inferior":
        return f"{row.source}: {row.metric} non-inferior within {margin}"
    drop = row.assumed.removeprefix("drop ")
    return f"{row.source}: catch a {row.metric} drop of {drop}"


def render_plan(plan: RolloutPlan) -> RenderableType:
    """The plan as a rich table, then its warnings and notes (the `plan` command's output)."""
    table = Table(
        title=Text(
            f"plan: {plan.name} ({plan.target}) at {plan.traffic:g} decisions/s, checks every "
            f"{_clock(plan.check_interval)}"
        )
    )
    for column in ("stage", "split: candidate/incumbent", "min_duration", "evidence", "alpha",
                   "median time"):  # fmt: skip
        table.add_column(column, justify="right" if column == "median time" else "left")
    for stage in plan.stages:
        first = True
        cells = (stage.name, _split(stage), _clock(stage.min_duration))
        for row in stage.evidence:
            time = _clock(row.seconds) if row.seconds is not None else row.note
            table.add_row(
                *(Text(c) for c in (cells if first else ("", "", ""))),
                Text(_evidence(row)), Text(f"{row.alpha:.3g}"), Text(time),
            )  # fmt: skip
            first = False
        if stage.mode == StageMode.OFFLINE.value:
            summary = "-"
            table.add_row(*(Text(c) for c in cells), Text("offline_eval: judged once, on logs"))
            first = False
        elif stage.advance_seconds is None:
            summary = "unknown" if not stage.warnings else "see warnings"
        else:
            summary = _clock(stage.advance_seconds)
        table.add_row(
            *(Text(c) for c in (cells if first else ("", "", ""))),
            Text("advances after", style="bold"), Text(""), Text(summary, style="bold"),
            end_section=True,
        )  # fmt: skip
    parts: list[RenderableType] = [table]
    total = (
        "unknown"
        if plan.total_seconds is None
        else f"about {_clock(plan.total_seconds)} (the sum of the stages' medians; a whole "
        "rollout usually takes somewhat longer, as each stage's time is right-skewed)"
    )
    parts.append(Text(f"whole rollout (live stages): {total}"))
    for name, known in plan.metrics.items():
        mean = "" if known["mean"] is None else f", mean {known['mean']:.4g}"
        parts.append(Text(f"{name}: sd {known['sd']:.4g}{mean} ({known['source']})"))
    for stage in plan.stages:
        for warning in stage.warnings:
            parts.append(Text.assemble(("warning: ", "yellow"), f"stage {stage.name}: {warning}"))
    for note in plan.notes:
        parts.append(Text(f"note: {note}", style="dim"))
    return Group(*parts)

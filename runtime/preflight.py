"""Preflight: before a rollout starts, prove that what its spec points at answers.

A spec can be valid and still unusable: a router that is not running, a candidate URL nobody
serves, a query that returns three series. Started anyway, such a rollout fails its first route
and rolls back, retrying forever against a router that is not there. Preflight asks each
backend once, as the rollout's first live stage would, and lists every problem together (one
line each: the spec field and the fix) before anything starts.

It reuses the worker's own code paths (the backend registry's router and providers, the
check's `arm_stats`, the template renderer, the HTTP boundary) so "preflight passed" means the
same requests the worker will send were answered. It runs where it is called (the CLI, a CI
job): `auth` secrets are read from that environment, and no message ever holds their values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field

import httpx

from activities import http_boundary
from activities.checks import arm_stats
from activities.contracts import Route
from activities.errors import (
    BackendError,
    MissingCredential,
    NoDataError,
    ProviderUnavailable,
    RouterUnavailable,
)
from activities.http_boundary import Unreachable, send
from activities.providers.base import MetricProvider
from activities.redaction import redact
from activities.registry import build_provider, build_router
from rollout_specs import (
    ArmMetric,
    DriftTrigger,
    RollbackTrigger,
    RolloutSpec,
    RouterConfig,
    SegmentsTrigger,
    ShadowTrigger,
    SpendTrigger,
    StageMode,
    TemplateError,
    ThresholdTrigger,
    render,
)

__all__ = [
    "CANDIDATE_DEADLINE",
    "PreflightReport",
    "Problem",
    "describe_route",
    "first_live_variables",
    "preflight",
    "read_route",
    "router_now",
]

CANDIDATE_DEADLINE = 5.0
"""Seconds the candidate's URI gets to answer; any HTTP answer, even an error, counts."""


@dataclass(frozen=True)
class Problem:
    """One thing that would break the rollout: the spec field at fault, and what to do."""

    field: str
    """Where in the spec, e.g. `spec.router.url` or `spec.rollback_triggers[0].query`."""
    message: str
    """What answered (or did not) and the fix; never a secret's value."""

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass
class PreflightReport:
    """What preflight found: the problems, and what answered (for a one-line summary)."""

    problems: list[Problem] = field(default_factory=list)
    route: Route | None = None
    """The route the router holds for the target now (None: none, or unreadable)."""
    router_answered: bool = False
    candidate_answered: bool | None = None
    """None when the candidate has no http(s) URI to ask."""
    queries: int = 0
    """Monitoring queries that answered with usable data or an honest "no data yet"."""
    no_data: list[str] = field(default_factory=list)
    """Triggers whose queries matched nothing yet: normal before the candidate serves."""

    @property
    def ok(self) -> bool:
        """True when nothing stands in the rollout's way."""
        return not self.problems

    def summary(self) -> str:
        """One line for a passing preflight: what answered, so a human sees what was proven."""
        parts = [f"router answers ({describe_route(self.route)})"]
        if self.candidate_answered:
            parts.append("candidate answers")
        parts.append(f"{self.queries} monitoring quer{'y' if self.queries == 1 else 'ies'} ran")
        if self.no_data:
            parts.append(f"no data yet for {', '.join(self.no_data)} (expected before it serves)")
        return "; ".join(parts)


def http_client() -> httpx.AsyncClient:
    """A short-lived client with the worker's rules: no redirects, per-request deadlines."""
    return httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)


async def preflight(spec: RolloutSpec, client: httpx.AsyncClient | None = None) -> PreflightReport:
    """Ask the router, the candidate and monitoring once each, concurrently; report them all.

    Never raises for what a backend answers: every failure is a Problem in the report.
    """
    if client is None:
        async with http_client() as own:
            return await preflight(spec, own)
    report = PreflightReport()
    with _quiet_retries():
        await asyncio.gather(
            _check_router(spec, client, report),
            _check_candidate(spec, client, report),
            _check_monitoring(spec, client, report),
        )
    unique: dict[tuple[str, str], Problem] = {}
    for problem in report.problems:
        unique.setdefault((problem.field, problem.message), problem)
    ordered = sorted(unique.values(), key=_rank)  # answers arrive in any order; print in spec's
    report.problems = [Problem(p.field, redact(p.message)) for p in ordered]
    return report


async def read_route(config: RouterConfig, target: str, client: httpx.AsyncClient) -> Route | None:
    """The route the router holds for `target` now, through the worker's router client.

    Raises:
        BackendError: The router cannot be reached, refuses the read, or a secret is missing.
    """
    return await build_router(config, client).get_route(target)


def describe_route(route: Route | None) -> str:
    """A route in one line for humans: who wrote it and where the traffic goes."""
    if route is None:
        return "no route for the target yet"
    candidate = route.candidate.version if route.candidate else "-"
    return (
        f"route of rollout {route.rollout_id!r}, generation {route.generation}: "
        f"mode {route.mode.value}, {route.percent:g}% to candidate {candidate}, "
        f"incumbent {route.incumbent.version}"
    )


def first_live_variables(spec: RolloutSpec) -> dict[str, str] | None:
    """The template values of the first check of the first live (shadow or split) stage.

    The same values the workflow renders then: the stage's window is one check interval.
    None when every stage is offline (no trigger ever runs against monitoring).
    """
    body = spec.spec
    live = [stage for stage in body.stages if stage.mode is not StageMode.OFFLINE]
    if not live:
        return None
    stage = live[0]
    interval = f"{max(1, round(body.check_interval.total_seconds()))}s"
    percent = stage.percent or 0.0 if stage.mode is StageMode.SPLIT else 0.0
    return {
        "target": body.target,
        "incumbent": body.incumbent.version,
        "candidate": body.candidate.version,
        "rollout": spec.metadata.name,
        "stage": stage.name,
        "percent": f"{percent:g}",
        "stage_window": interval,
        "rollout_window": interval,
        "check_interval": interval,
    }


async def _check_router(
    spec: RolloutSpec, client: httpx.AsyncClient, report: PreflightReport
) -> None:
    config = spec.spec.router
    try:
        report.route = await read_route(config, spec.spec.target, client)
    except MissingCredential as exc:
        report.problems.append(Problem("spec.router.auth", _here(exc)))
    except RouterUnavailable as exc:
        report.problems.append(Problem("spec.router.url", _typed(exc)))
    except BackendError as exc:
        report.problems.append(
            Problem(
                "spec.router",
                f"{_typed(exc)}; the router must answer GET /v1/targets/<target>/route with a "
                "route or 404 (docs/router-contract.md)",
            )
        )
    else:
        report.router_answered = True


async def _check_candidate(
    spec: RolloutSpec, client: httpx.AsyncClient, report: PreflightReport
) -> None:
    uri = spec.spec.candidate.uri
    if not uri or not uri.startswith(("http://", "https://")):
        return  # a registry URI (or none): the router resolves it, preflight cannot ask
    try:
        await send(client, "GET", uri, deadline=CANDIDATE_DEADLINE)
    except Unreachable as exc:
        report.candidate_answered = False
        report.problems.append(
            Problem(
                "spec.candidate.uri",
                f"the candidate at {uri} {exc}; start the candidate's policy server, or fix "
                "candidate.uri",
            )
        )
    else:
        report.candidate_answered = True


async def _check_monitoring(
    spec: RolloutSpec, client: httpx.AsyncClient, report: PreflightReport
) -> None:
    body = spec.spec
    variables = first_live_variables(spec)
    if variables is None or not body.rollback_triggers:
        return
    try:
        provider = build_provider(body.monitoring, client)
    except BackendError as exc:
        report.problems.append(Problem("spec.monitoring.type", _typed(exc)))
        return
    probes: list[Awaitable[None]] = []
    for index, trigger in enumerate(body.rollback_triggers):
        where = f"spec.rollback_triggers[{index}]"
        if isinstance(trigger, ThresholdTrigger):
            probes.append(
                _probe(report, trigger.name, f"{where}.query",
                       _single(provider, trigger.query, variables))
            )  # fmt: skip
        for name in trigger.arm_metrics:
            metric = body.metric(name)
            for version in (variables["incumbent"], variables["candidate"]):
                probes.append(
                    _probe(report, trigger.name, f"{where}.{trigger.kind}.metric",
                           _arm(provider, metric, variables, version))
                )  # fmt: skip
        if isinstance(trigger, DriftTrigger):
            for version in (variables["incumbent"], variables["candidate"]):
                values = {**variables, "version": version}
                probes.append(
                    _probe(report, trigger.name, f"{where}.drift.by_action",
                           _by(provider, trigger.drift.by_action, values))
                )  # fmt: skip
        if isinstance(trigger, ShadowTrigger):
            probes.append(
                _probe(report, trigger.name, f"{where}.shadow.pairs",
                       _pairs(provider, trigger.shadow.pairs, variables))
            )  # fmt: skip
        probes += _guardrail_probes(spec, index, trigger, provider, variables, report)
    await asyncio.gather(*probes)


def _guardrail_probes(
    spec: RolloutSpec,
    index: int,
    trigger: RollbackTrigger,
    provider: MetricProvider,
    variables: dict[str, str],
    report: PreflightReport,
) -> list[Awaitable[None]]:
    """The queries a segments or spend trigger will send (a review trigger sends none)."""
    backend = spec.spec.monitoring_backend()
    where = f"spec.rollback_triggers[{index}].{trigger.kind}"
    probes: list[Awaitable[None]] = []
    for version in (variables["incumbent"], variables["candidate"]):
        values = {**variables, "version": version}
        if isinstance(trigger, SegmentsTrigger) and backend.segments is not None:
            values["segment_label"] = trigger.segments.label
            probes.append(
                _probe(report, trigger.name, where,
                       _by(provider, backend.segments.count, values, "segment"))
            )  # fmt: skip
        if isinstance(trigger, SpendTrigger) and backend.spend is not None:
            if version != variables["candidate"]:
                continue  # spend is the candidate's alone
            values["spend_field"] = trigger.spend.field
            probes.append(
                _probe(report, trigger.name, where, _single(provider, backend.spend, values))
            )
    return probes


async def _probe(
    report: PreflightReport,
    trigger: str,
    where: str,
    query: Awaitable[None],
) -> None:
    """Run one query probe; record an answer, or the problem in the field that causes it."""
    try:
        await query
    except NoDataError:
        report.queries += 1
        if trigger not in report.no_data:
            report.no_data.append(trigger)
    except MissingCredential as exc:
        report.problems.append(Problem("spec.monitoring.auth", _here(exc)))
    except ProviderUnavailable as exc:
        report.problems.append(Problem("spec.monitoring.url", _typed(exc)))
    except TemplateError as exc:
        report.problems.append(Problem(where, f"{exc}; use only lockgate's template variables"))
    except BackendError as exc:
        report.problems.append(Problem(where, f"trigger {trigger}: {_typed(exc)}"))
    else:
        report.queries += 1


async def _single(provider: MetricProvider, template: str, variables: dict[str, str]) -> None:
    await provider.query(render(template, variables))


async def _arm(
    provider: MetricProvider, metric: ArmMetric, variables: dict[str, str], version: str
) -> None:
    await arm_stats(provider, metric, variables, version)


async def _by(
    provider: MetricProvider, template: str, variables: dict[str, str], label: str = "action"
) -> None:
    await provider.query_by(render(template, variables), label)


async def _pairs(provider: MetricProvider, template: str, variables: dict[str, str]) -> None:
    await provider.query_pairs(render(template, variables), "incumbent_action", "candidate_action")


@contextlib.contextmanager
def _quiet_retries() -> Iterator[None]:
    """Silence the HTTP boundary's per-retry warnings: the report names every final failure.

    Without it a CLI user reads "GET ... failed (HTTP 503); retrying" lines above the report,
    each a partial duplicate of one of its problems.
    """
    logger = logging.getLogger(http_boundary.__name__)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


_SECTIONS = ("spec.router", "spec.candidate", "spec.monitoring")
_TRIGGER = re.compile(r"spec\.rollback_triggers\[(\d+)\]")


def _rank(problem: Problem) -> tuple[int, int]:
    """Router, candidate, monitoring, then triggers in spec order: the same list every time."""
    found = _TRIGGER.match(problem.field)
    if found:
        return len(_SECTIONS), int(found.group(1))
    for rank, prefix in enumerate(_SECTIONS):
        if problem.field.startswith(prefix):
            return rank, 0
    return len(_SECTIONS) + 1, 0


def _typed(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _here(exc: MissingCredential) -> str:
    return (
        f"{exc} (preflight reads the secret where it runs; run it with the worker's "
        "environment, or skip it with --no-preflight)"
    )


async def router_now(spec: RolloutSpec, client: httpx.AsyncClient | None = None) -> str:
    """What the router holds for the spec's target now, in one line; never raises.

    After `lockgate abandon`, nobody manages the route: this line is what the operator must
    check (or fix by hand). An unreachable router is said so, with the router's own error.
    """
    if client is None:
        async with http_client() as own:
            return await router_now(spec, own)
    url = spec.spec.router.url
    try:
        with _quiet_retries():  # the line below names the final failure
            route = await read_route(spec.spec.router, spec.spec.target, client)
    except BackendError as exc:
        return redact(
            f"cannot tell: the router at {url} did not answer ({_typed(exc)}); check the "
            "target's route by hand once it is back"
        )
    return f"{describe_route(route)} (router at {redact(url)})"

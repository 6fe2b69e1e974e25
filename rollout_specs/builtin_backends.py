"""The declarations of lockgate's own backend types, registered as entry points in pyproject.toml.

They live next to the spec rather than next to their implementations in `activities/` because
spec validation needs them everywhere a spec loads, the workflow sandbox included, where
`activities/` (httpx and friends) must not be imported; the implementations are named by
`module:attribute` and loaded by the worker's registry. A third-party type keeps its
declaration and its implementation in one module of its own package (docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from rollout_specs.backends import MonitoringBackend, RouterBackend, SegmentQueries
from rollout_specs.models import ArmMetric, HttpMonitoring, HttpRouter, PrometheusMonitoring

__all__ = [
    "BUILTIN_METRICS",
    "HTTP_MONITORING",
    "HTTP_ROUTER",
    "PROMETHEUS",
    "PROVIDERS",
    "ROUTERS",
]

# Built-in per-arm metrics: the reference gateway's counters. A spec can name them in statistical
# triggers without defining them; spec.metrics overrides or adds.
_ARM = 'target="{{target}}",version="{{version}}"'


def _increase(metric: str) -> str:
    return f"sum(increase({metric}{{{_ARM}}}[{{{{stage_window}}}}]))"


def _stats(stat: str) -> str:
    return f"{stat} target={{{{target}}}} version={{{{version}}}} window={{{{stage_window}}}}"


_ERRORS = f"({_increase('lockgate_decision_errors_total')} or vector(0))"
_VIOLATIONS = f"({_increase('lockgate_guardrail_violations_total')} or vector(0))"
_DECISIONS = _increase("lockgate_decisions_total")

_SEGMENT = 'target="{{target}}",version="{{version}}",label="{{segment_label}}"'


def _by_segment(metric: str, by: str = "segment") -> str:
    return f"sum by ({by}) (increase({metric}{{{_SEGMENT}}}[{{{{stage_window}}}}]))"


_PROMETHEUS_SEGMENTS = SegmentQueries(
    count=_by_segment("lockgate_segment_rewarded_decisions_total"),
    total=_by_segment("lockgate_segment_rewards_total"),
    total_squares=_by_segment("lockgate_segment_reward_squares_total"),
    decisions=_by_segment("lockgate_segment_decisions_total", "segment, action"),
)
"""One arm's rewards and decisions per value of a unit attribute (the gateway's counters)."""

PROMETHEUS = MonitoringBackend(
    type="prometheus",
    config=PrometheusMonitoring,
    implementation="activities.providers.prometheus:PrometheusProvider",
    label="Prometheus",
    by_label=True,
    pairs=True,
    metrics={
        "reward": ArmMetric(
            count=_increase("lockgate_rewarded_decisions_total"),
            total=_increase("lockgate_rewards_total"),
            total_squares=_increase("lockgate_reward_squares_total"),
        ),
        # Errors per attempt: an attempt that failed counts no decision, so count both.
        "errors": ArmMetric(
            count=f"{_DECISIONS} + {_ERRORS}", total=_ERRORS, higher_is_better=False
        ),
        "guardrail_violations": ArmMetric(
            count=_DECISIONS, total=_VIOLATIONS, higher_is_better=False
        ),
    },
    segments=_PROMETHEUS_SEGMENTS,
    spend=(
        'sum(increase(lockgate_action_value_total{target="{{target}}",version="{{version}}",'
        'field="{{spend_field}}"}[{{stage_window}}])) or vector(0)'
    ),
)
"""Prometheus's instant-query API: single values, per-action and paired tables."""

HTTP_MONITORING = MonitoringBackend(
    type="http",
    config=HttpMonitoring,
    implementation="activities.providers.http_json:HttpJsonProvider",
    label="HTTP JSON",
    metrics={
        "reward": ArmMetric(
            count=_stats("rewarded"),
            total=_stats("reward_sum"),
            total_squares=_stats("reward_squares"),
        ),
        "errors": ArmMetric(
            count=_stats("decisions"), total=_stats("errors"), higher_is_better=False
        ),
        "guardrail_violations": ArmMetric(
            count=_stats("decisions"), total=_stats("guardrail_violations"), higher_is_better=False
        ),
    },
    spend=(
        "action_value target={{target}} version={{version}} field={{spend_field}} "
        "window={{stage_window}}"
    ),
)
"""Any endpoint answering JSON with one number (the reference gateway's /v1/stats)."""

HTTP_ROUTER = RouterBackend(
    type="http",
    config=HttpRouter,
    implementation="activities.routers.http_router:HttpTrafficRouter",
    label="HTTP router",
    reviews=True,
)
"""lockgate's HTTP route contract (docs/router-contract.md)."""

PROVIDERS: Mapping[str, MonitoringBackend] = {b.type: b for b in (PROMETHEUS, HTTP_MONITORING)}
"""Built-in monitoring types, in the order messages list them."""
ROUTERS: Mapping[str, RouterBackend] = {HTTP_ROUTER.type: HTTP_ROUTER}
"""Built-in router types."""

BUILTIN_METRICS: Mapping[str, Mapping[str, ArmMetric]] = {
    backend.type: backend.metrics for backend in PROVIDERS.values()
}
"""Built-in metrics by monitoring type (the gateway's metric names and stats)."""

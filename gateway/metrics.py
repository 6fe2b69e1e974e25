"""The gateway's metrics, named as lockgate's default queries expect (Prometheus, `/v1/stats`).

Every event is recorded twice, once in prometheus-client counters on the gateway's own
`CollectorRegistry` (so two gateways in one process, as in tests, never share or collide) and
once in the windowed stats that answer the `http` monitoring provider.

    lockgate_decisions_total{target,arm,version,mode,action}
    lockgate_rewards_total{target,arm,version}
    lockgate_reward_squares_total{target,arm,version}
    lockgate_rewarded_decisions_total{target,arm,version}
    lockgate_guardrail_violations_total{target,arm,version,guardrail}
    lockgate_decision_errors_total{target,arm,version}
    lockgate_decision_latency_seconds{target,arm}        (histogram)
    lockgate_policy_latency_seconds{target,arm,version,mode}  (histogram; lockgate's addition)
    lockgate_shadow_agreements_total{target,agree}       (agree: "true" | "false")
    lockgate_shadow_pairs_total{target,incumbent_action,candidate_action}
    lockgate_guardrail_interventions_total{target,guardrail,kind}
    lockgate_action_value_total{target,arm,version,field}
    lockgate_segment_decisions_total{target,arm,version,label,segment,action}
    lockgate_segment_rewards_total{target,arm,version,label,segment}
    lockgate_segment_reward_squares_total{target,arm,version,label,segment}
    lockgate_segment_rewarded_decisions_total{target,arm,version,label,segment}
    lockgate_review_proposals_total{target,version}
    lockgate_review_verdicts_total{target,version,verdict}
    lockgate_review_dropped_total{target}
    lockgate_shadow_mirrors_dropped_total{target}

An intervention is a candidate decision a guardrail overruled (kind `blocked`, `review`, `value`,
`share`; in shadow, one it would have overruled), named by its guardrail: the action for
blocked, review and share, the parameter for value. `action_value` sums each numeric parameter
of served decisions by the arm that decided (a spend); a negative value is not added, since a
counter never goes down. Segments are unit attributes (gateway.segments), counted for served
decisions and their rewards.

Label values are bounded, so no caller can grow the registry without limit: targets are the
routed ones (bounded by `--max-targets`), versions come from routes, and actions (which policy
servers choose) are the first `max_actions` distinct ones seen per target; any later new action
is counted under the label `other` (OTHER_ACTION), and parameter names likewise. Segment labels
and values are bounded by gateway.segments. The decision itself is still served and answered
with its real action: only its metric label is folded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from gateway.segments import SegmentLabels, Segments
from gateway.stats import DEFAULT_RETENTION, WindowedStats

__all__ = ["DEFAULT_MAX_ACTIONS", "LATENCY_BUCKETS", "OTHER_ACTION", "GatewayMetrics"]

DEFAULT_MAX_ACTIONS = 32
"""Distinct action label values per target; a policy has a handful of actions."""
OTHER_ACTION = "other"
"""The label every action beyond a target's first `max_actions` is counted under."""

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, float("inf"),
)  # fmt: skip
"""Seconds; a decision is one or two loopback round trips, so the interesting range is 0.5-50ms."""

_ARM = ("target", "arm", "version")
_SEGMENT = (*_ARM, "label", "segment")

_Family = TypeVar("_Family", bound=MetricWrapperBase)


class GatewayMetrics:
    """Records what the gateway does, as Prometheus series and as windowed stats.

    Label children are cached per label tuple: the decide path records several events per
    request and `labels()` is a locked lookup each time.
    """

    def __init__(
        self, stats_retention: float = DEFAULT_RETENTION, max_actions: int = DEFAULT_MAX_ACTIONS
    ) -> None:
        if max_actions < 1:
            raise ValueError("max_actions must be at least 1")
        self.max_actions = max_actions
        self._actions: dict[str, set[str]] = {}
        self._fields: dict[str, set[str]] = {}
        self.segments = SegmentLabels()
        """The bounded segment labels of each target's units (gateway.segments)."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.stats = WindowedStats(retention=stats_retention)
        registry = self.registry
        self._decisions = Counter(
            "lockgate_decisions", "Decisions taken, by the arm and policy version that took them "
            "(mode=shadow: the candidate's mirrored decision, never served).",
            [*_ARM, "mode", "action"], registry=registry,
        )  # fmt: skip
        self._rewards = Counter(
            "lockgate_rewards", "Sum of the rewards of rewarded decisions.", _ARM,
            registry=registry,
        )  # fmt: skip
        self._reward_squares = Counter(
            "lockgate_reward_squares", "Sum of the squared rewards (for variances).", _ARM,
            registry=registry,
        )  # fmt: skip
        self._rewarded = Counter(
            "lockgate_rewarded_decisions", "Decisions whose reward arrived.", _ARM,
            registry=registry,
        )  # fmt: skip
        self._violations = Counter(
            "lockgate_guardrail_violations", "Blocked actions a policy picked; the incumbent's "
            "action was served instead (or, in shadow, nothing of the candidate's was).",
            [*_ARM, "guardrail"], registry=registry,
        )  # fmt: skip
        self._errors = Counter(
            "lockgate_decision_errors", "Policy calls that gave no action (down, timeout, bad "
            "answer).", _ARM, registry=registry,
        )  # fmt: skip
        self._latency = Histogram(
            "lockgate_decision_latency_seconds", "Time to answer a decide request, by the arm "
            "that served it.", ["target", "arm"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self._policy_latency = Histogram(
            "lockgate_policy_latency_seconds", "Time a policy server took to answer one call "
            "(answered or failed), by arm, version and mode: in shadow, the candidate's own "
            "latency, which no served decision shows.",
            [*_ARM, "mode"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self._agreements = Counter(
            "lockgate_shadow_agreements", "Shadow decisions where the candidate picked the "
            "incumbent's action (agree=true) or not.", ["target", "agree"], registry=registry,
        )  # fmt: skip
        self._pairs = Counter(
            "lockgate_shadow_pairs", "Shadow decisions by the incumbent's served action and the "
            "candidate's mirrored one: the paired table shadow triggers judge.",
            ["target", "incumbent_action", "candidate_action"], registry=registry,
        )  # fmt: skip
        self._interventions = Counter(
            "lockgate_guardrail_interventions", "Candidate decisions a guardrail overruled (the "
            "incumbent's decision was served; in shadow: would have overruled), by guardrail "
            "(action, or parameter for kind=value) and kind (blocked, review, value, share).",
            ["target", "guardrail", "kind"], registry=registry,
        )  # fmt: skip
        self._action_values = Counter(
            "lockgate_action_value", "Sum of each numeric parameter of served decisions (a "
            "spend), by the arm that decided; negative values are not added.",
            [*_ARM, "field"], registry=registry,
        )  # fmt: skip
        self._segment_decisions = Counter(
            "lockgate_segment_decisions", "Served decisions per unit segment (an attribute's "
            "value), by the arm that decided and the action served.",
            [*_SEGMENT, "action"], registry=registry,
        )  # fmt: skip
        self._segment_rewards = Counter(
            "lockgate_segment_rewards", "Sum of the rewards of rewarded decisions, per segment.",
            _SEGMENT, registry=registry,
        )  # fmt: skip
        self._segment_reward_squares = Counter(
            "lockgate_segment_reward_squares", "Sum of the squared rewards, per segment.",
            _SEGMENT, registry=registry,
        )  # fmt: skip
        self._segment_rewarded = Counter(
            "lockgate_segment_rewarded_decisions", "Decisions whose reward arrived, per segment.",
            _SEGMENT, registry=registry,
        )  # fmt: skip
        self._proposals = Counter(
            "lockgate_review_proposals", "Candidate decisions queued for human review.",
            ["target", "version"], registry=registry,
        )  # fmt: skip
        self._verdicts = Counter(
            "lockgate_review_verdicts", "Reviewed proposals, by verdict (approve, reject).",
            ["target", "version", "verdict"], registry=registry,
        )  # fmt: skip
        self._dropped = Counter(
            "lockgate_review_dropped", "Proposals dropped unreviewed: the queue was full "
            "(review.max_pending) and they were the oldest.", ["target"], registry=registry,
        )  # fmt: skip
        self._mirrors_dropped = Counter(
            "lockgate_shadow_mirrors_dropped", "Shadow decisions whose candidate call was never "
            "made: the batched mirror's queue was full (--shadow-mirror batched).", ["target"],
            registry=registry,
        )  # fmt: skip
        self._children: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}
        self._decided: dict[tuple[str, str, str, str, str], Counter] = {}

    def _child(self, family: _Family, labels: tuple[str, ...]) -> _Family:
        key = (id(family), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return cast(_Family, child)

    def action_label(self, target: str, action: str) -> str:
        """`action` as a label value: itself if among the target's first `max_actions`."""
        return self._bounded(self._actions, target, action)

    def field_label(self, target: str, field: str) -> str:
        """A parameter name as a label value: itself if among the target's first `max_actions`."""
        return self._bounded(self._fields, target, field)

    def _bounded(self, seen: dict[str, set[str]], target: str, value: str) -> str:
        """`value` if among the target's first `max_actions` distinct ones in `seen`, else other."""
        known = seen.get(target)
        if known is None:
            known = seen[target] = set()
        if value in known:
            return value
        if len(known) < self.max_actions:
            known.add(value)
            return value
        return OTHER_ACTION

    def decision(self, target: str, arm: str, version: str, mode: str, action: str) -> None:
        """A policy version took a decision (served it, or in shadow would have)."""
        # Once per decision, so its child is found by the event itself; only actions that are
        # their own label are remembered so, which bounds this memo as the labels are bounded.
        key = (target, arm, version, mode, action)
        child = self._decided.get(key)
        if child is None:
            label = self.action_label(target, action)
            child = self._child(self._decisions, (target, arm, version, mode, label))
            if label == action:
                self._decided[key] = child
        child.inc()
        self.stats.decision(target, version)

    def error(self, target: str, arm: str, version: str) -> None:
        """A policy version failed to give an action."""
        self._child(self._errors, (target, arm, version)).inc()
        self.stats.error(target, version)

    def violation(self, target: str, arm: str, version: str, guardrail: str) -> None:
        """A policy version picked `guardrail`, an action the route blocks."""
        guardrail = self.action_label(target, guardrail)
        self._child(self._violations, (target, arm, version, guardrail)).inc()
        self.stats.violation(target, version)

    def shadow_pair(self, target: str, incumbent_action: str, candidate_action: str) -> None:
        """In shadow, the incumbent's served action and the candidate's mirrored one."""
        agree = incumbent_action == candidate_action
        self._child(self._agreements, (target, "true" if agree else "false")).inc()
        incumbent_action = self.action_label(target, incumbent_action)
        candidate_action = self.action_label(target, candidate_action)
        self._child(self._pairs, (target, incumbent_action, candidate_action)).inc()

    def intervention(self, target: str, version: str, guardrail: str, kind: str) -> None:
        """A guardrail overruled (or in shadow would have) a decision of candidate `version`.

        `guardrail` is an action, or a parameter name for kind `value`; both come from the
        route's guardrails, and are folded like actions all the same.
        """
        if kind == "value":
            label = self.field_label(target, guardrail)
        else:
            label = self.action_label(target, guardrail)
        self._child(self._interventions, (target, label, kind)).inc()
        self.stats.intervention(target, version)

    def action_values(
        self, target: str, arm: str, version: str, params: Mapping[str, float]
    ) -> None:
        """A served decision's parameters, added to their sums by the arm that decided."""
        added: dict[str, float] = {}
        for field, value in params.items():
            if value >= 0:
                label = self.field_label(target, field)
                self._child(self._action_values, (target, arm, version, label)).inc(value)
                added[label] = added.get(label, 0.0) + value
        if added:
            self.stats.action_values(target, version, added)

    def segment_decision(
        self, target: str, arm: str, version: str, action: str, segments: Segments
    ) -> None:
        """A served decision, counted in each of the unit's segments."""
        action = self.action_label(target, action)
        for label, segment in segments:
            labels = (target, arm, version, label, segment, action)
            self._child(self._segment_decisions, labels).inc()

    def review_proposal(self, target: str, version: str) -> None:
        """A decision of candidate `version` was queued for review."""
        self._child(self._proposals, (target, version)).inc()

    def review_verdict(self, target: str, version: str, verdict: str) -> None:
        """A reviewer approved or rejected a proposal of `version`."""
        self._child(self._verdicts, (target, version, verdict)).inc()

    def review_dropped(self, target: str) -> None:
        """A proposal was dropped unreviewed (its queue was full)."""
        self._child(self._dropped, (target,)).inc()

    def mirror_dropped(self, target: str) -> None:
        """A shadow decision's candidate call was dropped: the mirror queue was full."""
        self._child(self._mirrors_dropped, (target,)).inc()

    def reward(
        self, target: str, arm: str, version: str, reward: float, segments: Segments = ()
    ) -> None:
        """A decision's reward arrived; it belongs to the arm and version that served it.

        `segments` are the decision's (gateway.segments), so the reward counts in each of them.

        Prometheus counters never decrease (a decrease reads as a restart), so rewards must be
        non-negative and finite; the HTTP layer refuses any reward outside the gateway's range
        before it gets here, and this refuses the rest rather than corrupt every sum.

        Raises:
            ValueError: The reward is negative, infinite or NaN.
        """
        if not 0 <= reward < float("inf"):
            raise ValueError(f"a reward must be a finite number >= 0, not {reward!r}")
        labels = (target, arm, version)
        self._child(self._rewards, labels).inc(reward)
        self._child(self._reward_squares, labels).inc(reward * reward)
        self._child(self._rewarded, labels).inc()
        for label, segment in segments:
            per_segment = (target, arm, version, label, segment)
            self._child(self._segment_rewards, per_segment).inc(reward)
            self._child(self._segment_reward_squares, per_segment).inc(reward * reward)
            self._child(self._segment_rewarded, per_segment).inc()
        self.stats.reward(target, version, reward)

    def latency(self, target: str, arm: str, seconds: float) -> None:
        """How long a decide request took, by the arm that served it."""
        self._child(self._latency, (target, arm)).observe(seconds)

    def policy_latency(
        self, target: str, arm: str, version: str, mode: str, seconds: float
    ) -> None:
        """How long one policy call took, answered or not (a timeout shows as its wait)."""
        self._child(self._policy_latency, (target, arm, version, mode)).observe(seconds)

    def exposition(self) -> bytes:
        """Every series in Prometheus' text format."""
        return generate_latest(self.registry)

"""Rollback triggers are a tagged union of kinds, and every analysis speaks one verdict type.

A trigger is written in YAML exactly as before (the kind is the key it holds); specs recorded in
workflow histories, which carry every kind's key with the unused ones null, still load; each
kind has a judge, and a kind without one is judged an error, never a pass.
"""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
import yaml
from pydantic import TypeAdapter

from activities import checks
from activities.contracts import CheckInput
from activities.contracts import Outcome as ContractOutcome
from activities.providers.base import Sample
from analysis.budget import reward_loss_upper_bound
from analysis.drift import action_drift, judge_drift
from analysis.offline import Estimate, judge
from analysis.review import review_rejections
from analysis.segments import compare_segments, fairness_ratio
from analysis.sequential import ArmStats, compare_means
from analysis.shadow import judge_shadow, paired_actions
from analysis.spend import judge_spend
from analysis.verdicts import Outcome
from rollout_specs import (
    TRIGGER_KINDS,
    BudgetTrigger,
    CompareTrigger,
    DriftTrigger,
    PrometheusMonitoring,
    RollbackTrigger,
    ShadowTrigger,
    SpecError,
    StageMode,
    ThresholdTrigger,
    TriggerKind,
    parse_spec,
)
from rollout_specs.models import ReviewTrigger, SegmentsTrigger, SpendTrigger

TRIGGERS: TypeAdapter[Any] = TypeAdapter(RollbackTrigger)

YAML_BY_KIND = {
    "threshold": """
        name: error-rate
        query: 'errors{target="{{target}}"}'
        threshold: {above: 0.01}
    """,
    "compare": """
        name: reward
        compare: {metric: reward, max_drop: 0.05, relative: true}
    """,
    "budget": """
        name: reward-budget
        budget: {max_reward_loss: 100}
        failure_limit: 2
    """,
    "drift": """
        name: action-drift
        drift: {max_js: 0.05}
    """,
    "shadow": """
        name: agreement
        shadow: {min_agreement: 0.8}
    """,
    "segments": """
        name: no-region-harmed
        segments: {label: region, max_drop: 0.1, relative: true,
                   fairness: {action: approve, min_ratio: 0.8}}
    """,
    "spend": """
        name: discount-spend
        spend: {field: amount, budget: 5000, stage_budget: 1000}
    """,
    "review": """
        name: reviewers
        review: {max_reject_share: 0.2}
    """,
}
DEFAULT_MODES = {
    "threshold": [StageMode.SHADOW, StageMode.SPLIT],
    "compare": [StageMode.SPLIT],
    "budget": [StageMode.SPLIT],
    "drift": [StageMode.SHADOW, StageMode.SPLIT],
    "shadow": [StageMode.SHADOW],
    "segments": [StageMode.SPLIT],
    "spend": [StageMode.SPLIT],
    "review": [StageMode.SPLIT],
}
CLASSES = {
    "threshold": ThresholdTrigger,
    "compare": CompareTrigger,
    "budget": BudgetTrigger,
    "drift": DriftTrigger,
    "shadow": ShadowTrigger,
    "segments": SegmentsTrigger,
    "spend": SpendTrigger,
    "review": ReviewTrigger,
}


def test_the_kinds_are_the_union_the_judges_and_the_literal() -> None:
    assert set(TRIGGER_KINDS) == set(get_args(TriggerKind)) == set(CLASSES)
    assert {kind: cls.kind for kind, cls in TRIGGER_KINDS.items()} == {k: k for k in CLASSES}


@pytest.mark.parametrize("kind", list(YAML_BY_KIND))
def test_every_kind_loads_from_the_yaml_written_today(kind: str) -> None:
    trigger = TRIGGERS.validate_python(yaml.safe_load(YAML_BY_KIND[kind]))

    assert type(trigger) is CLASSES[kind]
    assert trigger.kind == kind
    assert trigger.modes == DEFAULT_MODES[kind]
    assert trigger.statistical == (kind in ("compare", "budget", "segments", "review"))


def _recorded(kind: str) -> dict[str, Any]:
    """A trigger as histories recorded it: every kind's key, the unused ones null."""
    written = yaml.safe_load(YAML_BY_KIND[kind])
    every_key: dict[str, Any] = {
        "query": None,
        "threshold": None,
        "compare": None,
        "budget": None,
        "drift": None,
        "shadow": None,
        "failure_limit": 1,
        "modes": [mode.value for mode in DEFAULT_MODES[kind]],
    }
    return {**every_key, **written}


@pytest.mark.parametrize("kind", list(YAML_BY_KIND))
def test_a_recorded_trigger_with_every_key_and_nulls_loads_and_its_dump_loads_again(
    kind: str,
) -> None:
    recorded = json.dumps(_recorded(kind))

    trigger = TRIGGERS.validate_json(recorded)
    dumped = TRIGGERS.dump_json(trigger)

    assert type(trigger) is CLASSES[kind]
    assert trigger == TRIGGERS.validate_python(yaml.safe_load(YAML_BY_KIND[kind]))
    assert TRIGGERS.validate_json(dumped) == trigger
    assert not any(value is None for value in json.loads(dumped).values())


def _spec_problems(trigger: dict[str, Any]) -> list[str]:
    document = {
        "apiVersion": "lockgate/v1",
        "kind": "Rollout",
        "metadata": {"name": "r"},
        "spec": {
            "target": "ranker",
            "incumbent": {"version": "41"},
            "candidate": {"version": "42"},
            "router": {"type": "http", "url": "http://127.0.0.1:8080"},
            "monitoring": {"type": "prometheus", "url": "http://127.0.0.1:9090"},
            "stages": [{"name": "full", "percent": 100, "min_duration": "1h"}],
            "rollback_triggers": [trigger],
        },
    }
    with pytest.raises(SpecError) as caught:
        parse_spec(document, "spec.yaml")
    return caught.value.problems


def test_errors_inside_a_kind_keep_the_path_the_engineer_wrote() -> None:
    problems = _spec_problems({"name": "reward", "compare": {"metric": "reward", "max_dorp": 1}})

    assert (
        "spec.rollback_triggers[0].compare.max_dorp: unknown key 'max_dorp'; did you mean "
        "`max_drop`?" in problems
    )
    assert "spec.rollback_triggers[0].compare.max_drop: required field is missing" in problems


def test_a_trigger_of_no_kind_names_the_kinds_and_its_misspelt_key() -> None:
    problems = _spec_problems({"name": "reward", "compar": {"metric": "reward"}})

    assert problems == [
        "spec.rollback_triggers[0].compar: unknown key 'compar'; did you mean `compare`?",
        "spec.rollback_triggers[0]: a trigger is one of: `query` with `threshold`, `compare`, "
        "`budget`, `drift`, `shadow`, `segments`, `spend` or `review`; this one has none of them",
    ]


def test_a_trigger_of_two_kinds_is_refused() -> None:
    problems = _spec_problems(
        {
            "name": "x",
            "compare": {"metric": "reward", "max_drop": 1},
            "budget": {"max_reward_loss": 1},
        }
    )

    assert problems == [
        "spec.rollback_triggers[0]: a trigger is one of: `query` with `threshold`, `compare`, "
        "`budget`, `drift`, `shadow`, `segments`, `spend` or `review`; this one has compare and "
        "budget"
    ]


def test_a_trigger_that_is_not_a_mapping_is_refused() -> None:
    problems = _spec_problems(["query", "threshold"])  # type: ignore[arg-type]

    assert problems == ["spec.rollback_triggers[0]: expected a mapping (key: value), got a list"]


# ------------------------------------------------------------------------------- judges


def test_every_kind_has_a_judge() -> None:
    assert set(checks.JUDGES) == set(TRIGGER_KINDS)


class _Silent:
    """A provider that must never be asked anything: the judge lookup fails before any query."""

    async def query(self, query: str) -> Sample:
        raise AssertionError("no judge may query")

    async def query_by(self, query: str, label: str) -> dict[str, float]:
        raise AssertionError("no judge may query")

    async def query_pairs(
        self, query: str, first: str, second: str
    ) -> dict[tuple[str, str], float]:
        raise AssertionError("no judge may query")


async def test_a_kind_without_a_judge_is_an_error_never_a_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trigger = TRIGGERS.validate_python(yaml.safe_load(YAML_BY_KIND["compare"]))
    monkeypatch.setattr(checks, "JUDGES", {})
    check = CheckInput(
        monitoring=PrometheusMonitoring(type="prometheus", url="http://127.0.0.1:9"),
        triggers=[trigger],
        variables={"target": "ranker", "incumbent": "41", "candidate": "42"},
    )

    verdict = await checks._Judge(_Silent(), check).trigger(trigger)

    assert verdict.outcome is Outcome.ERROR
    assert "no judge for compare triggers" in verdict.detail


# ------------------------------------------------------------------------- one verdict type


def test_the_contracts_outcome_is_the_analyses_outcome() -> None:
    assert ContractOutcome is Outcome
    assert [o.value for o in Outcome] == ["pass", "fail", "inconclusive", "error"]


def test_every_analysis_returns_the_one_verdict_type() -> None:
    incumbent, candidate = ArmStats(10_000, 10_000.0, 20_000.0), ArmStats(500, 500.0, 1_000.0)
    drift = action_drift({"a": 500, "b": 500}, {"a": 480, "b": 520}, min_per_side=10)
    pairs = paired_actions({("a", "a"): 900, ("a", "b"): 100}, alpha=0.01)
    difference = Estimate(value=0.1, se=0.01, lower=0.08, upper=0.12, alpha=0.05)

    verdicts = [
        compare_means(
            incumbent, candidate, max_drop=0.1, relative=False, alpha=0.05, expected_n=10_500
        ).verdict,
        reward_loss_upper_bound(
            incumbent, candidate, max_reward_loss=1_000, alpha=0.05, expected_n=10_500
        ).verdict,
        judge(difference, max_regression=0.05),
        judge_drift(drift, max_js=0.05)[0],
        judge_shadow(pairs, min_samples=100, alpha=0.01, min_agreement=0.5)[0],
        compare_segments(
            {"eu": incumbent},
            {"eu": candidate},
            max_drop=0.1,
            relative=False,
            alpha=0.05,
            expected_n=10_500,
        ).verdict,
        fairness_ratio(
            {"eu": (50, 100), "us": (50, 100)},
            {"eu": (50, 100), "us": (50, 100)},
            min_ratio=0.8,
            max_ratio_drop=None,
            alpha=0.05,
        ).verdict,
        review_rejections(1, 100, max_reject_share=0.2, alpha=0.05).verdict,
        judge_spend(
            10.0, 5.0, budget=100.0, stage_budget=None, stage_elapsed_s=60.0, stage_left_s=0.0
        ).verdict,
    ]

    assert all(type(verdict) is Outcome for verdict in verdicts), verdicts
    assert Outcome.PASS in verdicts  # the budget's old "ok" is a pass like every other

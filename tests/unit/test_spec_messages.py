"""Validation messages in lockgate's words: unknown keys never hidden and matched to the key that
was meant, every type error naming what belongs there, and hints that propose a real change."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rollout_specs import RolloutSpec, parse_spec
from rollout_specs.loader import MAX_PROBLEM_CHARS
from tests.unit.test_spec_validation import FULL, problems, stage, variant

TRIGGER = {
    "name": "error-rate",
    "query": 'errors{target="{{target}}",version="{{candidate}}"}[{{stage_window}}]',
    "threshold": {"above": 0.01},
}
COMPARE = {"name": "reward", "compare": {"metric": "reward", "max_drop": 0.1}}

# ------------------------------------------------------------------------------ unknown keys


def test_a_misspelt_min_duration_is_reported_as_unknown_with_the_key_meant() -> None:
    document = variant(
        {"spec.stages": [{"name": "canary", "percent": 5, "min_durration": "30m"}, FULL]}
    )

    assert problems(document) == [
        "spec.stages[0].min_duration: a shadow or split stage needs `min_duration` (its bake "
        "time), e.g. min_duration: 30m",
        "spec.stages[0].min_durration: unknown key 'min_durration'; did you mean `min_duration`?",
    ]


def test_unknown_keys_are_reported_next_to_other_rules_of_the_block() -> None:
    document = variant(
        {"spec.stages": [{"name": "canary", "percent": 500, "bake": "1h", "scpoe": {}}, FULL]}
    )

    lines = problems(document)

    assert "spec.stages[0].percent: must be at most 100, got 500" in lines
    assert "spec.stages[0].scpoe: unknown key 'scpoe'; did you mean `scope`?" in lines
    assert any(line.startswith("spec.stages[0].bake: unknown key 'bake'; ") for line in lines)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {"spec.monitoring.timout": "5s"},
            "spec.monitoring.timout: unknown key 'timout'; did you mean `timeout`?",
            id="discriminated-union-member",
        ),
        pytest.param(
            {"apiversion": "lockgate/v1"},
            "apiversion: unknown key 'apiversion'; did you mean `apiVersion`?",
            id="alias",
        ),
        pytest.param(
            {"spec.rollback_triggers.0.treshold": {"above": 1}},
            "spec.rollback_triggers[0].treshold: unknown key 'treshold'; did you mean `threshold`?",
            id="list-item",
        ),
        pytest.param(
            {"spec.stages.0.approval": {"aprovers": ["ana"]}},
            "spec.stages[0].approval.aprovers: unknown key 'aprovers'; did you mean `approvers`?",
            id="nested-block",
        ),
        pytest.param(
            {"spec.zzz": 1},
            "spec.zzz: unknown key 'zzz'; the keys here are alpha, candidate, check_interval, "
            "guardrails, holdback, incumbent, metrics, missing_data_limit, monitoring, notify, "
            "on_missing_data, rollback_triggers, router, stages, target",
            id="no-close-key",
        ),
    ],
)
def test_unknown_key_names_the_key_meant(changes: dict[str, Any], expected: str) -> None:
    lines = problems(variant(changes))

    assert expected in lines, lines


# ------------------------------------------------------------------------------- type errors


@pytest.mark.parametrize(
    ("error_type", "path", "value", "expected"),
    [
        (
            "string_type",
            "spec.candidate.version",
            42,
            'spec.candidate.version: expected text (a version like "42" in quotes), got a '
            "number (42)",
        ),
        (
            "string_type",
            "metadata.owner",
            True,
            'metadata.owner: expected text (write it in quotes, like "true"), got a boolean (true)',
        ),
        (
            "int_type",
            "spec.rollback_triggers.0.failure_limit",
            [1],
            "spec.rollback_triggers[0].failure_limit: expected a whole number like 5, got a list",
        ),
        (
            "int_parsing",
            "spec.missing_data_limit",
            "many",
            "spec.missing_data_limit: expected a whole number like 5, got a string ('many')",
        ),
        (
            "int_from_float",
            "spec.stages.0.expected_samples",
            1.5,
            "spec.stages[0].expected_samples: expected a whole number like 5, got a number (1.5); "
            "drop the fraction",
        ),
        (
            "float_type",
            "spec.stages.0.percent",
            [5],
            "spec.stages[0].percent: expected a number like 0.01, got a list",
        ),
        (
            "float_parsing",
            "spec.alpha",
            "five",
            "spec.alpha: expected a number like 0.01, got a string ('five')",
        ),
        (
            "bool_type",
            "spec.metrics",
            {"latency": {"count": "c", "total": "t", "higher_is_better": [True]}},
            "spec.metrics.latency.higher_is_better: expected true or false, got a list",
        ),
        (
            "bool_parsing",
            "spec.metrics",
            {"latency": {"count": "c", "total": "t", "higher_is_better": "maybe"}},
            "spec.metrics.latency.higher_is_better: expected true or false, got a string ('maybe')",
        ),
        (
            "list_type",
            "spec.stages",
            {"canary": 1},
            "spec.stages: expected a list ([a, b] or one `- item` per line), got a mapping "
            "(key: value)",
        ),
        (
            "dict_type",
            "metadata.labels",
            ["team"],
            "metadata.labels: expected a mapping (key: value), got a list",
        ),
        (
            "model_type",
            "spec.guardrails",
            "none",
            "spec.guardrails: expected a mapping (key: value), got a string ('none')",
        ),
        (
            "model_attributes_type",
            "spec.router",
            "http://127.0.0.1:8080",
            "spec.router: expected a mapping (key: value), got a string ('http://127.0.0.1:8080')",
        ),
        (
            "time_delta_parsing",
            "spec.stages.0.min_duration",
            "P5X",
            "spec.stages[0].min_duration: expected a duration like 30s, 5m, 1h or 1h30m, got a "
            "string ('P5X')",
        ),
        (
            "greater_than",
            "spec.stages.0.percent",
            0,
            "spec.stages[0].percent: must be greater than 0, got 0",
        ),
        (
            "greater_than_equal",
            "spec.rollback_triggers.0.failure_limit",
            0,
            "spec.rollback_triggers[0].failure_limit: must be at least 1, got 0",
        ),
        ("less_than", "spec.alpha", 0.5, "spec.alpha: must be less than 0.5, got 0.5"),
        (
            "less_than_equal",
            "spec.stages.1.percent",
            101,
            "spec.stages[1].percent: must be at most 100, got 101",
        ),
        ("too_short", "spec.stages", [], "spec.stages: needs at least 1 item, got 0"),
        (
            "too_long",
            "spec.guardrails",
            {"blocked_actions": ["a"] * 1001},
            "spec.guardrails.blocked_actions: may hold at most 1000 items, got 1001; remove some",
        ),
        (
            "too_long",
            "metadata.labels",
            {f"k{i}": "v" for i in range(65)},
            "metadata.labels: may hold at most 64 entries; remove some",
        ),
        (
            "string_too_short",
            "spec.stages.0.approval",
            {"approvers": [""]},
            "spec.stages[0].approval.approvers[0]: must not be empty; write a value or remove "
            "the key",
        ),
        (
            "string_too_long",
            "metadata.owner",
            "o" * 257,
            "metadata.owner: must be at most 256 characters long (it has 257); shorten it",
        ),
    ],
)
def test_type_errors_say_what_is_expected(
    error_type: str, path: str, value: Any, expected: str
) -> None:
    document = variant({path: value})
    with pytest.raises(ValidationError) as raw:
        RolloutSpec.model_validate(document)
    assert error_type in {error["type"] for error in raw.value.errors()}

    lines = problems(document)

    assert expected in lines, lines
    assert not any("should" in line or "Input" in line for line in lines), lines


def test_problem_lines_stay_short_single_lines() -> None:
    document = variant(
        {
            "metadata.owner": 7,
            "spec.stages": [{"name": "x" * 300, "percent": "many", "min_durration": "1h"}],
            "spec.rollback_triggers": [{"name": "t", "query": ["q"] * 50, "threshold": []}],
        }
    )

    lines = problems(document)

    assert len(lines) >= 4
    assert all("\n" not in line and len(line) < MAX_PROBLEM_CHARS for line in lines), lines


# --------------------------------------------------------------------- the 100% stage hint


def test_statistical_triggers_at_full_traffic_ask_for_a_query_trigger() -> None:
    document = variant({"spec.rollback_triggers": [COMPARE]})

    (line,) = problems(document)

    assert line.startswith("spec.stages[1]: the triggers that judge split stages ('reward') ")
    assert "at percent: 100 with no scope no incumbent traffic is left" in line
    assert line.endswith(
        "add a trigger with `query` and `threshold` (e.g. {name: error-rate, query: '...', "
        "threshold: {above: 0.01}}); it judges shadow and split stages by default"
    )
    assert "add 'split' to a trigger's `modes`" not in line  # the compare trigger has it


def test_full_traffic_hint_names_the_query_trigger_that_lacks_the_mode() -> None:
    shadow_only = {**TRIGGER, "modes": ["shadow"]}
    document = variant({"spec.rollback_triggers": [COMPARE, shadow_only]})

    (line,) = problems(document)  # the compare trigger judges the canary at 1%

    assert line.startswith("spec.stages[1]: the triggers that judge split stages ('reward') ")
    assert line.endswith("add 'split' to the `modes` of 'error-rate'")


def test_the_fix_the_hint_proposes_makes_the_spec_load() -> None:
    parse_spec(variant({"spec.rollback_triggers": [COMPARE, TRIGGER]}), "spec.yaml")


def test_a_stage_mode_no_trigger_judges_still_asks_for_the_mode() -> None:
    document = variant(
        {
            "spec.stages": [stage("shadow", mode="shadow"), stage("canary", 5), FULL],
            "spec.rollback_triggers": [{**TRIGGER, "modes": ["split"]}],
        }
    )

    assert problems(document) == [
        "spec.stages[0]: no rollback trigger judges shadow stages, so stage 'shadow' could only "
        "advance on silence; add 'shadow' to a trigger's `modes`"
    ]

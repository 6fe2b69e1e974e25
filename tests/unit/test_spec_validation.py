"""Every validation rule of the spec language, pinned to the exact line a release engineer reads."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout_specs import MissingDataPolicy, RolloutSpec, SpecError, load_spec, parse_spec

SOURCE = "spec.yaml"
DURATION_HINT = "write a duration like 30s, 5m, 1h or 1h30m"
SLUG_HINT = "use lowercase letters, digits and '-' (like ranker-v42), at most 63 characters"
UNKNOWN_KEY = "check its spelling against `lockgate schema`"
LAST_STAGE = (
    "the last stage must serve percent: 100 with no scope, so the candidate is proven at full "
    "traffic before it becomes the incumbent; add a stage like "
    "{name: full, percent: 100, min_duration: 1h}"
)
STRICTLY_INCREASE = "percentages must strictly increase"
SAME_VERSION = "the candidate is the incumbent ('41'); roll out a different version"

BASE: dict[str, Any] = {
    "apiVersion": "lockgate/v1",
    "kind": "Rollout",
    "metadata": {"name": "ranker-v42", "owner": "ranking-team"},
    "spec": {
        "target": "ranker",
        "incumbent": {"version": "41"},
        "candidate": {"version": "42"},
        "router": {"type": "http", "url": "http://127.0.0.1:8080"},
        "monitoring": {"type": "prometheus", "url": "http://127.0.0.1:9090"},
        "stages": [
            {"name": "canary", "percent": 1, "min_duration": "1h"},
            {"name": "full", "percent": 100, "min_duration": "2h"},
        ],
        "rollback_triggers": [
            {
                "name": "error-rate",
                "query": 'errors{target="{{target}}",version="{{candidate}}"}[{{stage_window}}]',
                "threshold": {"above": 0.01},
            }
        ],
    },
}


def _locate(document: dict[str, Any], path: str) -> tuple[Any, str | int]:
    """Return the container and key that `spec.stages.0.percent` points at."""
    *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
    node: Any = document
    for part in parents:
        node = node[part]
    return node, last


def variant(
    changes: Mapping[str, Any] | None = None, *, drop: Iterable[str] = ()
) -> dict[str, Any]:
    """A deep copy of BASE with dotted paths set to new values and others removed."""
    document = copy.deepcopy(BASE)
    for path, value in (changes or {}).items():
        node, key = _locate(document, path)
        node[key] = copy.deepcopy(value)
    for path in drop:
        node, key = _locate(document, path)
        del node[key]
    return document


def problems(document: Any) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(document, SOURCE)
    assert caught.value.source == SOURCE
    return caught.value.problems


def stage(name: str, percent: float | None = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "min_duration": "1h", **fields}
    if percent is not None:
        out["percent"] = percent
    return out


FULL = stage("full", 100)


def test_base_document_is_valid_and_fills_the_defaults() -> None:
    spec = parse_spec(variant(), SOURCE)

    assert spec.workflow_id == "rollout-ranker"
    assert spec.spec.check_interval == timedelta(seconds=30)
    assert spec.spec.on_missing_data is MissingDataPolicy.HOLD
    assert spec.spec.missing_data_limit == 5
    assert spec.spec.rollback_triggers[0].failure_limit == 1
    assert spec.spec.stages[0].mode == "split"
    assert spec.spec.stages[0].max_duration is None
    assert spec.spec.router.timeout == timedelta(seconds=5)
    assert spec.spec.monitoring.timeout == timedelta(seconds=10)


REJECTED = [
    # Unknown keys, at every depth.
    pytest.param(
        variant({"replicas": 3}),
        ["replicas: unknown key 'replicas'; the keys here are apiVersion, kind, metadata, spec"],
        id="top-key",
    ),
    pytest.param(
        variant({"spec.monitoring.timout": "5s"}),
        ["spec.monitoring.timout: unknown key 'timout'; did you mean `timeout`?"],
        id="monitoring-key",
    ),
    pytest.param(
        variant({"spec.stages.0.precent": 5}),
        ["spec.stages[0].precent: unknown key 'precent'; did you mean `percent`?"],
        id="stage-key",
    ),
    pytest.param(
        variant({"spec.rollback_triggers.0.threshold.over": 1}),
        ["spec.rollback_triggers[0].threshold.over: unknown key 'over'; did you mean `above`?"],
        id="threshold-key",
    ),
    # Missing required fields.
    pytest.param(variant(drop=["kind"]), ["kind: required field is missing"], id="no-kind"),
    pytest.param(
        variant(drop=["metadata.name"]), ["metadata.name: required field is missing"], id="no-name"
    ),
    pytest.param(
        variant(drop=["spec.target"]), ["spec.target: required field is missing"], id="no-target"
    ),
    pytest.param(
        variant(drop=["spec.stages.0.min_duration"]),
        [
            "spec.stages[0].min_duration: a shadow or split stage needs `min_duration` (its bake "
            "time), e.g. min_duration: 30m"
        ],
        id="no-min-duration",
    ),
    pytest.param(
        variant(drop=["spec.rollback_triggers.0.threshold"]),
        ["spec.rollback_triggers[0]: `query` and `threshold` go together; give both"],
        id="no-threshold",
    ),
    # Document identity.
    pytest.param(
        variant({"apiVersion": "lockgate/v2"}),
        ["apiVersion: use 'lockgate/v1' (got 'lockgate/v2')"],
        id="api-version",
    ),
    pytest.param(
        variant({"kind": "Deployment"}), ["kind: use 'Rollout' (got 'Deployment')"], id="kind"
    ),
    # Type tags of the pluggable blocks.
    pytest.param(
        variant({"spec.router.type": "istio"}),
        ["spec.router: unknown type 'istio'; use one of 'http'"],
        id="router-type",
    ),
    pytest.param(
        variant({"spec.monitoring.type": "datadog"}),
        ["spec.monitoring: unknown type 'datadog'; use one of 'prometheus', 'http'"],
        id="monitoring-type",
    ),
    pytest.param(
        variant(drop=["spec.monitoring.type"]),
        ["spec.monitoring.type: required field is missing; use one of 'prometheus', 'http'"],
        id="monitoring-no-type",
    ),
    pytest.param(
        variant({"spec.monitoring.url": "127.0.0.1:9090"}),
        [
            "spec.monitoring.url: '127.0.0.1:9090' is not an http(s) URL; "
            "write it like http://127.0.0.1:8080"
        ],
        id="monitoring-url",
    ),
    # Durations.
    pytest.param(
        variant({"spec.check_interval": "30 seconds"}),
        [f"spec.check_interval: '30 seconds' is not a duration; {DURATION_HINT}"],
        id="duration-words",
    ),
    pytest.param(
        variant({"spec.check_interval": "5"}),
        [f"spec.check_interval: '5' is not a duration; {DURATION_HINT}"],
        id="duration-quoted-number",
    ),
    pytest.param(
        variant({"spec.check_interval": 5}),
        [f"spec.check_interval: 5 has no unit; {DURATION_HINT}"],
        id="duration-bare-number",
    ),
    pytest.param(
        variant({"spec.check_interval": ""}),
        [f"spec.check_interval: '' is not a duration; {DURATION_HINT}"],
        id="duration-empty",
    ),
    pytest.param(
        variant({"spec.stages.0.min_duration": "-PT5M"}),
        [f"spec.stages[0].min_duration: '-PT5M' is not a duration; {DURATION_HINT}"],
        id="duration-negative",
    ),
    pytest.param(
        variant({"spec.check_interval": "500ms"}),
        ["spec.check_interval: check_interval must be at least 1s (the server's timer resolution)"],
        id="check-interval-below-1s",
    ),
    # Triggers.
    pytest.param(
        variant({"spec.rollback_triggers": []}),
        [
            "spec.rollback_triggers: a rollout needs at least one rollback trigger; add one, e.g. "
            "{name: error-rate, query: '...', threshold: {above: 0.01}}"
        ],
        id="no-triggers",
    ),
    pytest.param(
        variant(drop=["spec.rollback_triggers"]),
        [
            "spec.rollback_triggers: a rollout needs at least one rollback trigger; add one, e.g. "
            "{name: error-rate, query: '...', threshold: {above: 0.01}}"
        ],
        id="triggers-omitted",
    ),
    pytest.param(
        variant(
            {"spec.rollback_triggers": BASE["spec"]["rollback_triggers"] * 2},
        ),
        ["spec.rollback_triggers[1].name: trigger name 'error-rate' is used twice; rename one"],
        id="duplicate-trigger",
    ),
    pytest.param(
        variant({"spec.rollback_triggers.0.threshold": {}}),
        [
            "spec.rollback_triggers[0].threshold: "
            "a threshold needs `above`, `below`, or both (a range)"
        ],
        id="threshold-unbounded",
    ),
    pytest.param(
        variant({"spec.rollback_triggers.0.threshold": {"below": 2, "above": 1}}),
        [
            "spec.rollback_triggers[0].threshold: below (2.0) must be less than above (1.0); "
            "the healthy range is between them"
        ],
        id="threshold-range-inverted",
    ),
    pytest.param(
        variant({"spec.rollback_triggers.0.threshold": {"below": 1, "above": 1}}),
        [
            "spec.rollback_triggers[0].threshold: below (1.0) must be less than above (1.0); "
            "the healthy range is between them"
        ],
        id="threshold-range-empty",
    ),
    pytest.param(
        variant({"spec.rollback_triggers.0.failure_limit": 0}),
        ["spec.rollback_triggers[0].failure_limit: must be at least 1, got 0"],
        id="failure-limit-zero",
    ),
    pytest.param(
        variant({"spec.rollback_triggers.0.query": 'errors{version="{{candiate}}"}'}),
        [
            "spec.rollback_triggers[0].query: unknown query variable {{candiate}}; the variables "
            "are {{target}}, {{incumbent}}, {{candidate}}, {{rollout}}, {{stage}}, {{percent}}, "
            "{{stage_window}}, {{rollout_window}}, {{check_interval}}, {{version}}"
        ],
        id="unknown-template-variable",
    ),
    pytest.param(
        variant({"spec.rollback_triggers.0.query": 'errors{version="{{version}}"}'}),
        [
            "spec.rollback_triggers[0].query: {{version}} is only for a metric's per-arm queries "
            "(spec.metrics); use {{candidate}} or {{incumbent}} here"
        ],
        id="version-outside-metrics",
    ),
    # Stages.
    pytest.param(
        variant({"spec.stages": [stage("canary", 1), stage("canary", 5), FULL]}),
        ["spec.stages[1].name: stage name 'canary' is used twice; rename one"],
        id="duplicate-stage",
    ),
    pytest.param(
        variant({"spec.stages": [stage("canary", 5), stage("again", 5), FULL]}),
        [
            "spec.stages[1].percent: 5 is not greater than the previous stage's 5; "
            f"{STRICTLY_INCREASE}"
        ],
        id="percent-equal",
    ),
    pytest.param(
        variant({"spec.stages": [stage("canary", 5), stage("less", 2.5), FULL]}),
        [
            "spec.stages[1].percent: 2.5 is not greater than the previous stage's 5; "
            f"{STRICTLY_INCREASE}"
        ],
        id="percent-decreasing",
    ),
    pytest.param(
        variant({"spec.stages.0.percent": 0}),
        ["spec.stages[0].percent: must be greater than 0, got 0"],
        id="percent-zero",
    ),
    pytest.param(
        variant({"spec.stages.1.percent": 101}),
        ["spec.stages[1].percent: must be at most 100, got 101"],
        id="percent-over-100",
    ),
    pytest.param(
        variant(drop=["spec.stages.0.percent"]),
        ["spec.stages[0].percent: a split stage needs `percent` (0 < percent <= 100)"],
        id="split-without-percent",
    ),
    pytest.param(
        variant({"spec.stages.0.mode": "shadow"}),
        [
            "spec.stages[0].percent: a shadow stage serves no traffic; "
            "remove `percent` or use `mode: split`"
        ],
        id="shadow-with-percent",
    ),
    pytest.param(
        variant({"spec.stages.0.mode": "canary"}),
        ["spec.stages[0].mode: use 'offline', 'shadow' or 'split' (got 'canary')"],
        id="unknown-mode",
    ),
    pytest.param(
        variant({"spec.stages": [stage("canary", 1), stage("shadow", mode="shadow"), FULL]}),
        [
            "spec.stages[1].mode: a shadow stage after a split stage would take traffic away "
            "from a serving candidate; put shadow stages first"
        ],
        id="shadow-after-split",
    ),
    pytest.param(
        variant({"spec.stages.1.percent": 50}), [f"spec.stages[1]: {LAST_STAGE}"], id="last-50"
    ),
    pytest.param(
        variant({"spec.stages.1.scope": {"region": ["eu-west-1"]}}),
        [f"spec.stages[1]: {LAST_STAGE}"],
        id="last-scoped",
    ),
    pytest.param(
        variant({"spec.stages": [stage("shadow", mode="shadow")]}),
        [f"spec.stages[0]: {LAST_STAGE}"],
        id="only-shadow",
    ),
    pytest.param(
        variant({"spec.stages": []}),
        ["spec.stages: needs at least 1 item, got 0"],
        id="no-stages",
    ),
    pytest.param(
        variant({"spec.stages.1": "full"}),
        ["spec.stages[1]: expected a mapping (key: value), got a string ('full')"],
        id="stage-not-mapping",
    ),
    pytest.param(
        variant({"spec.stages.0.max_duration": "30m"}),
        [
            "spec.stages[0].max_duration: "
            "max_duration is shorter than min_duration; make it at least as long"
        ],
        id="max-below-min",
    ),
    pytest.param(
        variant({"spec.stages.0.scope": {}}),
        ["spec.stages[0].scope: an empty scope selects nothing; remove `scope` or add a label"],
        id="empty-scope",
    ),
    pytest.param(
        variant({"spec.stages.0.scope": {"region": []}}),
        ["spec.stages[0].scope: scope label 'region' has no values; list at least one"],
        id="scope-label-without-values",
    ),
    # Missing data.
    pytest.param(
        variant({"spec.on_missing_data": "advance"}),
        ["spec.on_missing_data: use 'hold' or 'rollback' (got 'advance')"],
        id="on-missing-data",
    ),
    pytest.param(
        variant({"spec.missing_data_limit": 0}),
        ["spec.missing_data_limit: must be at least 1, got 0"],
        id="missing-data-limit",
    ),
    # Versions and names.
    pytest.param(
        variant({"spec.candidate.version": "41"}),
        [f"spec.candidate.version: {SAME_VERSION}"],
        id="candidate-is-incumbent",
    ),
    pytest.param(
        variant({"metadata.name": "Ranker_V42"}),
        [f"metadata.name: 'Ranker_V42' is not a valid name; {SLUG_HINT}"],
        id="name-not-slug",
    ),
    pytest.param(
        variant({"spec.target": "-ranker"}),
        [f"spec.target: '-ranker' is not a valid name; {SLUG_HINT}"],
        id="target-not-slug",
    ),
    pytest.param(
        variant({"spec.stages.0.name": "Canary 1"}),
        [f"spec.stages[0].name: 'Canary 1' is not a valid name; {SLUG_HINT}"],
        id="stage-name-not-slug",
    ),
    pytest.param(
        variant({"metadata.name": "r" * 64}),
        ["metadata.name: must be at most 63 characters long (it has 64); shorten it"],
        id="name-too-long",
    ),
    pytest.param(
        variant({"spec": "ranker"}),
        ["spec: expected a mapping (key: value), got a string ('ranker')"],
        id="spec-not-mapping",
    ),
    pytest.param(
        variant(
            {
                "spec.stages": [stage("shadow", mode="shadow"), stage("full", 100)],
                "spec.rollback_triggers.0.modes": ["split"],
            }
        ),
        [
            "spec.stages[0]: no rollback trigger judges shadow stages, so stage 'shadow' could "
            "only advance on silence; add 'shadow' to a trigger's `modes`"
        ],
        id="stage-mode-without-trigger",
    ),
    pytest.param(
        variant({"spec.rollback_triggers.0.modes": []}),
        ["spec.rollback_triggers[0].modes: needs at least 1 item, got 0"],
        id="trigger-without-modes",
    ),
    pytest.param(
        variant(
            {
                "spec.monitoring": {"type": "http", "url": "http://127.0.0.1:8080/v1/stats"},
                "spec.rollback_triggers": [
                    BASE["spec"]["rollback_triggers"][0],
                    {"name": "drift", "drift": {"max_js": 0.1}},
                ],
            }
        ),
        [
            "spec.rollback_triggers[1].drift: a drift trigger reads decisions by action, which "
            "needs Prometheus monitoring; the http provider answers one number per query"
        ],
        id="drift-needs-prometheus",
    ),
    pytest.param(
        variant({"spec.rollback_triggers.0": {"name": "drift", "drift": {"smoothing": 1}}}),
        [
            "spec.rollback_triggers[0].drift: "
            "a drift rule needs max_js, max_psi or max_new_action_share"
        ],
        id="drift-without-limit",
    ),
    # Offline gates, approvals, shadow triggers, notifications.
    pytest.param(
        variant(
            {
                "spec.candidate.uri": "http://127.0.0.1:8102",
                "spec.stages": [
                    stage("canary", 1),
                    {"name": "offline", "offline_eval": {"log": "l.jsonl", "max_regression": 0.01}},
                    FULL,
                ],
            }
        ),
        [
            "spec.stages[1].offline_eval: an offline gate after a live stage comes too late: the "
            "candidate has already met users; put offline stages first"
        ],
        id="offline-after-live",
    ),
    pytest.param(
        variant(
            {
                "spec.stages": [
                    {"name": "offline", "offline_eval": {"log": "l.jsonl", "max_regression": 0.01}},
                    FULL,
                ]
            }
        ),
        [
            "spec.stages[0].offline_eval.candidate_probabilities: the candidate's action "
            "probabilities come from its policy server, but candidate.uri is not an http(s) URL; "
            "set candidate.uri or name the log column that holds them in candidate_probabilities"
        ],
        id="offline-without-candidate-probabilities",
    ),
    pytest.param(
        variant(
            {
                "spec.stages.0": {
                    "name": "offline",
                    "percent": 1,
                    "offline_eval": {
                        "log": "l.jsonl",
                        "max_regression": 0.01,
                        "candidate_probabilities": "p42",
                    },
                }
            }
        ),
        ["spec.stages[0].percent: an offline stage moves no traffic; remove `percent` from it"],
        id="offline-with-percent",
    ),
    pytest.param(
        variant({"spec.stages.0.approval": {"approvers": ["bob"], "required": 2}}),
        [
            "spec.stages[0].approval: required is 2 but only 1 approver(s) are listed; lower "
            "`required` or add approvers"
        ],
        id="approval-too-few-approvers",
    ),
    pytest.param(
        variant({"spec.stages.0.approval": {"approvers": [], "timeout": "1h"}}),
        ["spec.stages[0].approval.approvers: needs at least 1 item, got 0"],
        id="approval-nobody",
    ),
    pytest.param(
        variant(
            {
                "spec.rollback_triggers.0": {
                    "name": "agreement",
                    "modes": ["split"],
                    "shadow": {"min_agreement": 0.8},
                }
            }
        ),
        [
            "spec.rollback_triggers[0]: a shadow trigger judges paired shadow decisions only; "
            "set modes: [shadow]"
        ],
        id="shadow-trigger-in-split",
    ),
    pytest.param(
        variant({"spec.rollback_triggers.0": {"name": "agreement", "shadow": {"alpha": 0.01}}}),
        [
            "spec.rollback_triggers[0].shadow: "
            "a shadow rule needs min_agreement, max_js, max_psi or max_out_of_support"
        ],
        id="shadow-without-limit",
    ),
    pytest.param(
        variant({"spec.rollback_triggers.0.modes": ["offline"]}),
        [
            "spec.rollback_triggers[0].modes: offline stages are judged by their offline_eval, "
            "not by rollback triggers; use shadow and/or split"
        ],
        id="trigger-for-offline",
    ),
    pytest.param(
        variant({"spec.notify": [{"type": "webhook", "url": "ftp://x", "events": ["oops"]}]}),
        [
            "spec.notify[0].webhook.url: 'ftp://x' is not an http(s) URL; write it like "
            "http://127.0.0.1:8080",
            "spec.notify[0].webhook.events[0]: use 'stage_started', 'approval_needed', 'paused', "
            "'held', 'rolled_back' or 'completed' (got 'oops')",
        ],
        id="notify-bad-webhook",
    ),
    pytest.param(
        variant({"spec": None}),
        ["spec: expected a mapping (key: value), got nothing (an empty value)"],
        id="spec-empty",
    ),
]


@pytest.mark.parametrize(("document", "expected"), REJECTED)
def test_rejected_with_exact_problem_lines(document: dict[str, Any], expected: list[str]) -> None:
    assert problems(document) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("PT45S", timedelta(seconds=45)),
    ],
)
def test_check_interval_accepts(text: str, expected: timedelta) -> None:
    spec = parse_spec(variant({"spec.check_interval": text}), SOURCE)

    assert spec.spec.check_interval == expected


def test_millisecond_durations_are_accepted_where_no_floor_applies() -> None:
    spec = parse_spec(variant({"spec.router.timeout": "500ms"}), SOURCE)

    assert spec.spec.router.timeout == timedelta(milliseconds=500)


def test_valid_variations_load() -> None:
    document = variant(
        {
            "spec.stages": [
                stage("shadow", mode="shadow"),
                stage("canary", 0.5, max_duration="1h"),
                stage("eu", 5, scope={"region": ["eu-west-1", "eu-north-1"]}),
                FULL,
            ],
            "spec.rollback_triggers.0.threshold": {"below": 0.2, "above": 0.9},
            "spec.rollback_triggers.0.query": "x{t='{{ target }}'}[{{check_interval}}]",
            "spec.monitoring": {
                "type": "http",
                "url": "https://stats.internal/v1",
                "value_path": "a.b",
            },
            "spec.on_missing_data": "rollback",
        }
    )

    spec = parse_spec(document, SOURCE)

    assert [s.name for s in spec.spec.stages] == ["shadow", "canary", "eu", "full"]
    assert spec.spec.stages[0].percent is None
    assert spec.spec.monitoring.type == "http"
    assert spec.spec.on_missing_data is MissingDataPolicy.ROLLBACK


def test_every_field_problem_is_reported_one_line_each() -> None:
    document = variant(
        {"spec.target": "Ranker", "spec.check_interval": "5", "spec.stages.0.precent": 5},
        drop=["spec.monitoring.url"],
    )

    assert problems(document) == [
        f"spec.target: 'Ranker' is not a valid name; {SLUG_HINT}",
        "spec.monitoring.url: required field is missing",
        f"spec.check_interval: '5' is not a duration; {DURATION_HINT}",
        "spec.stages[0].precent: unknown key 'precent'; did you mean `percent`?",
    ]


def test_every_cross_field_problem_is_reported_one_line_each() -> None:
    document = variant(
        {
            "spec.candidate.version": "41",
            "spec.stages": [stage("canary", 5), stage("canary", 5), stage("big", 50)],
            "spec.rollback_triggers": BASE["spec"]["rollback_triggers"] * 2,
        }
    )

    assert problems(document) == [
        f"spec.candidate.version: {SAME_VERSION}",
        "spec.stages[1].name: stage name 'canary' is used twice; rename one",
        "spec.stages[1].percent: 5 is not greater than the previous stage's 5; "
        f"{STRICTLY_INCREASE}",
        f"spec.stages[2]: {LAST_STAGE}",
        "spec.rollback_triggers[1].name: trigger name 'error-rate' is used twice; rename one",
    ]


def test_every_problem_within_one_stage_is_reported() -> None:
    document = variant({"spec.stages.0.max_duration": "10m"}, drop=["spec.stages.0.percent"])

    assert problems(document) == [
        "spec.stages[0].percent: a split stage needs `percent` (0 < percent <= 100)",
        "spec.stages[0].max_duration: "
        "max_duration is shorter than min_duration; make it at least as long",
    ]


def test_message_prefixes_every_line_with_the_source() -> None:
    document = variant({"kind": "Job", "spec.check_interval": "soon"})

    with pytest.raises(SpecError) as caught:
        parse_spec(document, "specs/ranker.yaml")

    assert str(caught.value) == (
        "specs/ranker.yaml: kind: use 'Rollout' (got 'Job')\n"
        f"specs/ranker.yaml: spec.check_interval: 'soon' is not a duration; {DURATION_HINT}"
    )


@pytest.mark.parametrize("document", [[], "apiVersion: lockgate/v1", 42])
def test_a_document_that_is_not_a_mapping(document: Any) -> None:
    assert problems(document) == ["a spec is a YAML mapping with apiVersion, kind, metadata, spec"]


def test_an_empty_document() -> None:
    assert problems(None) == ["the file is empty; a spec starts with `apiVersion: lockgate/v1`"]


def _load_problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.source == str(path)
    return caught.value.problems


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_load_an_empty_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")

    assert _load_problems(path) == [
        "the file is empty; a spec starts with `apiVersion: lockgate/v1`"
    ]


def test_load_a_file_that_is_a_list(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("- apiVersion: lockgate/v1\n- kind: Rollout\n", encoding="utf-8")

    assert _load_problems(path) == [
        "a spec is a YAML mapping with apiVersion, kind, metadata, spec"
    ]


def test_load_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        "apiVersion: lockgate/v1\nkind: Rollout\nmetadata: {name: ranker-v42\nspec: {}\n",
        encoding="utf-8",
    )

    with pytest.raises(SpecError) as caught:
        load_spec(path)

    line = "line 4, column 5: not valid YAML: expected ',' or '}', but got ':'"
    assert caught.value.problems == [line]
    assert str(caught.value) == f"{path}: {line}"


def test_load_refuses_a_duplicate_key_instead_of_keeping_the_last(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        "apiVersion: lockgate/v1\nkind: Rollout\nspec:\n  stages:\n"
        "    - name: canary\n      percent: 5\n      percent: 50\n",
        encoding="utf-8",
    )

    assert _load_problems(path) == [
        "line 7, column 7: not valid YAML: duplicate key 'percent' (first at line 6); keep one"
    ]


def test_load_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"

    assert _load_problems(path) == ["cannot read the file: No such file or directory"]


def test_load_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(variant()), encoding="utf-8")

    assert load_spec(path) == RolloutSpec.model_validate(variant())

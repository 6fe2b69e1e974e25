"""Preflight's pure parts and the worker's quiet failure log, without servers."""

from __future__ import annotations

import logging
import sys
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.errors import KNOWN_FAILURE_TYPES, QuietKnownFailures, RouterUnavailable
from rollout_specs import TEMPLATE_VARIABLES
from runtime.preflight import Problem, _rank, describe_route, first_live_variables
from tests.conftest import build_spec, spec_document


def _spec(**changes: Any) -> Any:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2")
    document["spec"].update(changes)
    return build_spec(document)


def test_first_live_variables_are_those_of_the_first_check_of_the_first_served_stage() -> None:
    spec = _spec(check_interval="30s")
    assert first_live_variables(spec) == {
        "target": spec.spec.target,
        "incumbent": "41",
        "candidate": "42",
        "rollout": "ranker-v42",
        "stage": "shadow",
        "percent": "0",
        "stage_window": "30s",
        "rollout_window": "30s",
        "check_interval": "30s",
    }
    split_first = _spec(
        stages=[
            {"name": "canary", "percent": 5, "min_duration": "1s"},
            {"name": "full", "percent": 100, "min_duration": "1s"},
        ]
    )
    variables = first_live_variables(split_first)
    assert variables is not None
    assert (variables["stage"], variables["percent"]) == ("canary", "5")


def test_preflight_renders_every_variable_a_trigger_query_may_use() -> None:
    """A query with any of the spec's variables must render in preflight as in the workflow
    (`{{version}}` is filled per arm by the probes of per-arm metrics)."""
    variables = first_live_variables(_spec())
    assert variables is not None
    assert set(variables) == set(TEMPLATE_VARIABLES) - {"version"}


def test_problems_are_listed_router_candidate_monitoring_then_triggers_in_spec_order() -> None:
    problems = [
        Problem("spec.rollback_triggers[10].query", "c"),
        Problem("spec.monitoring.url", "b"),
        Problem("spec.rollback_triggers[2].query", "d"),
        Problem("spec.candidate.uri", "a"),
        Problem("spec.router.url", "z"),
    ]
    assert [p.field for p in sorted(problems, key=_rank)] == [
        "spec.router.url",
        "spec.candidate.uri",
        "spec.monitoring.url",
        "spec.rollback_triggers[2].query",
        "spec.rollback_triggers[10].query",
    ]
    assert str(problems[1]) == "spec.monitoring.url: b"


def test_describe_route_says_when_there_is_none() -> None:
    assert describe_route(None) == "no route for the target yet"


def _failed_record(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "temporalio.activity", logging.WARNING, __file__, 1,
        "Completing activity as failed (%s)", ({"attempt": 3},), exc_info,
    )  # fmt: skip


def test_a_known_failure_is_one_line_with_its_cause_and_no_traceback() -> None:
    assert {"RouterUnavailable", "ProviderUnavailable", "MissingCredential"} <= KNOWN_FAILURE_TYPES
    error = ApplicationError("router at http://r could not be reached", type="RouterUnavailable")
    record = _failed_record(error)
    assert QuietKnownFailures().filter(record)
    text = logging.Formatter().format(record)
    assert text == (
        "Completing activity as failed ({'attempt': 3}): RouterUnavailable: router at http://r "
        "could not be reached"
    )
    backend = _failed_record(RouterUnavailable("gone"))
    QuietKnownFailures().filter(backend)
    assert logging.Formatter().format(backend).endswith(": RouterUnavailable: gone")


def test_a_bug_keeps_its_traceback() -> None:
    for error in (KeyError("stage"), ApplicationError("boom", type="AttributeError")):
        record = _failed_record(error)
        assert QuietKnownFailures().filter(record)
        assert "Traceback" in logging.Formatter().format(record)

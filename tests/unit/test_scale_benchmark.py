"""The scale benchmark's pure parts: how it names rollouts in queries, and how it counts.

The benchmark itself starts servers and runs for minutes; these keep its arithmetic honest (a
lateness or a CPU share computed wrong would mislead every table it prints).
"""

from __future__ import annotations

import json
import math
import os

import pytest

from benchmarks import scale
from rollout_specs import ThresholdTrigger, parse_spec
from rollout_specs.templates import render


def test_the_rendered_trigger_query_names_its_rollout() -> None:
    """The endpoint attributes lockgate's checks by the target its trigger query carries."""
    document = scale.rollout_document(
        "r3-0007",
        interval=1.0,
        router="http://127.0.0.1:8081",
        monitoring="http://127.0.0.1:9000/v1/value",
        policies=["http://127.0.0.1:8101", "http://127.0.0.1:8102"],
    )
    spec = parse_spec(document)
    trigger = spec.spec.rollback_triggers[0]
    assert isinstance(trigger, ThresholdTrigger)
    assert spec.spec.check_interval.total_seconds() == 1.0
    assert spec.spec.stages[0].percent == 10
    assert scale.key_of(render(trigger.query, {"target": spec.spec.target})) == "r3-0007"
    assert scale.key_of(scale.query_for("r1-0000")) == "r1-0000"  # the bare loop's query
    assert scale.key_of("up") == ""


def test_lateness_counts_gaps_ending_in_the_window_minus_the_interval() -> None:
    arrivals = {"a": [9.5, 10.6, 11.7, 13.0], "b": [10.2, 11.2]}
    late = scale.lateness(arrivals, 10.0, 12.0, 1.0)
    assert sorted(round(x, 6) for x in late) == [0.0, 0.1, 0.1]
    assert scale.checks_in(arrivals, 10.0, 12.0) == 4


def test_percentile_is_nearest_rank_and_nan_when_empty() -> None:
    values = [float(n) for n in range(1, 101)]
    assert scale.percentile(values, 50) == 51.0
    assert scale.percentile(values, 99) == 100.0
    assert math.isnan(scale.percentile([], 50))


def test_stat_fields_skip_a_command_name_with_spaces_and_parentheses() -> None:
    fields = " ".join(["S", "41", *["0"] * 9, "120", "30", *["0"] * 10])
    assert scale.stat_fields(f"42 (temporal (x) y) {fields}") == (41, 150)


def test_stat_fields_read_this_process() -> None:
    with open(f"/proc/{os.getpid()}/stat") as stat:
        ppid, ticks = scale.stat_fields(stat.read())
    assert ppid == os.getppid()
    assert ticks >= 0


def test_tree_ticks_sum_a_process_and_its_descendants_only() -> None:
    table = {1: (0, 100), 10: (1, 5), 11: (10, 7), 12: (11, 1), 20: (1, 50)}
    assert scale.tree_ticks(table, [10]) == 13
    assert scale.tree_ticks(table, [10, 20, 99]) == 63


def test_events_added_across_a_continue_as_new() -> None:
    assert scale.events_added(("run-1", 100), ("run-1", 160), None) == 60
    # the old run ended at 4000 events; the new one has 30 so far
    assert scale.events_added(("run-1", 3950), ("run-2", 30), 4000) == 80


def test_the_monitor_records_each_query_by_rollout() -> None:
    monitor = scale.Monitor()
    for at, key in [(1.0, "r1-0000"), (2.0, "r1-0000"), (2.5, "r2-0000")]:
        status, body = monitor.answer(f"/v1/value?query=bench_value+target%3D{key}", at)
        assert (status, json.loads(body)) == (200, {"value": 0})
    assert json.loads(monitor.answer("/seen?prefix=r1-", 3.0)[1]) == {"seen": 1}
    assert json.loads(monitor.answer("/arrivals?prefix=r1-", 3.0)[1]) == {"r1-0000": [1.0, 2.0]}
    assert monitor.answer("/nowhere", 3.0)[0] == 404


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--n", "100", "--interval", "30", "--workers", "2"], [scale.Config(100, 30.0, 2)]),
        (["--quick"], [scale.Config(50, 1.0, 1), scale.Config(100, 1.0, 1)]),
    ],
)
def test_configurations_from_the_command_line(
    argv: list[str], expected: list[scale.Config]
) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=1)
    assert scale.configurations(parser.parse_args(argv)) == expected


def test_the_full_run_has_ten_configurations_and_an_estimate() -> None:
    import argparse

    full = scale.configurations(argparse.Namespace(n=None, quick=False))
    assert len(full) == 10
    assert {c.workers for c in full} == {1, 2}
    assert scale.expected_seconds(full, 60.0) > 10 * 3 * 60.0


def test_the_table_compares_lockgate_with_both_bare_loops() -> None:
    config = scale.Config(50, 1.0, 1)
    runs = [
        scale.RunResult(kind, config, 30.0, checks, [0.05], 60, 10, cpu, 20.0, 50)
        for kind, checks, cpu in [
            ("bare", 1200, 20.0),
            ("bare-local", 1500, 20.0),
            ("lockgate", 1500, 30.0),
        ]
    ]
    lines = scale.table(runs, 30.0, 1.0).splitlines()
    assert "| N=50 @1s, 1 worker | lockgate | 50.0 | 1.25x |" in lines[-3]
    assert lines[-1] == (
        "N=50 @1s, 1 worker: lockgate / bare loop, local activity: 1.00x checks/s, "
        "1.50x worker CPU, 1.00x server CPU"
    )

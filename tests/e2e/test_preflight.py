"""Preflight through the real `lockgate` command: every problem at once, before anything starts.

`submit` asks the router, the candidate and monitoring once (as the first live stage's check
would) and refuses with exit 2, listing each problem on one line naming the spec field and the
fix; `--no-preflight` skips it. `validate --preflight` runs the same checks for a spec repo's CI.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client

from runtime.processes import free_port
from tests.conftest import spec_document
from tests.e2e.processes import ROOT
from tests.e2e.test_cli import lockgate
from tests.helpers.servers import MetricsServer, RouterServer

pytestmark = pytest.mark.e2e

TOKEN = "preflight-token-7f3a9c1e5b"


async def _lockgate_env(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`lockgate` with extra environment (a secret the spec's auth block names)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "cli.py", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "LOCKGATE_ACTOR": "ci", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _two_triggers(router_url: str, metrics_url: str) -> dict[str, Any]:
    document = spec_document(router_url, metrics_url)
    document["spec"]["rollback_triggers"].append(
        {
            "name": "latency",
            "query": 'latency_p99{target="{{target}}",stage="{{stage}}",window="{{stage_window}}"}',
            "threshold": {"above": 0.5},
        }
    )
    return document


async def test_submit_lists_every_problem_on_one_line_each_and_starts_nothing(
    tmp_path: Path, client: Client, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", "multi")  # two series where a check needs one
    metrics.set("latency_p99", None)  # no data yet: normal before the candidate serves
    router_url = f"http://127.0.0.1:{free_port()}"
    candidate_url = f"http://127.0.0.1:{free_port()}"
    document = _two_triggers(router_url, metrics.url)
    document["spec"]["candidate"]["uri"] = candidate_url
    spec = _write(tmp_path / "spec.yaml", document)
    target = document["spec"]["target"]

    result = await lockgate("submit", str(spec), client=client, task_queue=task_queue)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert f"preflight failed {spec} (nothing was started):" in lines
    problems = [line for line in lines if line.startswith(f"  {spec}: spec.")]
    assert len(problems) == 3, result.stderr
    router_line, candidate_line, query_line = problems
    assert router_line.startswith(
        f"  {spec}: spec.router.url: RouterUnavailable: router at {router_url}/v1/targets/"
        f"{target}/route could not be reached"
    ), router_line
    assert "check router.url" in router_line
    assert candidate_line.startswith(
        f"  {spec}: spec.candidate.uri: the candidate at {candidate_url} could not be reached"
    ), candidate_line
    assert "fix candidate.uri" in candidate_line
    assert query_line.startswith(
        f"  {spec}: spec.rollback_triggers[0].query: trigger error-rate: AmbiguousResultError: "
    ), query_line
    assert "aggregate with sum()" in query_line
    assert "--no-preflight" in lines[-1]
    assert "retrying in" not in result.stderr, "only the report, not each hidden retry"
    # Templates rendered with the values of the first live stage's first check.
    assert f'error_rate{{target="{target}",version="42"}}' in metrics.queries
    assert f'latency_p99{{target="{target}",stage="shadow",window="1s"}}' in metrics.queries

    status = await lockgate("status", target, client=client)
    assert status.returncode == 1
    assert "no rollout of target" in status.stderr

    skipped = await lockgate(
        "submit", str(spec), "--no-preflight", client=client, task_queue=task_queue
    )
    assert skipped.returncode == 0, skipped.stderr
    await client.get_workflow_handle(f"rollout-{target}").terminate(reason="test over")


async def test_validate_preflight_passes_a_stack_that_answers_and_fails_one_that_does_not(
    tmp_path: Path, router: RouterServer, metrics: MetricsServer
) -> None:
    metrics.set("error_rate", 0.0)
    good = _write(tmp_path / "good.yaml", spec_document(router.url, metrics.url))
    down = spec_document(f"http://127.0.0.1:{free_port()}", metrics.url)
    bad = _write(tmp_path / "bad.yaml", down)

    passed = await lockgate("validate", "--preflight", str(good))
    assert passed.returncode == 0, passed.stderr
    assert f"preflight ok {good}: router answers (no route for the target yet)" in passed.stderr
    assert "1 monitoring query ran" in passed.stderr

    failed = await lockgate("validate", "--preflight", str(good), str(bad))
    assert failed.returncode == 2
    assert f"{bad}: spec.router.url: RouterUnavailable: " in failed.stderr
    assert f"ok {good}" in failed.stdout, "the good spec is still reported"

    unasked = await lockgate("validate", str(bad))
    assert unasked.returncode == 0, "without --preflight validate asks no backend"


async def test_preflight_reads_auth_secrets_and_never_prints_them(
    tmp_path: Path, router: RouterServer, metrics: MetricsServer
) -> None:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["router"]["auth"] = {"type": "bearer", "token": {"env": "PF_ROUTER_TOKEN"}}
    spec = _write(tmp_path / "spec.yaml", document)

    missing = await _lockgate_env("validate", "--preflight", str(spec), env={})
    assert missing.returncode == 2
    assert f"{spec}: spec.router.auth: " in missing.stderr
    assert "PF_ROUTER_TOKEN" in missing.stderr

    present = await _lockgate_env(
        "validate", "--preflight", str(spec), env={"PF_ROUTER_TOKEN": TOKEN}
    )
    assert present.returncode == 0, present.stderr
    assert TOKEN not in present.stdout + present.stderr

    router.close()  # the token is sent to a router that is gone: the error must not quote it
    refused = await _lockgate_env(
        "validate", "--preflight", str(spec), env={"PF_ROUTER_TOKEN": TOKEN}
    )
    assert refused.returncode == 2
    assert "spec.router.url: RouterUnavailable" in refused.stderr
    assert TOKEN not in refused.stdout + refused.stderr

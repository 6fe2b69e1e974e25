"""Payload encryption on a real Temporal dev server: what the server stores, what lockgate reads.

The worker and the CLI connect through runtime.client.connect, which adds the AES-GCM codec when
LOCKGATE_CODEC_KEYS is set. These tests read the raw history with a client that has NO codec (what
the server, its database and its backups hold) and check that every payload in it is ciphertext,
while a client with the key reads status, history and report as usual.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf.message import Message
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.registry import BackendRegistry
from rollout_specs import RolloutSpec, workflow_id_for
from runtime.client import connect
from runtime.codec import ENCODING, KEY_ID_METADATA, new_key
from runtime.history import LOCAL_ACTIVITY_DATA, LOCAL_ACTIVITY_MARKER, fetch_record
from runtime.rollouts import query_status, send_command, submit_rollout
from runtime.settings import Settings
from tests.conftest import build_spec, spec_document
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from worker import build_worker, http_client
from workflows.rollout import RolloutWorkflow
from workflows.state import Phase

KEY_ID = "test-2024"


async def _connect(temporal_env: WorkflowEnvironment, keys: str) -> Client:
    """A client connected exactly as the worker and the CLI connect, with these keys."""
    settings = Settings(
        temporal_address=temporal_env.client.service_client.config.target_host,
        lockgate_codec_keys=SecretStr(keys),
    )
    return await connect(settings)


@pytest_asyncio.fixture
async def encrypted_client(temporal_env: WorkflowEnvironment) -> Client:
    """A client (and so a worker) with encryption on under KEY_ID."""
    return await _connect(temporal_env, f"{KEY_ID}:{new_key()}")


@contextlib.asynccontextmanager
async def _worker(client: Client, task_queue: str) -> AsyncIterator[None]:
    """A worker built as worker.py builds it; it encrypts iff its client does."""
    async with http_client() as http, build_worker(client, task_queue, BackendRegistry(http)):
        yield


def _spec(router: RouterServer, metrics: MetricsServer) -> RolloutSpec:
    """A rollout that waits in shadow until promoted (so a human command is in the history)."""
    metrics.set("error_rate", 0.001)
    document = spec_document(router.url, metrics.url, target=f"secret-{uuid.uuid4().hex[:8]}")
    document["spec"]["stages"][0]["min_duration"] = "1h"
    return build_spec(document)


def _walk(message: Message, payloads: list[Payload], search: list[Payload]) -> None:
    """Collect every Payload in `message`; search attribute values go to `search`."""
    if isinstance(message, Payload):
        payloads.append(message)
        return
    if isinstance(message, SearchAttributes):
        search.extend(message.indexed_fields.values())
        return
    for _, value in message.ListFields():
        items: Iterable[Any]
        if isinstance(value, Message):
            items = [value]
        elif hasattr(value, "values"):  # a map
            items = value.values()
        elif isinstance(value, (str, bytes)):
            continue
        else:
            try:
                items = iter(value)  # a repeated field
            except TypeError:
                continue  # a scalar
        for item in items:
            if isinstance(item, Message):
                _walk(item, payloads, search)


PATCH_MARKER = "core_patch"
"""The marker `workflow.patched` records; the SDK core writes its details itself, not through the
data converter, so they are never encoded (they hold only the patch id)."""
LOCAL_ACTIVITY_DATA_KEYS = {
    "seq",
    "attempt",
    "activity_id",
    "activity_type",
    "complete_time",
    "backoff",
    "original_schedule_time",
    "activation_index",
}
"""What the SDK core writes itself into a local activity's marker (a check run in its workflow
task): bookkeeping only. Its result, failure and summary go through the converter."""


def _raw_payloads(
    events: Iterable[HistoryEvent],
) -> tuple[list[Payload], list[Payload], list[Payload]]:
    """Every payload in the history: (converter-written, search attributes, core-written)."""
    payloads: list[Payload] = []
    search: list[Payload] = []
    markers: list[Payload] = []
    for event in events:
        marker = event.marker_recorded_event_attributes
        if (
            event.HasField("marker_recorded_event_attributes")
            and marker.marker_name == PATCH_MARKER
        ):
            _walk(event, markers, search)
        elif marker.marker_name == LOCAL_ACTIVITY_MARKER:
            markers.extend(marker.details[LOCAL_ACTIVITY_DATA].payloads)
            rest = HistoryEvent()
            rest.CopyFrom(event)
            del rest.marker_recorded_event_attributes.details[LOCAL_ACTIVITY_DATA]
            _walk(rest, payloads, search)
        else:
            _walk(event, payloads, search)
    return payloads, search, markers


def _encrypted(payload: Payload) -> bool:
    return (
        payload.metadata.get("encoding") == ENCODING
        and payload.metadata.get(KEY_ID_METADATA) == KEY_ID.encode()
    )


async def test_an_encrypted_rollout_stores_only_ciphertext_and_reads_back_with_the_key(
    client: Client,
    encrypted_client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
) -> None:
    spec = _spec(router, metrics)
    target = spec.spec.target
    reason = f"shadow agreement fine, ticket {uuid.uuid4().hex}"
    async with _worker(encrypted_client, task_queue):
        handle = await submit_rollout(
            encrypted_client, spec, submitted_by="alice", task_queue=task_queue
        )
        await wait_until(lambda: router.current(target), what="the shadow route")
        await send_command(encrypted_client, target, "promote", actor="bob", reason=reason)
        result = await handle.result()
        assert result.phase is Phase.COMPLETED

        # With the key, everything reads as before: the status query, the history, the report.
        status = await query_status(encrypted_client, target)
        assert status.spec.spec.target == target
        assert [entry.reason for entry in status.state.audit if entry.action == "promote"] == [
            reason
        ]
        record = await fetch_record(encrypted_client, target)
        assert len(record.checks) == status.state.checks_total >= 3  # canary, half, full

        # Without it, the worker's answer is ciphertext the plain client cannot decode.
        with pytest.raises(Exception, match="binary/encrypted"):
            await client.get_workflow_handle(handle.id).query("status")

    # What the server holds, read with no codec.
    history = await client.get_workflow_handle(workflow_id_for(target)).fetch_history()
    payloads, search, markers = _raw_payloads(history.events)
    assert len(payloads) >= 20, "input, activity inputs and results, summaries, update, result"
    plain = [p for p in payloads if not _encrypted(p)]
    assert plain == [], f"{len(plain)} payloads in clear: {plain[:3]}"
    secrets = [target, reason, router.url, metrics.url, "error_rate", "ranker-v42"]
    for payload in payloads:
        raw = payload.SerializeToString()
        for text in secrets:
            assert text.encode() not in raw

    # Each kind of payload the docs promise is encrypted is present here, encrypted.
    started = history.events[0]
    assert _encrypted(started.workflow_execution_started_event_attributes.input.payloads[0])
    assert _encrypted(started.user_metadata.summary), "the UI's summary is a payload too"
    kinds = {event.WhichOneof("attributes") for event in history.events}
    for kind in (
        "activity_task_scheduled_event_attributes",  # check and route inputs, their summaries
        "activity_task_completed_event_attributes",  # verdicts and route results
        "workflow_execution_update_accepted_event_attributes",  # the promote command and reason
        "workflow_execution_completed_event_attributes",  # the rollout's result
    ):
        assert kind in kinds
    (update,) = [
        event.workflow_execution_update_accepted_event_attributes
        for event in history.events
        if event.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert all(_encrypted(p) for p in update.accepted_request.input.args.payloads)

    # Patch markers stay plain, and hold nothing but the patch id.
    assert markers, "the rollout records its rollback-preempts patch"
    for marker in markers:
        assert set(json.loads(marker.data)) <= {"id", "deprecated"} | LOCAL_ACTIVITY_DATA_KEYS
        for text in secrets:
            assert text.encode() not in marker.SerializeToString()

    # Search attributes stay plain: Temporal must read them to index and filter.
    assert any(target.encode() in p.data for p in search)


async def test_turning_encryption_on_mid_rollout_keeps_the_rollout_going(
    client: Client,
    encrypted_client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
) -> None:
    spec = _spec(router, metrics)
    target = spec.spec.target
    async with _worker(client, task_queue):  # before: no keys anywhere
        handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)

        async def checked_in_clear() -> bool:
            return (await query_status(client, target)).state.checks_total >= 1

        # A route and a check done in clear: activity inputs and results the next worker replays.
        await wait_until(checked_in_clear, what="a shadow check written in clear")

    # The operator sets LOCKGATE_CODEC_KEYS and restarts: the new worker replays a history of
    # clear payloads (passed through) and writes encrypted ones from now on.
    async with _worker(encrypted_client, task_queue):
        await send_command(encrypted_client, target, "promote", actor="bob", reason="go on")
        result = await encrypted_client.get_workflow_handle_for(
            RolloutWorkflow.run, handle.id
        ).result()
        assert result.phase is Phase.COMPLETED
        status = await query_status(encrypted_client, target)
        outcomes = [stage.outcome for stage in status.state.stages]
        assert outcomes == ["promoted", "advanced", "advanced", "advanced"]

    history = await client.get_workflow_handle(handle.id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    assert started.metadata["encoding"] != ENCODING, "written before encryption was on"
    assert target.encode() in started.data
    completed = history.events[-1].workflow_execution_completed_event_attributes.result.payloads
    assert all(_encrypted(p) for p in completed), "written after"


async def test_a_key_removed_too_soon_stalls_the_rollout_naming_the_key_until_it_is_back(
    client: Client,
    temporal_env: WorkflowEnvironment,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
) -> None:
    old, new = f"old:{new_key()}", f"new:{new_key()}"
    spec = _spec(router, metrics)
    target = spec.spec.target
    old_client = await _connect(temporal_env, old)
    async with _worker(old_client, task_queue):
        handle = await submit_rollout(old_client, spec, submitted_by="alice", task_queue=task_queue)

        async def checked() -> bool:
            return (await query_status(old_client, target)).state.checks_total >= 1

        await wait_until(checked, what="a shadow check under the old key")

    # Rotated wrongly: the old key dropped instead of kept after the new one.
    async with _worker(await _connect(temporal_env, new), task_queue):

        async def task_failure() -> str | None:
            events = (await client.get_workflow_handle(handle.id).fetch_history()).events
            failed = [
                event.workflow_task_failed_event_attributes.failure.message
                for event in events
                if event.HasField("workflow_task_failed_event_attributes")
            ]
            return failed[0] if failed else None

        message = await wait_until(task_failure, what="the new worker's workflow task failure")
        assert "payload encrypted with key id 'old'" in message
        assert "configured: new" in message
        description = await client.get_workflow_handle(handle.id).describe()
        assert description.status is not None
        assert description.status.name == "RUNNING", "stalled, not failed: nothing is lost"

    # The key put back (after the new one): the same rollout goes on and completes.
    rotated = await _connect(temporal_env, f"{new},{old}")
    async with _worker(rotated, task_queue):
        await send_command(rotated, target, "promote", actor="bob", reason="key restored")
        result = await rotated.get_workflow_handle_for(RolloutWorkflow.run, handle.id).result()
        assert result.phase is Phase.COMPLETED
    history = await client.get_workflow_handle(handle.id).fetch_history()
    completed = history.events[-1].workflow_execution_completed_event_attributes.result.payloads
    assert [p.metadata[KEY_ID_METADATA] for p in completed] == [b"new"], "the first key encrypts"

"""The worker's log while a router is unreachable: one line per failed attempt, no traceback.

An unreachable router fails an activity attempt every few seconds for as long as it stays down;
the SDK logs each failure with its whole exception chain, which buried the one line an operator
needs under hundreds of lines of frames. `python worker.py` keeps one line per attempt naming
the cause, and tracebacks only for unexpected exceptions (bugs).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from temporalio.client import Client

from runtime.processes import free_port
from runtime.rollouts import submit_rollout
from tests.conftest import build_spec, spec_document
from tests.e2e.processes import worker_process
from tests.helpers.servers import MetricsServer
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.e2e

FAILED = "Completing activity as failed"


async def test_an_unreachable_router_logs_one_line_per_attempt_naming_the_cause(
    tmp_path: Path, client: Client, metrics: MetricsServer, task_queue: str
) -> None:
    router_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spec = build_spec(spec_document(router_url, metrics.url))
    worker = worker_process(
        tmp_path / "worker.log",
        {
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "LOCKGATE_TASK_QUEUE": task_queue,
        },
    ).start()
    handle = None
    try:

        async def polling() -> bool:
            return "polling task queue" in worker.output()

        await worker.wait_ready(polling)
        handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)

        def failures() -> list[str] | None:
            lines = [line for line in worker.output().splitlines() if FAILED in line]
            return lines if len(lines) >= 3 else None

        lines = await wait_until(failures, timeout=60, what="three failed route attempts")
    finally:
        if handle is not None:
            await handle.terminate(reason="test over")
        worker.stop()
    log = worker.output()
    assert "Traceback" not in log, log
    attempts = []
    for line in lines:
        assert "apply_route" in line, line
        assert f"RouterUnavailable: router at {router_url}/v1/targets/" in line, line
        assert "check router.url" in line, line
        attempt = re.search(r"'attempt': (\d+)", line)
        assert attempt is not None, line
        attempts.append(int(attempt.group(1)))
    assert attempts == sorted(set(attempts)), f"one line per attempt: {attempts}"

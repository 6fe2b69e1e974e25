"""A secret canary on every path: router token, monitoring password, webhook URL.

The worker runs as `python worker.py` with the secrets in its environment and a file; the router
and monitoring demand them, and whenever they refuse a request they quote the request's headers
back (a careless backend). A rollout runs through refused checks, a passing check, a refused
rollback and its landing. Afterwards the canary must appear nowhere a human or a log collector
can read: the workflow history as `temporal workflow show` prints it, the description (current
details, pending activities), `lockgate status -o json`, `lockgate history`, the report's HTML,
the webhook bodies and the worker's log. The backends did receive the secrets: they only answer
requests that carry them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from runtime.client import connect
from runtime.processes import ManagedProcess, free_port
from runtime.rollouts import query_status, send_command
from runtime.settings import Settings
from tests.conftest import spec_document
from tests.e2e.processes import ROOT, dev_server, worker_process
from tests.helpers.servers import MetricsServer, RouterServer, WebhookServer
from tests.helpers.waiting import wait_until
from workflows.state import Phase

pytestmark = pytest.mark.e2e

CANARY = f"canary{uuid.uuid4().hex}"
TOKEN = f"rt-{CANARY}"
PASSWORD = f"pw-{CANARY}"
BASIC = base64.b64encode(f"lockgate:{PASSWORD}".encode()).decode()


def _run(*command: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return result.stdout + result.stderr


async def test_no_secret_reaches_history_status_ui_webhooks_report_or_logs(
    tmp_path: Path, processes: list[ManagedProcess]
) -> None:
    port = free_port()
    processes.append(dev_server(tmp_path / "server", port, free_port()).start())
    address = f"127.0.0.1:{port}"
    queue = f"q-{uuid.uuid4().hex[:8]}"
    password_file = tmp_path / "prometheus-password"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    with RouterServer() as router, MetricsServer() as metrics, WebhookServer() as webhook:
        hook_url = f"{webhook.url}/hooks/{CANARY}"
        worker_env = {
            "TEMPORAL_ADDRESS": address,
            "LOCKGATE_TASK_QUEUE": queue,
            "TEST_ROUTER_TOKEN": TOKEN,
            "TEST_HOOK_URL": hook_url,
        }
        worker = worker_process(tmp_path / "worker.log", worker_env).start()
        processes.append(worker)
        await wait_until(lambda: "polling task queue" in worker.output(), timeout=60)
        client = await connect(Settings(temporal_address=address))

        router.required_headers = {"Authorization": f"Bearer {TOKEN}"}
        metrics.required_headers = {"Authorization": f"Basic {BASIC}"}
        router.echo_headers = metrics.echo_headers = True
        metrics.set("error_rate", 0.0)
        metrics.refuse_next(6, 503)  # the first checks are errors quoting the credentials

        document = spec_document(router.url, metrics.url)
        body = document["spec"]
        body["stages"][0]["min_duration"] = "1h"
        body["router"]["auth"] = {"type": "bearer", "token": {"env": "TEST_ROUTER_TOKEN"}}
        body["monitoring"]["auth"] = {
            "type": "basic",
            "username": "lockgate",
            "password": {"file": str(password_file)},
        }
        body["notify"] = [{"type": "webhook", "url_from": {"env": "TEST_HOOK_URL"}}]
        spec_file = tmp_path / "spec.yaml"
        spec_file.write_text(yaml.safe_dump(document), encoding="utf-8")
        target = body["target"]
        cli_env = {"TEMPORAL_ADDRESS": address, "LOCKGATE_TASK_QUEUE": queue, "COLUMNS": "200"}
        cli = [sys.executable, "cli.py"]
        submitted = await asyncio.to_thread(
            _run, *cli, "submit", str(spec_file), "--no-preflight", "--as", "alice", env=cli_env
        )
        assert "submitted" in submitted, submitted

        async def passing() -> bool:
            status = await query_status(client, target)
            check = status.state.last_check
            return check is not None and all(v.outcome.value == "pass" for v in check.verdicts)

        await wait_until(passing, timeout=60, what="a passing check after the refused ones")
        router.refuse_next(4, 503)  # the rollback is refused, quoting the token, then lands
        await send_command(client, target, "rollback", actor="bob", reason="canary test")

        async def rolled_back() -> bool:
            status = await query_status(client, target)
            return status.state.phase is Phase.ROLLED_BACK

        await wait_until(rolled_back, timeout=60, what="the rollback to land")
        await wait_until(lambda: len(webhook.received) >= 3, what="the webhooks")

        workflow_id = f"rollout-{target}"
        temporal = str(ROOT / ".venv" / "bin" / "temporal")
        readable = {
            "history (temporal workflow show)": await asyncio.to_thread(
                _run, temporal, "workflow", "show", "-w", workflow_id, "--address", address,
                "-o", "json", env={"HOME": str(tmp_path)},
            ),
            "description (temporal workflow describe)": await asyncio.to_thread(
                _run, temporal, "workflow", "describe", "-w", workflow_id, "--address", address,
                "-o", "json", env={"HOME": str(tmp_path)},
            ),
            "lockgate status -o json": await asyncio.to_thread(
                _run, *cli, "status", target, "-o", "json", env=cli_env
            ),
            "lockgate status": await asyncio.to_thread(_run, *cli, "status", target, env=cli_env),
            "lockgate history": await asyncio.to_thread(
                _run, *cli, "history", target, env=cli_env
            ),
            "webhook bodies": json.dumps(webhook.received),
        }  # fmt: skip
        report = tmp_path / "report.html"
        await asyncio.to_thread(_run, *cli, "report", target, "--out", str(report), env=cli_env)
        readable["report HTML"] = report.read_text(encoding="utf-8")
        readable["worker log"] = worker.output()

    # The backends got the secrets (they answer nothing without them) and the paths were taken.
    assert (router.current(target) or {}).get("mode") == "off"
    assert any(r["event"] == "rolled_back" for r in webhook.received)
    history = readable["history (temporal workflow show)"]
    assert "request headers" not in history or "[redacted]" in history
    assert "[redacted]" in readable["worker log"], "the refusals quoting secrets were logged"
    for where, text in readable.items():
        assert text, f"{where} is empty"
        for secret in (CANARY, BASIC):
            assert secret not in text, f"a secret leaked into the {where}"

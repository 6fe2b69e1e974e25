"""`lockgate history` and `lockgate report` as a release engineer runs them, after a rollback."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client

from rollout_specs import workflow_id_for
from tests.conftest import spec_document
from tests.e2e.test_cli import lockgate
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]

REASON = "<b>look</b> [red]closer[/red]"


async def test_history_and_report_of_a_rollout_rolled_back_by_a_trigger(
    tmp_path: Path,
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
) -> None:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][2]["min_duration"] = "1h"
    target: str = document["spec"]["target"]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(document), encoding="utf-8")
    run = functools.partial(lockgate, client=client, task_queue=task_queue)

    submitted = await run("submit", str(spec))
    assert submitted.returncode == 0, submitted.stderr
    await wait_until(lambda: (router.current(target) or {}).get("percent") == 50, what="half")
    paused = await run("pause", target, "--reason", REASON, "--as", "bob")
    assert paused.returncode == 0, paused.stderr
    metrics.set("error_rate", 0.2)
    await client.get_workflow_handle(workflow_id_for(target)).result()

    table = await run("history", target)
    assert table.returncode == 0, table.stderr
    assert table.stderr == ""
    assert f"audit trail of rollout-{target} (rolled_back)" in table.stdout
    assert REASON in table.stdout, "reasons are printed as written, never as rich markup"
    expected = [
        ("cli-user", "submitted"),
        ("bob", "pause"),
        ("trigger:error-rate", "rollback"),
        ("lockgate", "rollback_landed"),
    ]
    for actor, action in expected:
        assert re.search(rf"{re.escape(actor)}\s*│\s*{action}\b", table.stdout), (actor, action)
    assert "evidence" in table.stdout
    assert re.search(r"│\s*fail:", table.stdout), "the rollback shows the verdict it was taken on"

    as_json = await run("history", target, "--output", "json")
    assert as_json.returncode == 0, as_json.stderr
    trail = json.loads(as_json.stdout)
    assert trail["complete"] is True
    assert trail["phase"] == "rolled_back"
    entries = [(e["actor"], e["action"]) for e in trail["entries"]]
    assert entries[0] == ("cli-user", "submitted")
    assert ("bob", "pause") in entries
    rollback = next(e for e in trail["entries"] if e["action"] == "rollback")
    assert rollback["actor"] == "trigger:error-rate"
    assert rollback["stage"] == "half"

    out = tmp_path / "report.html"
    written = await run("report", target, "--out", str(out))
    assert written.returncode == 0, written.stderr
    summary = (
        rf"wrote {re.escape(str(out))}: rolled_back, \d+ checks over 1 run\(s\), 1 trigger plot"
    )
    assert re.search(summary, written.stdout), written.stdout
    page = out.read_text(encoding="utf-8")
    assert page.count("<svg") == 1
    assert "rollback (trigger:error-rate)" in page
    for stage in ("shadow", "canary", "half"):
        assert f"<td>{stage}</td>" in page
    assert "&lt;b&gt;look&lt;/b&gt; [red]closer[/red]" in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?https?:""", page)


@pytest.mark.parametrize("command", ["history", "report"])
async def test_history_and_report_of_an_unknown_target_exit_1_naming_it(
    client: Client, command: str
) -> None:
    result = await lockgate(command, "no-such-target", client=client)
    assert result.returncode == 1
    assert "no rollout of target 'no-such-target' was found" in result.stderr


async def test_history_output_must_be_table_or_json(client: Client) -> None:
    result = await lockgate("history", "anything", "--output", "yaml", client=client)
    assert result.returncode == 2
    assert "use table or json" in result.stderr

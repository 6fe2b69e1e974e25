"""`lockgate`: the release engineer's command line.

Exit codes: 0 ok; 1 refused or failed (a running rollout, a refused command, no server); 2 usage
error or invalid spec. Every command that talks to Temporal ends with `os._exit` after flushing,
because short-lived Temporal client processes can crash at interpreter exit (sdk-python#300).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.service import RPCError

from rollout_specs import RolloutSpec, SpecError, dump_schema, format_duration, load_spec
from runtime.client import connect
from runtime.demo import EXPECTED_PHASE, DemoOptions, run_demo
from runtime.history import AuditTrail, HistoryUnreadable, fetch_audit_trail, fetch_record
from runtime.rollouts import (
    CommandRefused,
    PendingActivity,
    RolloutAlreadyRunning,
    RolloutNotFound,
    describe_rollout,
    pending_activities,
    query_status,
    send_command,
    submit_rollout,
)
from runtime.settings import Settings
from workflows.messages import StatusResult
from workflows.state import TERMINAL_PHASES
from workflows.visibility import CANDIDATE, PERCENT, PHASE, STAGE, TARGET

app = typer.Typer(
    help="Staged, self-rolling-back rollouts of RL policies, on Temporal.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

ActorOption = Annotated[
    str | None,
    typer.Option("--as", help="Who you are (default: $LOCKGATE_ACTOR, then your OS user)."),
]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="Why; kept in the audit trail.")]
TargetArgument = Annotated[str, typer.Argument(help="The rollout's target (spec.target).")]


def _actor(explicit: str | None) -> str:
    return explicit or os.environ.get("LOCKGATE_ACTOR") or getpass.getuser()


def _run(work: Callable[[Client], Awaitable[T]]) -> T:
    """Connect with the environment's settings and run `work`; map failures to clear errors."""
    settings = Settings()

    async def main() -> T:
        try:
            client = await connect(settings)
        except RuntimeError as exc:
            raise _Unreachable(
                f"cannot reach Temporal at {settings.address} ({exc}); is `python worker.py` "
                "running? Set TEMPORAL_ADDRESS to use another server."
            ) from exc
        return await work(client)

    try:
        return asyncio.run(main())
    except (
        RolloutAlreadyRunning,
        RolloutNotFound,
        CommandRefused,
        HistoryUnreadable,
        _Unreachable,
    ) as exc:
        _fail(str(exc))
    except RPCError as exc:
        _fail(f"Temporal refused the request: {exc}")


class _Unreachable(Exception):
    """The Temporal frontend did not answer."""


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    raise typer.Exit(EXIT_FAILED)


def _load(path: Path) -> RolloutSpec:
    try:
        return load_spec(path)
    except SpecError as exc:
        err.print(f"[red]invalid spec[/red] {path}:", highlight=False)
        for line in exc.problems:
            err.print(f"  {path}: {line}", highlight=False, markup=False)
        raise typer.Exit(EXIT_USAGE) from exc


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Spec files to check.")]) -> None:
    """Check specs without submitting them (for a spec repo's CI)."""
    invalid = 0
    for path in files:
        try:
            spec = _load(path)
        except typer.Exit:
            invalid += 1
            continue
        body = spec.spec
        stages = " -> ".join(
            f"{s.name}({s.mode.value if s.percent is None else f'{s.percent:g}%'})"
            for s in body.stages
        )
        out.print(
            f"[green]ok[/green] {path}: {body.target} {body.incumbent.version} -> "
            f"{body.candidate.version}: {stages}",
            highlight=False,
        )
    if invalid:
        raise typer.Exit(EXIT_USAGE)


@app.command()
def schema() -> None:
    """Print the spec's JSON Schema (for editors and linters)."""
    print(dump_schema())


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(help="The rollout spec.")],
    actor: ActorOption = None,
    task_queue: Annotated[
        str | None, typer.Option(help="Task queue (default: $LOCKGATE_TASK_QUEUE).")
    ] = None,
) -> None:
    """Validate a spec, then start its rollout. Refused while the target has a running one."""
    spec = _load(file)
    queue = task_queue or Settings().lockgate_task_queue

    async def work(client: Client) -> str:
        handle = await submit_rollout(client, spec, submitted_by=_actor(actor), task_queue=queue)
        return handle.result_run_id or ""

    run_id = _run(work)
    out.print(
        f"submitted [bold]{spec.workflow_id}[/bold] (run {run_id}); follow it with "
        f"`lockgate watch {spec.spec.target}`",
        highlight=False,
    )


@app.command()
def status(
    target: TargetArgument,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    """Show where a rollout is and why (falls back to the server's view without a worker).

    Activities the server is retrying (a rollback the router refuses, say) are listed with their
    attempt count and last error: that is why a rollout is stuck, and it needs no worker.
    """
    if output not in ("table", "json"):
        raise typer.BadParameter("use table or json", param_hint="--output")
    full, description = _run(lambda client: _fetch_status(client, target))
    pending = pending_activities(description)
    if output == "json":
        # The same `pending_activities` key with or without a worker, so scripts need one path.
        document = (
            json.loads(full.model_dump_json()) if full is not None else _fallback_json(description)
        )
        document["pending_activities"] = [p.model_dump(mode="json") for p in pending]
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return
    if full is None:
        err.print("[yellow]no worker answered the status query; showing the server's view[/yellow]")
        out.print(_fallback_table(description))
    else:
        out.print(render_status(full))
    in_flight = render_pending(pending)
    if in_flight is not None:
        out.print(in_flight)


async def _fetch_status(
    client: Client, target: str
) -> tuple[StatusResult | None, WorkflowExecutionDescription]:
    description = await describe_rollout(client, target)
    try:
        return await query_status(client, target), description
    except RPCError:
        return None, description


def _fallback_json(description: WorkflowExecutionDescription) -> dict[str, Any]:
    attributes = description.typed_search_attributes
    return {
        "workflow_id": description.id,
        "status": description.status.name.lower() if description.status else None,
        "target": attributes.get(TARGET),
        "stage": attributes.get(STAGE),
        "phase": attributes.get(PHASE),
        "percent": attributes.get(PERCENT),
        "candidate": attributes.get(CANDIDATE),
    }


def _fallback_table(description: WorkflowExecutionDescription) -> Table:
    table = Table(title=f"{description.id} (from search attributes)", show_header=False)
    for key, value in _fallback_json(description).items():
        table.add_row(key, str(value))
    return table


def render_pending(pending: list[PendingActivity]) -> Table | None:
    """The activities that failed at least once and are being retried, or None if none is.

    Errors come from servers and routers, so every cell is plain Text, never rich markup.
    """
    retrying = [activity for activity in pending if activity.retrying]
    if not retrying:
        return None
    table = Table(title="in flight (retrying)", title_justify="left")
    for column in ("activity", "attempt", "state", "next attempt (UTC)", "last error"):
        table.add_column(column)
    for activity in retrying:
        limit = activity.maximum_attempts
        attempt = f"{activity.attempt}/{limit}" if limit else f"{activity.attempt} (no limit)"
        next_at = activity.next_attempt_at
        table.add_row(
            *(
                Text(cell)
                for cell in (
                    activity.activity,
                    attempt,
                    activity.state,
                    f"{next_at:%H:%M:%S}" if next_at else "",
                    activity.last_error or "",
                )
            )
        )
    return table


def render_status(status: StatusResult) -> Group:
    """The status as rich tables: summary, last check, recent audit."""
    spec, state = status.spec, status.state
    body = spec.spec
    stage_count = len(body.stages)
    index = min(state.stage_index, stage_count - 1)
    summary = Table(title=f"rollout {spec.metadata.name}", show_header=False, title_justify="left")
    summary.add_row("target", body.target)
    summary.add_row("versions", f"{body.incumbent.version} -> {body.candidate.version}")
    summary.add_row("phase", state.phase.value)
    summary.add_row("stage", f"{body.stages[index].name} ({index + 1}/{stage_count})")
    if state.escalation:
        summary.add_row("needs a human", state.escalation)
    if state.rollback:
        summary.add_row("rollback", f"{state.rollback.actor}: {state.rollback.reason}")
    if state.outcome:
        summary.add_row("outcome", state.outcome)
    parts: list[Table] = [summary]
    if state.last_check:
        checks = Table(
            title=f"last check {state.last_check.checked_at:%H:%M:%S} UTC "
            f"(every {format_duration(body.check_interval)})",
            title_justify="left",
        )
        for column in ("trigger", "verdict", "evidence"):
            checks.add_column(column)
        for verdict in state.last_check.verdicts:
            checks.add_row(verdict.trigger, verdict.outcome.value, verdict.detail)
        parts.append(checks)
    audit = Table(title="audit (latest 8)", title_justify="left")
    for column in ("at (UTC)", "actor", "action", "stage", "reason"):
        audit.add_column(column)
    for entry in state.audit[-8:]:
        audit.add_row(
            f"{entry.at:%H:%M:%S}", entry.actor, entry.action, entry.stage or "", entry.reason
        )
    parts.append(audit)
    return Group(*parts)


@app.command()
def watch(
    target: TargetArgument,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
) -> None:
    """Follow a rollout live until it ends."""

    async def work(client: Client) -> StatusResult:
        with Live(console=out, auto_refresh=False) as live:
            while True:
                current = await query_status(client, target)
                live.update(render_status(current), refresh=True)
                if current.state.phase in TERMINAL_PHASES:
                    return current
                await asyncio.sleep(interval)

    final = _run(work)
    out.print(f"rollout ended: {final.state.phase.value}: {final.state.outcome}", highlight=False)


@app.command(name="list")
def list_rollouts(
    phase: Annotated[str | None, typer.Option(help="Only this phase, e.g. running.")] = None,
    target: Annotated[str | None, typer.Option(help="Only this target.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
) -> None:
    """List rollouts through lockgate's search attributes, newest first."""
    query = ["WorkflowType = 'Rollout'"]
    if phase:
        query.append(f"LockgatePhase = '{phase}'")
    if target:
        query.append(f"LockgateTarget = '{target}'")

    async def work(client: Client) -> list[Any]:
        return [w async for w in client.list_workflows(" AND ".join(query), limit=limit)]

    table = Table(title="rollouts")
    for column in ("workflow", "target", "candidate", "stage", "phase", "percent", "status"):
        table.add_column(column)
    for execution in _run(work):
        attributes = execution.typed_search_attributes
        table.add_row(
            execution.id,
            attributes.get(TARGET) or "",
            attributes.get(CANDIDATE) or "",
            attributes.get(STAGE) or "",
            attributes.get(PHASE) or "",
            f"{attributes.get(PERCENT) or 0:g}%",
            execution.status.name.lower() if execution.status else "",
        )
    out.print(table)


@app.command()
def history(
    target: TargetArgument,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    """Show a rollout's whole audit trail: every command and automatic decision, who and why."""
    if output not in ("table", "json"):
        raise typer.BadParameter("use table or json", param_hint="--output")
    trail = _run(lambda client: fetch_audit_trail(client, target))
    for note in trail.notes:
        err.print(f"[yellow]{escape(note)}[/yellow]", highlight=False)
    if output == "json":
        print(trail.model_dump_json(indent=2))
    else:
        out.print(render_audit(trail))


def render_audit(trail: AuditTrail) -> Table:
    """The audit trail as one rich table; cells are plain text, never rich markup."""
    source = "" if trail.complete else ", rebuilt from history"
    table = Table(
        title=f"audit trail of {trail.workflow_id} ({trail.phase}{source})",
        title_justify="left",
        caption=trail.outcome,
        caption_justify="left",
    )
    for column in ("at (UTC)", "who", "action", "stage", "reason", "evidence"):
        table.add_column(column)
    for entry in trail.entries:
        cells = (f"{entry.at:%Y-%m-%d %H:%M:%S}", entry.actor, entry.action, entry.stage or "")
        # An automatic decision shows the verdict it was taken on: a human reads why, here.
        verdict = entry.evidence
        evidence = f"{verdict.outcome.value}: {verdict.detail}" if verdict is not None else ""
        table.add_row(*(Text(cell) for cell in (*cells, entry.reason, evidence)))
    return table


@app.command()
def report(
    target: TargetArgument,
    out_path: Annotated[
        Path | None,
        typer.Option("--out", help="HTML file to write (default: lockgate-report-<target>.html)."),
    ] = None,
) -> None:
    """Write a rollout's report: one self-contained HTML page with plots, stages and audit."""
    # matplotlib takes a moment to import; only this command needs it.
    from runtime.report import render_report

    record = _run(lambda client: fetch_record(client, target))
    path = out_path or Path(f"lockgate-report-{target}.html")
    page = render_report(record, generated_at=datetime.now(UTC))
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write the report to {path}: {exc}")
    for note in record.notes:
        err.print(f"[yellow]{escape(note)}[/yellow]", highlight=False)
    out.print(
        f"wrote {path}: {record.state.phase.value}, {len(record.checks)} checks over "
        f"{len(record.run_ids)} run(s), {len(record.spec.spec.rollback_triggers)} trigger plot(s)",
        highlight=False,
        markup=False,
    )


@app.command()
def demo(
    scenario: Annotated[
        str,
        typer.Option(
            help="healthy (promoted); regression, violations, drifting (rolled back live) or "
            "broken (refused by the offline gate)."
        ),
    ] = "healthy",
    rate: Annotated[float, typer.Option(help="Simulated decisions per second.")] = 200.0,
    keep: Annotated[bool, typer.Option(help="Keep the stack up after the rollout ends.")] = True,
    fast: Annotated[bool, typer.Option(help="Short bakes (seconds), for a quick look.")] = False,
) -> None:
    """Run a whole rollout on this machine: Temporal, worker, gateway, policies, traffic."""
    if scenario not in EXPECTED_PHASE:
        raise typer.BadParameter(f"use one of {', '.join(EXPECTED_PHASE)}", param_hint="--scenario")
    options = DemoOptions(scenario=scenario, rate=rate, keep=keep, fast=fast)
    try:
        as_expected = asyncio.run(run_demo(options, out, render_status))
    except KeyboardInterrupt:
        out.print("stopped")
        return
    except RuntimeError as exc:
        _fail(str(exc))
    if not as_expected:
        _fail(f"the {scenario} scenario did not end as it should ({EXPECTED_PHASE[scenario]})")


def _command(name: str, help_text: str) -> None:
    def command(target: TargetArgument, reason: ReasonOption, actor: ActorOption = None) -> None:
        result = _run(
            lambda client: send_command(client, target, name, actor=_actor(actor), reason=reason)
        )
        out.print(f"{name}: {result.message} (phase {result.phase.value})", highlight=False)

    command.__doc__ = help_text
    app.command(name=name)(command)


_command("approve", "Approve the stage awaiting approval (never your own rollout).")
_command("pause", "Stop advancing (checks and automatic rollback continue).")
_command("resume", "Allow a paused rollout to advance again.")
_command("promote", "End the current stage's bake now and move to the next stage.")
_command("rollback", "Send all traffic back to the incumbent now.")


def main() -> None:
    """Console entry point: run the app, then leave without interpreter teardown."""
    try:
        app()
        code = EXIT_OK
    except SystemExit as exc:
        code = (
            exc.code if isinstance(exc.code, int) else EXIT_OK if exc.code is None else EXIT_FAILED
        )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()

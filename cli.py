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
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.service import RPCError

from rollout_specs import RolloutSpec, SpecError, dump_schema, format_duration, load_spec
from rollout_specs.models import SLUG_PATTERN
from runtime.client import connect
from runtime.demo import EXPECTED_PHASE, DemoOptions, run_demo
from runtime.history import AuditTrail, HistoryUnreadable, fetch_audit_trail, fetch_record
from runtime.listing import rollouts_query
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
from workflows.state import TERMINAL_PHASES, Phase
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


Styled = tuple[str, str]
"""A piece of lockgate's own wording with its rich style, e.g. `("error:", "red")`."""


def literal(value: object) -> Text:
    """Text from a user, a spec or a server, to be printed exactly as written.

    Rich reads `[...]` in a plain string as markup: `[/]` in a reason crashes the command and
    `[bold]` or `[link=...]` restyles what an operator reads. A `Text` is never parsed, so every
    cell, title, caption and message built from data goes through here (or `line`).
    """
    return Text("" if value is None else str(value))


def line(*parts: str | Styled | Text) -> Text:
    """One line of output: strings are literal data, `(text, style)` pairs lockgate's styling.

    Only the styles are lockgate's; whatever the strings contain is shown as written.
    """
    return Text.assemble(*parts)


def _row(table: Table, *cells: object) -> None:
    """Add a row whose every cell is literal text (see `literal`)."""
    table.add_row(*(literal(cell) for cell in cells))


def _fail(message: str) -> NoReturn:
    err.print(line(("error:", "red"), " ", message))
    raise typer.Exit(EXIT_FAILED)


def _load(path: Path) -> RolloutSpec:
    try:
        return load_spec(path)
    except SpecError as exc:
        err.print(line(("invalid spec", "red"), f" {path}:"))
        for problem in exc.problems:
            err.print(line(f"  {path}: {problem}"))
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
            line(
                ("ok", "green"),
                f" {path}: {body.target} {body.incumbent.version} -> "
                f"{body.candidate.version}: {stages}",
            )
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
        line(
            "submitted ",
            (spec.workflow_id, "bold"),
            f" (run {run_id}); follow it with `lockgate watch {spec.spec.target}`",
        )
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
    table = Table(title=literal(f"{description.id} (from search attributes)"), show_header=False)
    for key, value in _fallback_json(description).items():
        _row(table, key, str(value))
    return table


def render_pending(pending: list[PendingActivity]) -> Table | None:
    """The activities that failed at least once and are being retried, or None if none is.

    Errors come from servers and routers, so every cell is literal text, never rich markup.
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
        _row(
            table,
            activity.activity,
            attempt,
            activity.state,
            f"{next_at:%H:%M:%S}" if next_at else "",
            activity.last_error or "",
        )
    return table


def render_status(status: StatusResult) -> Group:
    """The status as rich tables: summary, last check, recent audit.

    Versions, actors, reasons, escalations and verdict details are shown literally (`_row`).
    """
    spec, state = status.spec, status.state
    body = spec.spec
    stage_count = len(body.stages)
    index = min(state.stage_index, stage_count - 1)
    summary = Table(
        title=literal(f"rollout {spec.metadata.name}"), show_header=False, title_justify="left"
    )
    _row(summary, "target", body.target)
    _row(summary, "versions", f"{body.incumbent.version} -> {body.candidate.version}")
    _row(summary, "phase", state.phase.value)
    _row(summary, "stage", f"{body.stages[index].name} ({index + 1}/{stage_count})")
    if state.escalation:
        _row(summary, "needs a human", state.escalation)
    if state.rollback:
        _row(summary, "rollback", f"{state.rollback.actor}: {state.rollback.reason}")
    if state.outcome:
        _row(summary, "outcome", state.outcome)
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
            _row(checks, verdict.trigger, verdict.outcome.value, verdict.detail)
        parts.append(checks)
    audit = Table(title="audit (latest 8)", title_justify="left")
    for column in ("at (UTC)", "actor", "action", "stage", "reason"):
        audit.add_column(column)
    for entry in state.audit[-8:]:
        _row(audit, f"{entry.at:%H:%M:%S}", entry.actor, entry.action, entry.stage, entry.reason)
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
    out.print(line(f"rollout ended: {final.state.phase.value}: {final.state.outcome}"))


@app.command(name="list")
def list_rollouts(
    phase: Annotated[
        Phase | None, typer.Option(help="Only this phase, e.g. escalated.", show_choices=True)
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Only this target (a spec.target: a-z, 0-9 and -).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
) -> None:
    """List rollouts through lockgate's search attributes, newest first.

    `--phase` takes only lockgate's phases and `--target` only a valid target, and both are
    quoted into the visibility query (runtime.listing), so no value can rewrite the filter.
    """
    if target is not None and not re.fullmatch(SLUG_PATTERN, target):
        raise typer.BadParameter(
            f"{target!r} is not a target: use lowercase letters, digits and '-' (spec.target)",
            param_hint="--target",
        )
    query = rollouts_query(phase=phase, target=target)

    async def work(client: Client) -> list[Any]:
        return [w async for w in client.list_workflows(query, limit=limit)]

    table = Table(title="rollouts")
    for column in ("workflow", "target", "candidate", "stage", "phase", "percent", "status"):
        table.add_column(column)
    for execution in _run(work):
        attributes = execution.typed_search_attributes
        _row(
            table,
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
        err.print(line((note, "yellow")))
    if output == "json":
        print(trail.model_dump_json(indent=2))
    else:
        out.print(render_audit(trail))


def render_audit(trail: AuditTrail) -> Table:
    """The audit trail as one rich table; every text is literal, never rich markup."""
    source = "" if trail.complete else ", rebuilt from history"
    table = Table(
        title=literal(f"audit trail of {trail.workflow_id} ({trail.phase}{source})"),
        title_justify="left",
        caption=literal(trail.outcome) if trail.outcome else None,
        caption_justify="left",
    )
    for column in ("at (UTC)", "who", "action", "stage", "reason", "evidence"):
        table.add_column(column)
    for entry in trail.entries:
        cells = (f"{entry.at:%Y-%m-%d %H:%M:%S}", entry.actor, entry.action, entry.stage or "")
        # An automatic decision shows the verdict it was taken on: a human reads why, here.
        verdict = entry.evidence
        evidence = f"{verdict.outcome.value}: {verdict.detail}" if verdict is not None else ""
        _row(table, *cells, entry.reason, evidence)
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
        err.print(line((note, "yellow")))
    out.print(
        line(
            f"wrote {path}: {record.state.phase.value}, {len(record.checks)} checks over "
            f"{len(record.run_ids)} run(s), {len(record.spec.spec.rollback_triggers)} trigger "
            "plot(s)"
        )
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
        out.print(line(f"{name}: {result.message} (phase {result.phase.value})"))

    command.__doc__ = help_text
    app.command(name=name)(command)


_command("approve", "Approve the stage awaiting approval (never your own rollout).")
_command("pause", "Stop advancing (checks and automatic rollback continue).")
_command("resume", "Allow a paused rollout to advance again.")
_command("promote", "End the current stage's bake now and move to the next stage.")
_command("rollback", "Send all traffic back to the incumbent now.")


@app.command(name="codec-server")
def codec_server(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8888,
    origin: Annotated[
        list[str] | None,
        typer.Option(
            help="The Temporal UI's origin, allowed by CORS; repeat for several (default: "
            "http://127.0.0.1:<LOCKGATE_UI_PORT> and http://localhost:<LOCKGATE_UI_PORT>)."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Interface to bind; whoever reaches it can decrypt payloads.")
    ] = "127.0.0.1",
) -> None:
    """Serve the Temporal UI's remote codec endpoint, so it shows encrypted payloads decoded.

    Uses the same LOCKGATE_CODEC_KEYS as the worker; point the UI at it (`--ui-codec-endpoint`,
    or the UI's codec settings) or `temporal workflow show --codec-endpoint`.
    """
    # Imported here: only this long-running command needs uvicorn and the HTTP app.
    import uvicorn
    from pydantic import ValidationError

    from runtime.client import payload_codec
    from runtime.codec import ENV_VAR, codec_server_app

    try:
        settings = Settings()
    except ValidationError as exc:
        # The validator's own message (which names the entry, never the key), without pydantic's
        # "Value error, " prefix.
        _fail("; ".join(str(e.get("ctx", {}).get("error", e["msg"])) for e in exc.errors()))
    codec = payload_codec(settings)
    if codec is None:
        _fail(f"{ENV_VAR} is not set: payloads are stored in clear and need no codec server")
    ui_port = settings.lockgate_ui_port
    origins = origin or [f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"]
    err.print(
        f"codec server on http://{host}:{port} (encrypting with key {codec.encrypting_key_id!r}, "
        f"decrypting {', '.join(codec.key_ids)}) for the UI at {', '.join(origins)}",
        highlight=False,
        markup=False,
    )
    uvicorn.run(codec_server_app(codec, origins), host=host, port=port, log_level="info")


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

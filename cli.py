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
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.service import RPCError

from activities.reviews import MAX_LIST, Proposal, Verdict
from rollout_specs import RolloutSpec, SpecError, dump_schema, format_duration, load_spec
from rollout_specs.models import SLUG_PATTERN
from runtime.client import ConnectionFailed, connect_to, data_converter
from runtime.demo import EXPECTED_PHASE, DemoOptions, run_demo
from runtime.history import AuditTrail, HistoryUnreadable, fetch_audit_trail, fetch_record
from runtime.listing import rollout_row, rollouts_query, status_document
from runtime.rollouts import (
    Command,
    CommandRefused,
    PendingActivity,
    RolloutAlreadyRunning,
    RolloutNotFound,
    describe_rollout,
    list_reviews,
    pending_activities,
    query_status,
    send_command,
    send_review,
    submit_rollout,
)
from runtime.settings import ConnectionSettingError, Settings
from runtime.watching import (
    WatchEvent,
    WatchResult,
    json_line,
    parse_timeout,
    plain_line,
    watch_rollout,
)
from workflows.commands import review_progress
from workflows.messages import PendingReviewsResult, StatusResult
from workflows.state import Phase

if TYPE_CHECKING:
    from runtime.plan import RolloutPlan

if TYPE_CHECKING:  # imported when used: the backtest needs the judges, a slow import
    from runtime.backtest import Backtest

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


_connection_overrides: dict[str, Any] = {}
"""The global connection flags given on this command line, as `Settings` overrides."""


@app.callback()
def _global_options(
    address: Annotated[
        str | None,
        typer.Option(help="Temporal frontend host:port (default: TEMPORAL_ADDRESS, the profile)."),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(help="Temporal namespace (default: TEMPORAL_NAMESPACE, the profile)."),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help="Profile of the Temporal config file (TEMPORAL_CONFIG_FILE, by default "
            "~/.config/temporalio/temporal.toml) (default: TEMPORAL_PROFILE, then 'default')."
        ),
    ] = None,
    tls_server_name: Annotated[
        str | None,
        typer.Option(help="TLS server name (SNI) to ask for (default: TEMPORAL_TLS_SERVER_NAME)."),
    ] = None,
) -> None:
    """Staged, self-rolling-back rollouts of RL policies, on Temporal."""
    given = {
        "temporal_address": address,
        "temporal_namespace": namespace,
        "temporal_profile": profile,
        "temporal_tls_server_name": tls_server_name,
    }
    _connection_overrides.update({key: value for key, value in given.items() if value})


def _run(work: Callable[[Client], Awaitable[T]]) -> T:
    """Connect with the flags', environment's or profile's settings and run `work`.

    Connection problems (a bad setting, TLS mismatch, unknown namespace, no server) end in one
    line naming what to change; a remote address without TLS is warned about on stderr.
    """
    settings = Settings(**_connection_overrides)

    async def main() -> T:
        connection = settings.connection()
        warning = connection.plaintext_warning()
        if warning is not None:
            err.print(line(("warning:", "yellow"), " ", warning))
        client = await connect_to(connection, data_converter(settings))
        return await work(client)

    try:
        return asyncio.run(main())
    except (
        RolloutAlreadyRunning,
        RolloutNotFound,
        CommandRefused,
        HistoryUnreadable,
        ConnectionFailed,
        ConnectionSettingError,
    ) as exc:
        _fail(str(exc))
    except RPCError as exc:
        _fail(f"Temporal refused the request: {exc}")


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


def _preflight(path: Path, spec: RolloutSpec, skip: str = "") -> bool:
    """Ask what the spec points at once (runtime.preflight); print every problem; True if none.

    Problems are printed like spec errors (`file: field: fix`), since they are fixed the same way.
    """
    from runtime.preflight import preflight

    report = asyncio.run(preflight(spec))
    if report.ok:
        err.print(line(("preflight ok", "green"), f" {path}: {report.summary()}"))
        return True
    err.print(line(("preflight failed", "red"), f" {path} (nothing was started):"))
    for problem in report.problems:
        err.print(line(f"  {path}: {problem}"))
    if skip:
        err.print(line(f"  fix these, or skip the checks with {skip}"))
    return False


TrafficOption = Annotated[
    float | None,
    typer.Option("--traffic", help="Decisions per second reaching the target (both arms).", min=0),
]
SdOption = Annotated[
    list[str] | None,
    typer.Option("--sd", help="A metric's standard deviation, e.g. reward=0.5 (repeatable)."),
]
RateOption = Annotated[
    list[str] | None,
    typer.Option("--rate", help="A 0/1 metric's rate, e.g. reward=0.1; sets its sd (repeatable)."),
]
MeanOption = Annotated[
    list[str] | None,
    typer.Option("--mean", help="A metric's mean, for relative margins, e.g. reward=2.1."),
]
ScopeShareOption = Annotated[
    list[str] | None,
    typer.Option(
        "--scope-share",
        help="A scope's share of the traffic: LABEL=VALUE:SHARE (region=eu-west-1:0.3) or "
        "STAGE:SHARE (repeatable).",
    ),
]
FromMonitoringOption = Annotated[
    bool,
    typer.Option(
        "--from-prometheus",
        help="Read the incumbent's mean and variance of each metric with the spec's own metric "
        "queries from its monitoring (any monitoring type); --sd/--rate win.",
    ),
]
WindowOption = Annotated[
    str, typer.Option("--window", help="The window --from-prometheus reads over, e.g. 1h.")
]


def _plan(
    spec: RolloutSpec,
    traffic: float,
    options: tuple[list[str] | None, list[str] | None, list[str] | None, list[str] | None],
    from_monitoring: bool,
    window: str,
) -> RolloutPlan:
    """The plan of `spec` (runtime.plan); a bad option is exit 2, monitoring's refusal exit 1."""
    from rollout_specs import parse_duration
    from runtime.plan import MonitoringUnanswered, PlanInputError, build_plan

    sds, rates, means, shares = (list(values or ()) for values in options)
    try:
        span = parse_duration(window) if from_monitoring else None
        return build_plan(
            spec, traffic, sds=sds, rates=rates, means=means, scope_shares=shares,
            from_monitoring=span,
        )  # fmt: skip
    except MonitoringUnanswered as exc:
        _fail(str(exc))
    except (PlanInputError, ValueError) as exc:
        err.print(line(("error:", "red"), " ", str(exc)))
        raise typer.Exit(EXIT_USAGE) from exc


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Spec files to check.")],
    preflight: Annotated[
        bool,
        typer.Option(
            "--preflight",
            help="Also ask each spec's router, candidate and monitoring once (as submit does).",
        ),
    ] = False,
    plan: Annotated[
        bool, typer.Option("--plan", help="Also print each spec's plan (as `lockgate plan`).")
    ] = False,
    traffic: TrafficOption = None,
    sd: SdOption = None,
    rate: RateOption = None,
    mean: MeanOption = None,
    scope_share: ScopeShareOption = None,
) -> None:
    """Check specs without submitting them (for a spec repo's CI)."""
    if plan and not traffic:
        raise typer.BadParameter("--plan needs --traffic DECISIONS_PER_S", param_hint="--traffic")
    invalid = 0
    for path in files:
        try:
            spec = _load(path)
        except typer.Exit:
            invalid += 1
            continue
        if preflight and not _preflight(path, spec):
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
        if plan and traffic:
            from runtime.plan import render_plan

            out.print(render_plan(_plan(spec, traffic, (sd, rate, mean, scope_share), False, "")))
    if invalid:
        raise typer.Exit(EXIT_USAGE)


@app.command()
def plan(
    file: Annotated[Path, typer.Argument(help="The rollout spec.")],
    traffic: Annotated[
        float,
        typer.Option(
            "--traffic", help="Decisions per second reaching the target (both arms).", min=0
        ),
    ],
    sd: SdOption = None,
    rate: RateOption = None,
    mean: MeanOption = None,
    scope_share: ScopeShareOption = None,
    from_prometheus: FromMonitoringOption = False,
    window: WindowOption = "1h",
    output: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    """How long each stage needs for its evidence at a given traffic, before you submit.

    For every split stage: the median time until its advance_when and each compare trigger can
    show non-inferiority (candidate equal to the incumbent), and until each compare trigger
    catches a drop of twice its max_drop, from the same always-valid boundaries the rollout
    uses. Warns where min_duration is shorter than the evidence needs and where a stage could
    never earn its gate. docs/planning.md explains the method and its assumptions.
    """
    if output not in ("table", "json"):
        raise typer.BadParameter("use table or json", param_hint="--output")
    spec = _load(file)
    result = _plan(spec, traffic, (sd, rate, mean, scope_share), from_prometheus, window)
    from runtime.plan import plan_document, render_plan

    if output == "json":
        print(json.dumps(plan_document(result), indent=2, ensure_ascii=False))
        return
    out.print(render_plan(result))


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
    preflight: Annotated[
        bool,
        typer.Option(
            "--preflight/--no-preflight",
            help="First ask the router, the candidate and monitoring once (exit 2 on a problem).",
        ),
    ] = True,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Then follow the rollout as `watch` does and exit with its outcome's code "
            "(0 completed, 3 rolled back, 4 escalated, 5 timed out, 6 abandoned; docs/ci.md).",
        ),
    ] = False,
    timeout: TimeoutOption = None,
) -> None:
    """Validate a spec, then start its rollout. Refused while the target has a running one.

    With --wait (implied by --timeout) it then gates on the outcome, for CI: see `watch`.
    """
    spec = _load(file)
    if preflight and not _preflight(file, spec, skip="--no-preflight"):
        raise typer.Exit(EXIT_USAGE)
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
    if wait or timeout is not None:
        _gate(spec.spec.target, output="table", give_up_after=timeout)


@app.command()
def status(
    target: TargetArgument,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    """Show where a rollout is and why (falls back to the server's view without a worker).

    Activities the server is retrying (a rollback the router refuses, say) are listed with their
    attempt count and last error: that is why a rollout is stuck, and it needs no worker.
    `-o json` has one shape with or without a worker (runtime.listing.status_document): its
    `source` key says whether the workflow answered (`query`) or only the server (`description`).
    """
    if output not in ("table", "json"):
        raise typer.BadParameter("use table or json", param_hint="--output")
    full, description = _run(lambda client: _fetch_status(client, target))
    pending = pending_activities(description)
    if output == "json":
        entries = [p.model_dump(mode="json") for p in pending]
        document = status_document(description, full, entries)
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
    """The server's summary of a rollout (a `list -o json` row), for the worker-less table."""
    return rollout_row(description)


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
    stages = body.course  # with a holdback, its last stage is `holdback`
    stage_count = len(stages)
    index = min(state.stage_index, stage_count - 1)
    summary = Table(
        title=literal(f"rollout {spec.metadata.name}"), show_header=False, title_justify="left"
    )
    _row(summary, "target", body.target)
    _row(summary, "versions", f"{body.incumbent.version} -> {body.candidate.version}")
    _row(summary, "phase", state.phase.value)
    _row(summary, "stage", f"{stages[index].name} ({index + 1}/{stage_count})")
    if state.escalation:
        _row(summary, "needs a human", state.escalation)
    if state.rollback:
        _row(summary, "rollback", f"{state.rollback.actor}: {state.rollback.reason}")
    if state.outcome:
        _row(summary, "outcome", state.outcome)
    if body.guardrails.review is not None:
        _row(summary, "reviews", review_progress(spec, state))
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


def _timeout_option(text: str | None) -> float | None:
    """`--timeout` in seconds; a bad duration is a usage error (exit 2) before anything runs."""
    if text is None:
        return None
    try:
        return parse_timeout(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        parser=_timeout_option,
        metavar="DURATION",
        help="Give up after this long (90s, 30m, 1h30m) and exit 5 (4 if held or escalated); "
        "default: no limit.",
    ),
]


def _gate(
    target: str,
    *,
    output: str,
    give_up_after: float | None,
    interval: float = 2.0,
    until_terminal: bool = False,
) -> NoReturn:
    """Watch `target` until its outcome is known, then exit with its code (runtime.outcomes).

    On a terminal with `-o table`: the live view. Otherwise one line per event, plain text
    with a UTC timestamp (`table` piped, or `lines`) or one JSON object (`json`), flushed as it
    happens so a CI log shows progress.
    """
    live_view = output == "table" and sys.stdout.isatty()

    def emit(event: WatchEvent) -> None:
        if output == "json":
            print(json_line(event), flush=True)
        elif not live_view:
            print(plain_line(event), flush=True)

    async def work(client: Client) -> WatchResult:
        options: dict[str, Any] = {
            "give_up_after": give_up_after,
            "interval": interval,
            "until_terminal": until_terminal,
        }
        if not live_view:
            return await watch_rollout(client, target, emit=emit, **options)
        with Live(console=out, auto_refresh=False) as live:

            def show(current: StatusResult) -> None:
                live.update(render_status(current), refresh=True)

            return await watch_rollout(client, target, emit=emit, show=show, **options)

    result = _run(work)
    if live_view:
        out.print(line(result.final.message, f" (exit {int(result.code)}: {result.code.label})"))
    raise typer.Exit(int(result.code))


WatchOutputOption = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        help="table (a live view on a terminal, else one line per event), lines, or json "
        "(one JSON object per event).",
    ),
]


@app.command()
def watch(
    target: TargetArgument,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.1)] = 2.0,
    timeout: TimeoutOption = None,
    output: WatchOutputOption = "table",
    until_terminal: Annotated[
        bool,
        typer.Option(
            "--until-terminal",
            help="Keep watching through an escalation until the rollout completes, rolls back "
            "or is abandoned (by default an escalation ends the watch with exit 4).",
        ),
    ] = False,
) -> None:
    """Follow a rollout until its outcome is known; the exit code says which (docs/ci.md).

    0 completed, 3 rolled back, 4 escalated (a human is needed: a CI job cannot approve, so
    the watch ends there unless --until-terminal), 5 --timeout expired (waiting for an approval
    included), 6 abandoned, 1 an error (no server, no such rollout), 2 bad input. When stdout
    is not a terminal it prints one line per event instead of the live view.
    """
    if output not in ("table", "lines", "json"):
        raise typer.BadParameter("use table, lines or json", param_hint="--output")
    _gate(
        target,
        output=output,
        give_up_after=timeout,
        interval=interval,
        until_terminal=until_terminal,
    )


@app.command(name="list")
def list_rollouts(
    phase: Annotated[
        Phase | None, typer.Option(help="Only this phase, e.g. escalated.", show_choices=True)
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Only this target (a spec.target: a-z, 0-9 and -).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many.", min=1)] = 50,
    output: Annotated[
        str, typer.Option("--output", "-o", help="table or json (an array of objects)")
    ] = "table",
) -> None:
    """List rollouts through lockgate's search attributes, newest first.

    `--phase` takes only lockgate's phases (any other value is exit 2, with the phases listed)
    and `--target` only a valid target, and both are quoted into the visibility query
    (runtime.listing), so no value can rewrite the filter. `-o json` prints an array of objects
    with the same keys every time (runtime.listing.ROW_KEYS), null where a value is unknown.
    """
    if output not in ("table", "json"):
        raise typer.BadParameter("use table or json", param_hint="--output")
    if target is not None and not re.fullmatch(SLUG_PATTERN, target):
        raise typer.BadParameter(
            f"{target!r} is not a target: use lowercase letters, digits and '-' (spec.target)",
            param_hint="--target",
        )
    query = rollouts_query(phase=phase, target=target)

    async def work(client: Client) -> list[dict[str, Any]]:
        return [rollout_row(w) async for w in client.list_workflows(query, limit=limit)]

    rows = _run(work)
    if output == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table(title="rollouts")
    columns = ("workflow_id", "target", "candidate", "stage", "phase", "percent", "status")
    for column in ("workflow", *columns[1:]):
        table.add_column(column)
    for row in rows:
        cells = {key: "" if row[key] is None else row[key] for key in columns}
        cells["percent"] = f"{row['percent'] or 0:g}%"
        _row(table, *cells.values())
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


def _instant_option(text: str) -> str:
    """`--from`/`--to` checked before anything runs (a bad time is exit 2); parsed later."""
    from runtime.backtest import parse_instant

    try:
        parse_instant(text, datetime.now(UTC))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return text


@app.command()
def backtest(
    file: Annotated[Path, typer.Argument(help="The rollout spec.")],
    start: Annotated[
        str,
        typer.Option(
            "--from",
            parser=_instant_option,
            metavar="TIME",
            help="Where the replayed rollout starts: RFC 3339 (2026-11-30T22:00:00Z), now, or a "
            "duration ago (-2h).",
        ),
    ],
    end: Annotated[
        str,
        typer.Option(
            "--to", parser=_instant_option, metavar="TIME", help="Where the replay ends (now)."
        ),
    ] = "now",
    stage: Annotated[
        str | None,
        typer.Option(help="Model the rollout from this stage on (the earlier ones are skipped)."),
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    """Replay a spec's triggers over monitoring's records, as the rollout would have judged them.

    Would these triggers have caught that incident? No router is asked or changed: every
    check_interval from --from, a check is judged as of its instant by the worker's judges and
    decided by the workflow's rules (docs/backtest.md). Exit 0 when it would have completed or
    was still passing, 3 when it would have rolled back, 4 when held or escalated at the end.
    """
    from runtime.backtest import (
        BacktestError,
        MonitoringUnreachable,
        backtest_spec,
        parse_instant,
    )

    if output not in ("table", "json"):
        raise typer.BadParameter("use table or json", param_hint="--output")
    spec = _load(file)
    now = datetime.now(UTC)
    window = parse_instant(start, now), parse_instant(end, now)
    try:
        result = asyncio.run(backtest_spec(spec, *window, first_stage=stage, now=now))
    except MonitoringUnreachable as exc:
        _fail(str(exc))
    except BacktestError as exc:  # refused (monitoring without history), or a bad window
        err.print(line(("cannot backtest", "red"), f" {file}: {exc}"))
        raise typer.Exit(EXIT_USAGE) from exc
    if output == "json":
        print(result.model_dump_json(indent=2))
    else:
        out.print(render_backtest(result))
    raise typer.Exit(int(result.exit_code))


REASON_SHOWN = 240
"""The characters of a decision's reason a backtest's table shows; `-o json` has all of it."""


def render_backtest(result: Backtest) -> Group:
    """A backtest as rich tables: the timeline (alike checks folded), the stages, the decision.

    Verdicts and reasons come from monitoring and the spec, so every cell is literal text.
    """
    from runtime.backtest import timeline

    def clock(moment: datetime | None) -> str:
        return "" if moment is None else f"{moment:%H:%M:%S}"

    title = (
        f"backtest of {result.rollout} ({result.target}), {result.start:%Y-%m-%d %H:%M:%S} to "
        f"{result.end:%H:%M:%S} UTC, a check every {result.check_interval:g}s"
    )
    checks = Table(title=literal(title), title_justify="left")
    for column in ("at (UTC)", "stage", "check", "verdicts", "decision", "why"):
        checks.add_column(column)
    for row in timeline(result):
        at = clock(row.first.at) + (f"-{clock(row.last.at)}" if row.count > 1 else "")
        number = str(row.first.number) + (f"-{row.last.number}" if row.count > 1 else "")
        why = row.last.reason
        if len(why) > REASON_SHOWN:  # the queries and their errors are whole in `-o json`
            why = why[: REASON_SHOWN - 1] + "…"
        _row(checks, at, row.last.stage, number, row.verdicts, row.last.action.value, why)
    stages = Table(title="stages as modelled", title_justify="left")
    for column in ("stage", "traffic", "from", "to", "checks", "outcome"):
        stages.add_column(column)
    for span in result.stages:
        traffic = f"{span.percent:g}%" if span.percent is not None else span.mode.value
        _row(stages, span.name, traffic, clock(span.started_at), clock(span.ended_at),
             span.checks, span.outcome)  # fmt: skip
    parts: list[Table | Text] = [checks, stages]
    parts += [line(("note:", "yellow"), " ", note) for note in result.notes]
    code = result.exit_code
    parts.append(
        line((f"{result.ending.value}:", "bold"), " ", result.decision, f" (exit {int(code)})")
    )
    return Group(*parts)


@app.command()
def demo(
    scenario: Annotated[
        str,
        typer.Option(
            help="healthy (promoted); regression, violations, drifting (rolled back live); "
            "broken (refused by the offline gate); or, with the guardrails demo spec, "
            "overuse-capped, review-rejected, harm-one-region, overspend (each caught by its "
            "guardrail)."
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


def _command(name: Command, help_text: str) -> None:
    def command(target: TargetArgument, reason: ReasonOption, actor: ActorOption = None) -> None:
        result = _run(
            lambda client: send_command(client, target, name, actor=_actor(actor), reason=reason)
        )
        out.print(line(f"{name}: {result.message} (phase {result.phase.value})"))

    command.__doc__ = help_text
    app.command(name=name.value)(command)


_command(Command.APPROVE, "Approve the stage awaiting approval (never your own rollout).")
_command(Command.PAUSE, "Stop advancing (checks and automatic rollback continue).")
_command(Command.RESUME, "Allow a paused rollout to advance again.")
_command(Command.PROMOTE, "End the current stage's bake now and move to the next stage.")
_command(Command.ROLLBACK, "Send all traffic back to the incumbent now.")


@app.command(name=Command.REVIEW.value)
def review(
    target: TargetArgument,
    approve: Annotated[
        str | None, typer.Option("--approve", metavar="ID", help="Approve this proposal.")
    ] = None,
    reject: Annotated[
        str | None,
        typer.Option("--reject", metavar="ID", help="Reject this proposal (needs --reason)."),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason", "-r", help="Why; kept in the audit trail (optional for an approval)."
        ),
    ] = None,
    actor: ActorOption = None,
    limit: Annotated[
        int,
        typer.Option(help="List at most this many proposals, oldest first.", min=1, max=MAX_LIST),
    ] = 50,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    """List the candidate's proposals waiting for a human, or approve or reject one.

    The candidate's actions listed under guardrails.review are never executed: the incumbent's
    decision is served and the router keeps the candidate's as a proposal. Without --approve or
    --reject this lists them (their ids, units, actions and context); with one, the verdict is
    recorded at the router, audited (who, which proposal, why) and counted: a review trigger
    judges the reject share, and a stage's min_reviews waits for enough verdicts. The worker
    talks to the router; this command only talks to Temporal.
    """
    if output not in ("table", "json"):
        raise typer.BadParameter("use table or json", param_hint="--output")
    if approve is not None and reject is not None:
        raise typer.BadParameter("give one verdict: --approve ID or --reject ID, not both")
    proposal = approve if approve is not None else reject
    if proposal is None:
        listed = _run(lambda client: list_reviews(client, target, actor=_actor(actor), limit=limit))
        if output == "json":
            print(listed.model_dump_json(indent=2))
        else:
            out.print(render_proposals(target, listed))
        return
    verdict = Verdict.APPROVE if approve is not None else Verdict.REJECT
    why = reason or ""
    if verdict is Verdict.REJECT and not why.strip():
        raise typer.BadParameter("a rejection needs a reason", param_hint="--reason")
    result = _run(
        lambda client: send_review(
            client,
            target,
            proposal_id=proposal,
            verdict=verdict,
            actor=_actor(actor),
            reason=why,
        )
    )
    if output == "json":
        print(result.model_dump_json(indent=2))
    else:
        out.print(line(f"review: {result.message} (phase {result.phase.value})"))


def render_proposals(target: str, listed: PendingReviewsResult) -> Table:
    """The pending proposals, oldest first, with what judges them; every cell literal text."""
    counts = listed.reviews
    progress = f"{counts.approved} approved, {counts.rejected} rejected"
    if listed.min_reviews is not None:
        progress += (
            f"; stage {listed.stage}: {listed.stage_reviews} of {listed.min_reviews} proposals "
            "reviewed"
        )
    if listed.dropped:
        progress += f"; {listed.dropped} dropped from the full queue unseen"
    table = Table(
        title=literal(f"proposals waiting for review: {target} ({len(listed.pending)} shown)"),
        title_justify="left",
        caption=literal(f"reviews: {progress}"),
        caption_justify="left",
    )
    for column in ("id", "proposed (UTC)", "unit", "version", "action", "params", "context"):
        table.add_column(column)
    for proposal in listed.pending:
        _row(
            table,
            proposal.id,
            f"{proposal.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            _unit(proposal),
            proposal.version,
            proposal.action,
            _pairs(proposal.params or {}),
            _pairs(proposal.context),
        )
    return table


def _unit(proposal: Proposal) -> str:
    """The unit, with its attributes (the segments the decision counts under)."""
    if not proposal.attributes:
        return proposal.unit_id
    return f"{proposal.unit_id} ({_pairs(proposal.attributes)})"


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in values.items()
    )


@app.command(name=Command.ABANDON.value)
def abandon(
    target: TargetArgument,
    reason: ReasonOption,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: end the rollout as it is.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="End it even though it is not stuck.")
    ] = False,
    actor: Annotated[
        str | None,
        typer.Option(
            "--actor", "--as", help="Who you are (default: $LOCKGATE_ACTOR, then your OS user)."
        ),
    ] = None,
) -> None:
    """Last resort: end a stuck rollout (rolling back or escalated) without landing a route.

    For a router that cannot be fixed: the rollout stops retrying, records who and why, notifies,
    ends `abandoned` and frees the target. Whatever the router holds stays there; this prints
    it, so you know what to set by hand. Refused unless the rollout is stuck (or --force).
    """
    if not yes:
        err.print(
            line(
                ("not abandoned:", "red"),
                f" this would end the rollout of {target} where it is: lockgate stops retrying "
                "its route and stops managing the target, records who and why, notifies, and "
                "leaves the router holding whatever it holds now (to be fixed by hand). Add "
                "--yes to do it.",
            )
        )
        raise typer.Exit(EXIT_USAGE)

    async def work(client: Client) -> tuple[Any, str]:
        from runtime.preflight import router_now

        try:
            spec: RolloutSpec | None = (await query_status(client, target)).spec
        except RPCError:
            spec = None  # no worker answers; the update below says so
        result = await send_command(
            client, target, Command.ABANDON, actor=_actor(actor), reason=reason, force=force
        )
        held = await router_now(spec) if spec is not None else "unknown (no spec to read)"
        return result, held

    result, held = _run(work)
    out.print(line(f"abandon: {result.message} (was {result.phase.value}; ends abandoned)"))
    out.print(line(f"the router now holds for {target}: {held}"))
    out.print(
        line(
            f"lockgate no longer routes {target}: set the route you want by hand before the "
            "next rollout"
        )
    )


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


@app.command()
def version() -> None:
    """Print lockgate's and the Temporal SDK's versions, the two a bug report needs.

    Read from the installed packages' metadata, so it names what actually runs, not what a
    source file claims; needs no server.
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    def of(package: str) -> str:
        try:
            return installed(package)
        except PackageNotFoundError:
            return "not installed"

    print(f"lockgate {of('lockgate')}")
    print(f"temporalio {of('temporalio')}")


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

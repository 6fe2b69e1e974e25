"""`lockgate demo`: a whole rollout on one machine, watched live, in one command.

It starts the demo stack, puts the incumbent in charge of the demo target, starts the simulated
traffic, submits the demo spec, shows the rollout's progress until it ends with one clear line,
and keeps the stack up for browsing the Temporal UI until Ctrl-C, which stops every process.

SIGTERM (systemd, `docker stop`, `timeout`, a cancelled CI job) and SIGHUP (a closed terminal)
stop it the same way, at any point, start-up included, and it then exits with 128 + the
signal's number; a SIGKILL leaves the stack to the watchdog of runtime/processes.py. Either way
no process of the stack is left after a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console, RenderableType
from rich.live import Live
from rich.markup import escape
from temporalio.client import Client

from activities.contracts import Route, RouteMode
from activities.reviews import Verdict
from rollout_specs import RolloutSpec
from runtime.client import connect
from runtime.processes import exit_on_signals
from runtime.rollouts import (
    CommandRefused,
    list_reviews,
    query_status,
    send_review,
    submit_rollout,
)
from runtime.settings import Settings
from runtime.stack import PORTS_ENV, DemoStack, StackPorts, demo_spec
from simulator.reviewer import verdict_for
from simulator.scenarios import GUARDRAIL_SCENARIOS
from workflows.messages import StatusResult
from workflows.state import TERMINAL_PHASES, Phase

__all__ = ["EXPECTED_PHASE", "REVIEWER", "DemoOptions", "review_as_scripted", "run_demo"]

EXPECTED_PHASE: dict[str, Phase] = {
    "healthy": Phase.COMPLETED,
    "regression": Phase.ROLLED_BACK,
    "violations": Phase.ROLLED_BACK,
    "broken": Phase.ROLLED_BACK,
    "drifting": Phase.ROLLED_BACK,
    **dict.fromkeys(GUARDRAIL_SCENARIOS, Phase.ROLLED_BACK),
}
"""How each scenario should end; the demo's exit code says whether it did. The guardrail
scenarios run the guardrails demo spec, each candidate caught by the guardrail made for it."""
REVIEWER = "reviewer (scripted)"
"""Who judges the proposals in the guardrails demo: simulator.reviewer, standing in for a person."""


@dataclass(frozen=True)
class DemoOptions:
    """What the person asked for."""

    scenario: str = "healthy"
    rate: float = 200.0
    data_dir: Path = Path(".lockgate/demo")
    keep: bool = True
    fast: bool = False
    ports: StackPorts | None = None
    """None: the defaults, moved by LOCKGATE_DEMO_PORTS."""


async def run_demo(
    options: DemoOptions, console: Console, render: Callable[[StatusResult], RenderableType]
) -> bool:
    """Run the demo; True when the rollout ended the way the scenario should end.

    SIGTERM or SIGHUP stops it as Ctrl-C does, then raises SystemExit(128 + the signal).
    """
    try:
        with exit_on_signals():
            return await _run_demo(options, console, render)
    except SystemExit as exc:  # what Ctrl-C's "stopped" is, for SIGTERM and SIGHUP
        with contextlib.suppress(OSError, ValueError):  # a closed terminal cannot show it
            name = signal.Signals(int(str(exc.code)) - 128).name
            console.print(f"\nstopped ({name})")  # after a live view, which ends mid-line
        raise


async def _run_demo(
    options: DemoOptions, console: Console, render: Callable[[StatusResult], RenderableType]
) -> bool:
    try:
        ports = options.ports or StackPorts.from_environment()
    except ValueError as exc:
        raise RuntimeError(str(exc)) from exc
    busy = ports.busy()
    if busy:
        raise RuntimeError(
            f"ports {busy} are in use on 127.0.0.1; stop what listens there (an earlier demo or "
            f"`make run`?) and try again, or move the demo's with {PORTS_ENV} "
            "(for example gateway=18080)"
        )
    shutil.rmtree(options.data_dir, ignore_errors=True)  # the demo always starts afresh
    stack = DemoStack(options.data_dir, ports)
    try:
        with console.status("starting Temporal, the worker, policies, gateway, Prometheus..."):
            await stack.start(options.scenario)
        guarded = options.scenario in GUARDRAIL_SCENARIOS
        spec = demo_spec(stack, fast=options.fast, guardrails=guarded)
        monitoring = "Prometheus " + stack.prometheus_url if stack.prometheus else "gateway stats"
        console.print(
            f"stack up; logs in {options.data_dir / 'logs'}; judged by {monitoring}\n"
            f"Temporal UI: {stack.ui_url}/namespaces/default/workflows/{spec.workflow_id}",
            highlight=False,
        )
        await _seed_incumbent(stack, spec)
        await stack.start_traffic(spec.spec.target, options.scenario, rate=options.rate)
        started = time.monotonic()
        final = await _follow(stack, spec, console, render)
        took = time.monotonic() - started
        expected = final.state.phase is EXPECTED_PHASE[options.scenario]
        console.print()  # the live view ends without a newline
        mark = (
            "[green]PROMOTED[/green]"
            if final.state.phase is Phase.COMPLETED
            else "[red]ROLLED BACK[/red]"
        )
        outcome = escape(final.state.outcome or "")  # a rollback reason is user text
        console.print(f"{mark} after {took:.0f}s: {outcome}", highlight=False)
        if options.keep:
            console.print(
                f"The stack keeps running; browse {stack.ui_url}. Ctrl-C stops everything."
            )
            await asyncio.Event().wait()
        return expected
    finally:
        try:
            with console.status("stopping every process the demo started..."):
                stack.stop()
        finally:
            stack.stop()  # a no-op, unless the console failed (a closed terminal cannot write)


async def _seed_incumbent(stack: DemoStack, spec: RolloutSpec) -> None:
    """Before the rollout, the incumbent serves all traffic, as in production."""
    body = spec.spec
    route = Route(
        rollout_id="before-the-demo", generation=1, incumbent=body.incumbent, mode=RouteMode.OFF
    )
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.put(
            f"{stack.control_url}/v1/targets/{body.target}/route",  # the control plane
            json=route.model_dump(mode="json"),
            headers=stack.control_headers,
        )
        response.raise_for_status()


async def _follow(
    stack: DemoStack,
    spec: RolloutSpec,
    console: Console,
    render: Callable[[StatusResult], RenderableType],
) -> StatusResult:
    client = await connect(Settings(temporal_address=stack.temporal_address))
    await submit_rollout(client, spec, submitted_by="demo", task_queue="lockgate")
    reviewing = (
        asyncio.create_task(review_as_scripted(client, spec.spec.target))
        if spec.spec.guardrails.review is not None
        else None
    )
    try:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while True:
                status = await query_status(client, spec.spec.target)
                live.update(render(status), refresh=True)
                if status.state.phase in TERMINAL_PHASES:
                    return status
                await asyncio.sleep(1.0)
    finally:
        if reviewing is not None:
            reviewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reviewing


async def review_as_scripted(client: Client, target: str, every: float = 2.0) -> int:
    """Judge the proposals waiting for review, as simulator.reviewer says, until the rollout ends.

    It goes through `lockgate review`'s own path (the workflow's updates), so every verdict is
    audited and counted like a person's. Returns the number of verdicts given.
    """
    given = 0
    while True:
        try:
            waiting = await list_reviews(client, target, actor=REVIEWER, limit=50)
        except CommandRefused:  # ended, or rolling back: nothing left to review
            return given
        for proposal in waiting.pending:
            verdict, reason = verdict_for(proposal.model_dump(mode="json"))
            try:
                await send_review(
                    client,
                    target,
                    proposal_id=proposal.id,
                    verdict=Verdict(verdict),
                    actor=REVIEWER,
                    reason=reason,
                )
            except CommandRefused:
                continue  # judged meanwhile, or dropped from a full queue
            given += 1
        await asyncio.sleep(every)

"""The lockgate worker: the composition root, run as a long-lived service.

`python worker.py` reads its settings from the environment, connects to Temporal (or starts the
embedded dev server when TEMPORAL_ADDRESS is unset), builds the one pooled HTTP client and the
backend registry, and polls the task queue until SIGTERM or SIGINT, then shuts down gracefully so
no rollout waits on a dead worker. Run several replicas on one task queue to scale out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.checks import CheckActivities
from activities.errors import QuietKnownFailures
from activities.notify import NotifyActivities
from activities.offline_eval import OfflineEvalActivities
from activities.redaction import RedactingFilter, RedactingInterceptor
from activities.registry import BackendRegistry
from activities.reviews import ReviewActivities
from activities.routing import RoutingActivities
from runtime.client import (
    ConnectionFailed,
    connect_to,
    core_runtime,
    data_converter,
    ensure_search_attributes,
)
from runtime.embedded import EmbeddedServerError, EmbeddedTemporal, PortInUse
from runtime.settings import ConnectionSettingError, Settings
from workflows.rollout import RolloutWorkflow

__all__ = ["StartupError", "build_worker", "http_client", "main", "run", "workflow_runner"]

log = logging.getLogger("lockgate.worker")

PORT_SETTINGS = {"gRPC": "LOCKGATE_TEMPORAL_PORT", "UI": "LOCKGATE_UI_PORT"}
"""The variable that moves each of the embedded server's ports, named when one is taken."""


class StartupError(Exception):
    """The worker cannot start as configured: a port is taken, the embedded server died...

    The message names what is wrong and the variable to change; `main` prints it alone and
    exits 1, because a traceback would hide the one line an operator needs.
    """


def http_client() -> httpx.AsyncClient:
    """The one pooled HTTP client every backend shares; per-request timeouts come from the spec."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(10.0, connect=5.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        follow_redirects=False,
    )


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox, with the pure message modules passed through (loaded once, not per run)."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(
        "pydantic", "pydantic_core", "rollout_specs", "activities.contracts", "yaml"
    )
    return SandboxedWorkflowRunner(restrictions=restrictions)


def build_worker(client: Client, task_queue: str, backends: BackendRegistry) -> Worker:
    """The Worker with lockgate's workflow and activities; tests build theirs the same way."""
    checks = CheckActivities(backends)
    routing = RoutingActivities(backends)
    notify = NotifyActivities(backends.http)
    offline = OfflineEvalActivities(backends.http)
    reviews = ReviewActivities(backends)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[RolloutWorkflow],
        activities=[
            checks.run_checks,
            routing.apply_route,
            notify.notify,
            offline.offline_eval,
            reviews.pending_reviews,
            reviews.record_review,
        ],
        workflow_runner=workflow_runner(),
        interceptors=[RedactingInterceptor()],
        # After a kill -9 the server waits this long on the dead worker's sticky queue; the
        # default 10 s stalls every rollout whose next task comes due in that window.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=2),
        graceful_shutdown_timeout=timedelta(seconds=10),
        max_cached_workflows=2000,
    )


@contextlib.asynccontextmanager
async def _temporal(settings: Settings, runtime: Runtime) -> AsyncIterator[Client]:
    try:  # TEMPORAL_* variables and the TEMPORAL_PROFILE profile, as the temporal CLI reads them
        connection = settings.connection()
    except ConnectionSettingError as exc:
        raise StartupError(str(exc)) from None
    if (warning := connection.plaintext_warning()) is not None:
        log.warning("%s", warning)
    async with contextlib.AsyncExitStack() as stack:
        if connection.embedded:
            server = EmbeddedTemporal(
                settings.lockgate_data_dir,
                port=settings.lockgate_temporal_port,
                ui_port=settings.lockgate_ui_port,
                namespace=connection.namespace,
            )
            try:
                await stack.enter_async_context(server)
            except PortInUse as exc:
                setting = PORT_SETTINGS.get(exc.port_name, "the port settings")
                raise StartupError(
                    f"{exc}; set {setting} to a free port, or stop what holds {exc.address}"
                ) from exc
            except (EmbeddedServerError, TimeoutError) as exc:
                raise StartupError(str(exc)) from exc
        try:
            client = await connect_to(connection, data_converter(settings), runtime=runtime)
        except (ConnectionFailed, ConnectionSettingError) as exc:
            raise StartupError(str(exc)) from None
        await ensure_search_attributes(client)
        yield client


def _runtime(settings: Settings) -> Runtime:
    address = settings.lockgate_metrics_address
    if not address:
        return core_runtime()
    try:
        return core_runtime(PrometheusConfig(bind_address=address))
    except ValueError as exc:  # the SDK reports a failed bind (or a bad address) as ValueError
        problem = "is already in use" if "in use" in str(exc).lower() else f"is unusable ({exc})"
        raise StartupError(
            f"the metrics address {address} {problem}; set LOCKGATE_METRICS_ADDRESS to a free "
            "host:port (or to nothing to turn the worker's metrics off)"
        ) from exc


async def run(
    settings: Settings, stop: asyncio.Event, serving: asyncio.Event | None = None
) -> None:
    """Serve rollouts until `stop` is set, then drain and shut down (and the embedded server).

    `serving` is set once the worker polls: until then a stop cancels the start-up instead.
    """
    async with _temporal(settings, _runtime(settings)) as client, http_client() as http:
        worker = build_worker(client, settings.lockgate_task_queue, BackendRegistry(http))
        async with worker:
            log.info(
                "lockgate worker polling task queue %r on %s (namespace %s)",
                settings.lockgate_task_queue,
                client.service_client.config.target_host,
                client.namespace,
            )
            if settings.embedded:
                log.info("Temporal UI: http://127.0.0.1:%d", settings.lockgate_ui_port)
            if serving is not None:
                serving.set()
            await stop.wait()
            log.info("stopping: finishing in-flight tasks")
    log.info("lockgate worker stopped")


async def _main() -> None:
    """Serve until SIGINT, SIGTERM or SIGHUP (a closed terminal), whichever comes first.

    Serving, the signal drains the worker, then the embedded server stops. During start-up it
    cancels the start-up (the embedded server, if started, stops on the way out) rather than
    wait for a start that may take many seconds. Under `nohup`, SIGHUP stays ignored.
    """
    stop, serving = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal() -> None:
        if not stop.is_set() and not serving.is_set() and main_task is not None:
            main_task.cancel()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(sig) != signal.SIG_IGN:
            loop.add_signal_handler(sig, on_signal)
    try:
        await run(Settings(), stop, serving)
    except asyncio.CancelledError:
        if serving.is_set() or not stop.is_set():
            raise
        log.info("lockgate worker stopped during start-up")


def main() -> None:
    """Entry point of `python worker.py`."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:  # no secret reaches the service's log
        handler.addFilter(RedactingFilter())
    # One line per failed attempt of a known error (a router down); tracebacks only for bugs.
    logging.getLogger("temporalio.activity").addFilter(QuietKnownFailures())
    try:
        asyncio.run(_main())
    except StartupError as exc:
        log.error("lockgate worker cannot start: %s", exc)
        logging.shutdown()
        # Not SystemExit: once a client has connected (a namespace refused after connecting),
        # interpreter teardown can abort in the SDK's native threads (sdk-python#300), turning
        # exit 1 into SIGABRT and a native stack dump under the one line above.
        os._exit(1)


if __name__ == "__main__":
    main()

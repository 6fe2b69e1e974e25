"""Real processes for end-to-end tests: the Temporal dev server and `python worker.py`.

Both are `ManagedProcess`es, so none outlives the test run: a test's teardown stops them, and
if pytest itself is killed (a CI job cancelled, a `kill -9`) its watchdog stops them.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from runtime.embedded import EmbeddedTemporal
from runtime.processes import ManagedProcess

ROOT = Path(__file__).resolve().parents[2]


def dev_server(data_dir: Path, port: int, ui_port: int) -> ManagedProcess:
    """The same dev-server command the worker embeds, as a process the test can kill."""
    command = EmbeddedTemporal(data_dir, port=port, ui_port=ui_port).command()
    return ManagedProcess("temporal", command, data_dir / "server.log", cwd=ROOT)


def worker_process(log: Path, env: Mapping[str, str]) -> ManagedProcess:
    """`python worker.py` with the given environment (TEMPORAL_ADDRESS etc.)."""
    defaults = {"LOCKGATE_METRICS_ADDRESS": "", "PYTHONUNBUFFERED": "1"}
    return ManagedProcess(
        "worker", [sys.executable, "worker.py"], log, env={**defaults, **env}, cwd=ROOT
    )

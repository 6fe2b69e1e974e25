"""Running an app under uvicorn the way the gateway's commands do: quiet, and a clean stop.

uvicorn handles SIGINT and SIGTERM itself: it stops accepting connections, lets in-flight
requests finish and runs the app's shutdown (closing pooled connections). It then re-delivers
the signal to the handler installed before it; ours turns that into exit status 0, so a
supervisor (systemd, the demo, the e2e tests) sees a clean stop rather than a death by signal.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

__all__ = ["serve"]


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Serve `app` on host:port until SIGINT or SIGTERM, without per-request logs."""
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)

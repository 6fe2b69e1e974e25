"""`python -m gateway --port 8080 [--host 127.0.0.1] [--state-file PATH]`: run the gateway.

SIGINT and SIGTERM stop it gracefully with exit status 0 (gateway.serving). A state file that
cannot be read exits 2 before anything listens: serving without the routes it confirmed would
send traffic to the wrong policies.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from gateway.app import create_app
from gateway.policy_client import DEFAULT_PER_SERVER, DEFAULT_TIMEOUT
from gateway.routing_table import StateFileError
from gateway.serving import serve


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway", description="lockgate's reference policy gateway"
    )
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--state-file", type=Path, default=None, help="JSON file keeping routes across restarts"
    )
    parser.add_argument(
        "--policy-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds a policy server may take to answer",
    )
    parser.add_argument(
        "--policy-concurrency",
        type=int,
        default=DEFAULT_PER_SERVER,
        help="most calls in flight to one policy server",
    )
    args = parser.parse_args(argv)
    try:
        app = create_app(
            state_file=args.state_file,
            policy_timeout=args.policy_timeout,
            policy_concurrency=args.policy_concurrency,
        )
    except StateFileError as exc:
        parser.exit(2, f"error: {exc}\n")
    serve(app, args.host, args.port)


if __name__ == "__main__":
    main()

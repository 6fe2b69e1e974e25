"""`python -m gateway`: run the gateway, its data plane and its control plane on two ports.

    python -m gateway --port 8080 --control-port 8081
        --control-token-file /run/secrets/gateway-token
        --policy-uri http://127.0.0.1:8101 --policy-uri http://127.0.0.1:8102
        [--host 127.0.0.1] [--control-host 127.0.0.1] [--state-file PATH] [--reward-range 0,1]
        [--route-store redis://127.0.0.1:6379/0]   (several replicas: docs/deployment.md)
        [--shadow-mirror batched]   (shadow's candidate off the response path: gateway.mirror)

The control plane (routes, stats, metrics) needs a token, from a file or an environment
variable (never the command line, which `ps` shows to everyone); without one the gateway
refuses to start unless `--insecure-control-plane` says that is meant (tests, a laptop).

SIGINT and SIGTERM stop it gracefully with exit status 0 (gateway.serving). A state file that
cannot be read, a route store that cannot be reached, a missing or weak token, a bad option or
a port that is taken exit 2 before anything listens: serving without the routes it confirmed
would send traffic to the wrong policies, and serving an open control plane would hand the
routes to anyone.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from gateway.admission import DEFAULT_GENERATION_LEAD, DEFAULT_REWARD_RANGE, RewardRange
from gateway.app import SHADOW_MIRRORS, create_gateway
from gateway.control import ControlToken, ControlTokenError
from gateway.decisions import DEFAULT_CAPACITY, DEFAULT_TTL
from gateway.in_process import InProcessPolicies, parse_policy_artifact
from gateway.limits import (
    DEFAULT_BODY_LIMITS,
    DEFAULT_DECIDE_BYTES,
    DEFAULT_FEEDBACK_BYTES,
    BodyLimits,
)
from gateway.metrics import DEFAULT_MAX_ACTIONS
from gateway.mirror import DEFAULT_QUEUE
from gateway.policy_client import DEFAULT_PER_SERVER, DEFAULT_TIMEOUT
from gateway.route_store import RouteStoreUnavailableError
from gateway.routing_table import DEFAULT_MAX_TARGETS, StateFileError
from gateway.serving import Listener, serve_all
from rollout_specs import parse_duration


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve both planes until SIGINT or SIGTERM."""
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.host, args.port) == (args.control_host, args.control_port):
        parser.error("the data plane and the control plane need different ports")
    if not args.policy_uri and not args.policy_artifact:
        parser.error("give at least one --policy-uri (or --policy-artifact)")
    try:
        gateway = create_gateway(
            policy_uris=args.policy_uri,
            in_process=InProcessPolicies(args.policy_artifact, seed=args.policy_seed),
            control_token=_token(args),
            insecure_control_plane=args.insecure_control_plane,
            state_file=args.state_file,
            route_store=args.route_store,
            policy_timeout=args.policy_timeout,
            policy_concurrency=args.policy_concurrency,
            decision_capacity=args.decision_capacity,
            decision_ttl=args.decision_ttl,
            reward_range=args.reward_range,
            max_targets=args.max_targets,
            max_actions=args.max_actions,
            max_generation_lead=args.max_generation_lead,
            body_limits=BodyLimits(decide=args.max_decide_bytes),
            shadow_mirror=args.shadow_mirror,
            mirror_queue=args.shadow_mirror_queue,
        )
    except (ControlTokenError, StateFileError, RouteStoreUnavailableError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    try:
        serve_all(
            [
                Listener(gateway.data, args.host, args.port),
                Listener(gateway.control, args.control_host, args.control_port),
            ]
        )
    except OSError as exc:
        parser.exit(2, f"error: cannot listen: {exc}\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway", description="lockgate's reference policy gateway"
    )
    planes = parser.add_argument_group("listeners")
    planes.add_argument("--port", type=int, default=8080, help="data plane: decide, feedback")
    planes.add_argument("--host", default="127.0.0.1", help="data plane address")
    planes.add_argument(
        "--control-port", type=int, default=8081, help="control plane: routes, stats, metrics"
    )
    planes.add_argument(
        "--control-host",
        default="127.0.0.1",
        help="control plane address (keep it on a private network)",
    )
    control = parser.add_argument_group("control plane token (one of)")
    sources = control.add_mutually_exclusive_group()
    sources.add_argument(
        "--control-token-file", type=Path, help="file holding the token (trailing newline ignored)"
    )
    sources.add_argument("--control-token-env", metavar="NAME", help="variable holding the token")
    sources.add_argument(
        "--insecure-control-plane",
        action="store_true",
        help="serve the control plane WITHOUT a token: anyone who reaches it owns the routes "
        "(tests and local use only)",
    )
    parser.add_argument(
        "--policy-uri",
        action="append",
        default=[],
        metavar="URL",
        help="a policy server routes may name (repeat for each); others are refused",
    )
    parser.add_argument(
        "--policy-artifact",
        action="append",
        type=_policy_artifact,
        default=[],
        metavar="URL=PATH",
        help="serve the policy server URL routes name from this artifact file, evaluated "
        "in-process instead of called (repeat for each; gateway.in_process)",
    )
    parser.add_argument(
        "--policy-seed",
        type=int,
        default=None,
        help="seed of the in-process policies' samplers (as the policy server's --seed)",
    )
    parser.add_argument(
        "--shadow-mirror",
        choices=SHADOW_MIRRORS,
        default="sync",
        help="in shadow, ask a candidate behind a policy server beside the incumbent, its action "
        "in the answer (sync, the default), or after answering, in batches through the policy "
        "server's batch form, shadow_action null (batched: one policy call per decision, the "
        "candidate's batched; gateway.mirror)",
    )
    parser.add_argument(
        "--shadow-mirror-queue",
        type=int,
        default=DEFAULT_QUEUE,
        metavar="N",
        help=f"batched: most mirrors waiting for their batch (default {DEFAULT_QUEUE}); more are "
        "dropped and counted in lockgate_shadow_mirrors_dropped_total",
    )
    parser.add_argument(
        "--state-file", type=Path, default=None, help="JSON file keeping routes across restarts"
    )
    parser.add_argument(
        "--route-store",
        default=os.environ.get("LOCKGATE_ROUTE_STORE") or None,
        metavar="URL",
        help="Redis shared by every replica (redis://host:6379/0; default $LOCKGATE_ROUTE_STORE);"
        " instead of --state-file when more than one gateway serves",
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
    parser.add_argument(
        "--reward-range",
        type=_reward_range,
        default=DEFAULT_REWARD_RANGE,
        metavar="LOW,HIGH",
        help="rewards feedback may carry (default 0,1; LOW >= 0)",
    )
    parser.add_argument(
        "--decision-capacity",
        type=int,
        default=DEFAULT_CAPACITY,
        help="decisions remembered while waiting for their reward",
    )
    parser.add_argument(
        "--decision-ttl",
        type=_seconds,
        default=DEFAULT_TTL,
        metavar="DURATION",
        help="how long a decision waits for its reward (default 24h)",
    )
    parser.add_argument(
        "--max-targets", type=int, default=DEFAULT_MAX_TARGETS, help="most targets with a route"
    )
    parser.add_argument(
        "--max-actions",
        type=int,
        default=DEFAULT_MAX_ACTIONS,
        help="distinct action labels per target in the metrics; later ones count as `other`",
    )
    parser.add_argument(
        "--max-generation-lead",
        type=_seconds,
        default=DEFAULT_GENERATION_LEAD,
        metavar="DURATION",
        help="how far ahead of this clock a route's generation (epoch ms) may be (default 24h)",
    )
    parser.add_argument(
        "--max-decide-bytes",
        type=int,
        default=DEFAULT_DECIDE_BYTES,
        help=f"largest decide body (default {DEFAULT_DECIDE_BYTES}; routes "
        f"{DEFAULT_BODY_LIMITS.route}, feedback {DEFAULT_FEEDBACK_BYTES})",
    )
    return parser


def _token(args: argparse.Namespace) -> ControlToken | None:
    """The control token from the file or variable named, or None when neither is."""
    if args.control_token_file is not None:
        return ControlToken.from_file(args.control_token_file)
    if args.control_token_env is not None:
        return ControlToken.from_env(args.control_token_env)
    return None


def _policy_artifact(text: str) -> tuple[str, Path]:
    try:
        return parse_policy_artifact(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _reward_range(text: str) -> RewardRange:
    try:
        return RewardRange.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive duration")
    return seconds


if __name__ == "__main__":
    main()

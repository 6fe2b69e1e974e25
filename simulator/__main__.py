r"""`python -m simulator run|make-artifacts|write-log|values`: the simulated world's commands.

    python -m simulator run --gateway http://127.0.0.1:8080 --target offers --scenario healthy \
        [--rate 50] [--duration SECONDS] [--seed 7] [--regression-fraction 0.3] [--region R]
    python -m simulator make-artifacts [--out simulator/artifacts]
    python -m simulator write-log --out logs/offers.jsonl --rows 10000 --seed 1 [--epsilon 0.1] \
        [--candidate candidate.json]      (--out logs/offers.parquet writes Parquet)
    python -m simulator values [--scenario healthy]

`run` drives traffic until `--duration` passes, or until SIGINT/SIGTERM without one, and prints
a one-line summary when it stops.

Scenarios (`simulator.scenarios`): healthy, regression, violations, broken, drifting, and the
guardrail scenarios overuse-capped, review-rejected, harm-one-region and overspend. A guardrail
scenario's policy servers serve `simulator/artifacts/incumbent-guardrails.json` (41) and its
candidate (42); `values` prints what each arm does (shares, per-region values, spend, rejects).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from simulator.artifacts import ARTIFACT_FILES, ARTIFACTS_DIR, load_artifact, write_artifacts
from simulator.driver import DriveConfig, Driver
from simulator.offline_log import CANDIDATE_COLUMN, DEFAULT_EPSILON, write_log
from simulator.policy import SoftmaxPolicy
from simulator.scenarios import (
    DEFAULT_REGRESSION_FRACTION,
    GUARDRAIL_SCENARIOS,
    SCENARIOS,
    ArmProfile,
    scenario,
)
from simulator.world import GUARDRAIL_ACTIONS, REGIONS, REVIEWED_ACTION


def _run(args: argparse.Namespace) -> int:
    config = DriveConfig(
        gateway=args.gateway,
        target=args.target,
        scenario=scenario(
            args.scenario, regression_fraction=args.regression_fraction, region=args.region
        ),
        rate=args.rate,
        duration=args.duration,
        seed=args.seed,
        units=args.units,
        concurrency=args.concurrency,
        reward_delay=args.reward_delay,
    )
    driver = Driver(config)

    async def main() -> None:
        task = asyncio.create_task(driver.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    print(f"simulator {args.scenario} -> {args.target}: {driver.report.summary()}", flush=True)
    return 0


def _write_log(args: argparse.Namespace) -> int:
    candidate = None
    if args.candidate is not None:
        path = Path(args.candidate)
        try:
            candidate = (
                SoftmaxPolicy.load(path) if path.is_file() else load_artifact(args.candidate)
            )
        except OSError as exc:
            raise ValueError(
                f"--candidate {args.candidate}: {exc.strerror}; give an artifact's path or one "
                f"of {', '.join(ARTIFACT_FILES)}"
            ) from exc
    summary = write_log(args.out, args.rows, args.seed, args.epsilon, candidate)
    print(f"{summary.path}: {summary.rows} rows, mean reward {summary.mean_reward:.4f}")
    return 0


def _values(args: argparse.Namespace) -> int:
    names = SCENARIOS if args.scenario is None else (args.scenario,)
    for name in names:
        chosen = scenario(name)
        values = chosen.arm_values()
        print(
            f"{name}: incumbent {values.incumbent:.4f}, candidate arm {values.candidate:.4f} "
            f"(blocked picks {values.blocked_share:.1%})"
        )
        if name in GUARDRAIL_SCENARIOS:
            for arm, artifact in (
                ("incumbent", chosen.incumbent_artifact),
                ("candidate", chosen.candidate_artifact),
            ):
                print(f"  {arm} {artifact}: {_profile_line(chosen.profile(arm))}")
    return 0


def _profile_line(profile: ArmProfile) -> str:
    regions = ", ".join(f"{r} {v:.4f}" for r, v in profile.region_values.items())
    shares = ", ".join(
        f"{action} {profile.action_shares[action]:.1%}" for action in GUARDRAIL_ACTIONS
    )
    line = (
        f"value {profile.value:.4f} ({regions}); {shares}; spend {profile.spend_per_decision:.2f} "
        f"a decision ({profile.amount_per_voucher:.2f} a voucher)"
    )
    if profile.action_shares[REVIEWED_ACTION] > 0:
        line += f"; reviewers reject {profile.reject_share:.1%} of its {REVIEWED_ACTION}"
    return line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="send decisions and rewards to a gateway")
    run.add_argument("--gateway", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    run.add_argument("--target", required=True, help="the target decisions are asked for")
    run.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="healthy",
        help="how the world treats the candidate's units (the guardrail scenarios need the "
        "policy servers on incumbent-guardrails.json and their candidate)",
    )
    run.add_argument("--rate", type=float, default=50.0, help="visits per second (default 50)")
    run.add_argument("--duration", type=float, default=None, help="seconds; default until stopped")
    run.add_argument("--seed", type=int, default=7)
    run.add_argument(
        "--regression-fraction",
        type=float,
        default=DEFAULT_REGRESSION_FRACTION,
        help="regression only: share of conversions the candidate's units lose",
    )
    run.add_argument(
        "--region", choices=list(REGIONS), default=None, help="regression only: limit it"
    )
    run.add_argument("--units", type=int, default=5000, help="sticky unit pool size")
    run.add_argument("--concurrency", type=int, default=64, help="most requests in flight")
    run.add_argument("--reward-delay", type=float, default=0.0, help="seconds before feedback")

    make = commands.add_parser("make-artifacts", help="write the demo's policy artifacts")
    make.add_argument("--out", type=Path, default=ARTIFACTS_DIR)

    log = commands.add_parser("write-log", help="write an exploring incumbent's offline log")
    log.add_argument(
        "--out", type=Path, required=True, help="file to write: .parquet, else JSON Lines"
    )
    log.add_argument("--rows", type=int, required=True)
    log.add_argument("--seed", type=int, required=True)
    log.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON, help="exploration share")
    log.add_argument(
        "--candidate",
        default=None,
        help=f"artifact (a path, or a file name in {ARTIFACTS_DIR.name}/) whose probabilities "
        f"to write as the {CANDIDATE_COLUMN} column",
    )

    values = commands.add_parser("values", help="print the true value of each scenario's arms")
    values.add_argument("--scenario", choices=SCENARIOS, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the process exit code (2 for bad arguments)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "make-artifacts":
            for path in write_artifacts(args.out):
                print(path)
            return 0
        if args.command == "write-log":
            return _write_log(args)
        return _values(args)
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())

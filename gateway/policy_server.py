"""A real policy server: one artifact behind `POST /act`, the way model servers serve models.

The gateway reaches policies only over HTTP, so the incumbent and the candidate of the demo and
of the tests are separate servers, and a candidate that is down is a real connection failure.
`POST /act` also scores a batch of contexts at once, which is how the offline gate asks a
candidate for its probabilities over a whole decision log, and decides a batch (`"sample":
true`), which is how a gateway mirrors shadow decisions off its response path (gateway.mirror).

    python -m gateway.policy_server --policy offers-42.json --port 8102 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway import fast_json
from gateway.limits import read_body
from gateway.policies import ArtifactError, ContextError, LinearSoftmaxPolicy, load_policy
from gateway.serving import serve

__all__ = ["MAX_BATCH", "create_policy_app", "main"]

MAX_BATCH: Final = 10_000
"""Most contexts one batch request may carry, so one request cannot hold the server for long."""


def create_policy_app(policy: LinearSoftmaxPolicy, seed: int | None = None) -> Starlette:
    """The policy server as an ASGI app.

    `POST /act` with `{"context": {feature: number}}` answers
    `{"action", "probabilities": {action: p}, "version"}` (plus `"params": {name: number}` when
    the artifact gives the action parameters), or 422 with a `detail` naming what is
    wrong with the context. The batch form, `{"contexts": [{feature: number}, ...]}` (at most
    MAX_BATCH), answers `{"probabilities": [{action: p}, ...], "version"}` in the same order and
    samples no action: it is for scoring logged contexts, computed in one vectorised pass.
    With `"sample": true` it decides instead, context by context as the single form does (the
    same sampler, drawn in order): `{"decisions": [{"action", "params"?} | {"detail"}, ...],
    "version"}`, a context the policy cannot take answered by its own `detail` rather than
    failing the others. That is how a gateway mirrors shadow decisions in batches (gateway.mirror).
    `GET /healthz` answers the policy's name, version and actions.

    Args:
        policy: The policy to serve.
        seed: Seed of the action sampler, for reproducible runs; None draws one from the OS.
    """
    rng = np.random.default_rng(seed)
    identity = {
        "name": policy.artifact.name,
        "version": policy.version,
        "actions": list(policy.actions),
    }

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", **identity})

    return Starlette(
        routes=[
            Route("/act", _ActEndpoint(policy, rng), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


class _ActEndpoint:
    """`POST /act` as a plain ASGI app, not a Starlette request handler.

    Every decision a gateway serves over HTTP makes this call, and shadow makes two: without
    Starlette's Request, Response and wrapping senders a call costs 14.2 us of CPU instead of
    17.6 (the app driven in-process; about 50 us a call with its socket I/O). The answers are
    the same JSON, status and headers.
    """

    __slots__ = ("_policy", "_rng")

    def __init__(self, policy: LinearSoftmaxPolicy, rng: np.random.Generator) -> None:
        self._policy = policy
        self._rng = rng

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one `/act` request."""
        body = await read_body(receive, send, _UNLIMITED)
        if body is None:  # past the limit, answered 413 (never, with no limit)
            return
        status, answer = self._answer(body)
        await fast_json.send_json(send, status, fast_json.dumps(answer))

    def _answer(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        """The status and JSON answer to one request body."""
        policy = self._policy
        try:
            body = fast_json.loads(raw)
        except ValueError as exc:
            return _unprocessable(f"the body is not JSON: {exc}")
        if isinstance(body, dict) and "contexts" in body:
            if body.get("sample") is True:
                return _decide_each(policy, self._rng, body["contexts"])
            return _score(policy, body["contexts"])
        context = body.get("context") if isinstance(body, dict) else None
        if not isinstance(context, dict):
            return _unprocessable(
                'send {"context": {feature: number, ...}} or {"contexts": [{...}, ...]}'
            )
        try:
            action, probabilities = policy.act(context, self._rng)
            params = policy.parameters(action, context)
        except ContextError as exc:
            return _unprocessable(str(exc))
        answer: dict[str, Any] = {
            "action": action,
            "probabilities": probabilities,
            "version": policy.version,
        }
        if params is not None:
            answer["params"] = params
        return 200, answer


_UNLIMITED: Final = 2**62
"""No bound on a request body: the batch form carries up to MAX_BATCH contexts, and a policy
server is called by gateways and the offline gate, not by the public."""


def _score(policy: LinearSoftmaxPolicy, contexts: Any) -> tuple[int, dict[str, Any]]:
    """The scoring batch form: every context's probabilities, in one vectorised pass."""
    problem = _batch_problem(contexts)
    if problem is not None:
        return problem
    try:
        matrix = policy.batch_probabilities(contexts)
    except ContextError as exc:
        return _unprocessable(str(exc))
    actions = policy.actions
    rows = [dict(zip(actions, row, strict=True)) for row in matrix.tolist()]
    return 200, {"probabilities": rows, "version": policy.version}


def _decide_each(
    policy: LinearSoftmaxPolicy, rng: np.random.Generator, contexts: Any
) -> tuple[int, dict[str, Any]]:
    """The sampling batch form: one decision (or the `detail` of a refused context) each."""
    problem = _batch_problem(contexts)
    if problem is not None:
        return problem
    decisions: list[dict[str, Any]] = []
    for context in contexts:
        try:
            action = policy.choose(context, rng)
            params = policy.parameters(action, context)
        except ContextError as exc:
            decisions.append({"detail": str(exc)})
            continue
        decision: dict[str, Any] = {"action": action}
        if params is not None:
            decision["params"] = params
        decisions.append(decision)
    return 200, {"decisions": decisions, "version": policy.version}


def _batch_problem(contexts: Any) -> tuple[int, dict[str, Any]] | None:
    """The 422 a batch's `contexts` deserves, or None when it is a list of at most MAX_BATCH."""
    if not isinstance(contexts, list) or not all(isinstance(c, dict) for c in contexts):
        return _unprocessable('send {"contexts": [{feature: number, ...}, ...]}')
    if len(contexts) > MAX_BATCH:
        return _unprocessable(
            f"{len(contexts)} contexts in one request; send at most {MAX_BATCH} per request"
        )
    return None


def _unprocessable(detail: str) -> tuple[int, dict[str, Any]]:
    return 422, {"detail": detail}


def main(argv: Sequence[str] | None = None) -> None:
    """Serve one artifact until SIGINT or SIGTERM (exit 0); a bad artifact exits 2, saying why."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway.policy_server", description="Serve one policy artifact over HTTP."
    )
    parser.add_argument("--policy", required=True, help="the policy artifact (JSON file)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=None, help="seed of the action sampler")
    args = parser.parse_args(argv)
    try:
        policy = load_policy(Path(args.policy))
    except ArtifactError as exc:
        parser.exit(2, f"error: {exc}\n")
    serve(create_policy_app(policy, seed=args.seed), args.host, args.port)


if __name__ == "__main__":
    main()

"""Artifact policies evaluated inside the gateway, in place of an HTTP hop to a policy server.

A policy call over HTTP costs the gateway more CPU than everything else a decision does (the
client's pool, a request, an answer to parse), and a reference linear-softmax artifact is a
few microseconds of arithmetic. So an operator may hand the gateway the artifact a policy
server would serve, under that server's URL:

    python -m gateway ... --policy-artifact http://127.0.0.1:8101=offers-41.json [--policy-seed 7]

Routes do not change: they still name `http://127.0.0.1:8101` (any spelling of it), lockgate
cannot tell the difference, and the route admission rules are the same (the URL is on the
allow-list as if given with `--policy-uri`). Only the gateway's operator maps a URL to a file;
a route can never make the gateway read one. A URL mapped to an artifact is never called.

The decision is the policy server's: the same artifact loader and validation, the same sampler
(`LinearSoftmaxPolicy.choose`, one draw of a numpy Generator per decision, seeded by
`--policy-seed` as the policy server's `--seed` seeds its own), the same parameters. A context
the policy cannot take (a missing feature) fails the call as the server's 422 does: the
candidate falls back to the incumbent, an incumbent's failure is a 502.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from gateway.admission import normalize_policy_uri
from gateway.policies import ContextError, LinearSoftmaxPolicy, load_policy
from gateway.policy_client import MAX_ACTION_LENGTH, PolicyAnswer, PolicyError

__all__ = ["InProcessPolicies", "InProcessPolicy", "parse_policy_artifact"]

REFUSED_REASON = "its in-process policy could not take the context"
"""What a client may be told when an in-process policy refuses a context (no server answered)."""


class InProcessPolicy:
    """One artifact and its own sampler, answering like the policy server that would serve it.

    Args:
        uri: The policy server URL routes name it by (for messages).
        policy: The loaded artifact.
        seed: Seed of its sampler, as `python -m gateway.policy_server --seed`; None draws
            one from the OS.

    Raises:
        ValueError: An action is longer than the gateway takes from any policy.
    """

    __slots__ = ("_rng", "policy", "uri")

    def __init__(self, uri: str, policy: LinearSoftmaxPolicy, seed: int | None = None) -> None:
        too_long = [action for action in policy.actions if len(action) > MAX_ACTION_LENGTH]
        if too_long:
            raise ValueError(
                f"policy artifact for {uri}: action {too_long[0][:80]!r}... is longer than "
                f"{MAX_ACTION_LENGTH} characters, which the gateway never serves"
            )
        self.uri = uri
        self.policy = policy
        self._rng = np.random.default_rng(seed)

    def act(self, context: Mapping[str, float]) -> PolicyAnswer:
        """The action (and its parameters) the policy samples in `context`.

        Raises:
            PolicyError: The policy cannot take the context (where its server answers 422).
        """
        policy = self.policy
        try:
            action = policy.choose(context, self._rng)
            params = policy.parameters(action, context)
        except ContextError as exc:
            raise PolicyError(f"in-process policy {self.uri}: {exc}", REFUSED_REASON) from exc
        return PolicyAnswer(action, params)


class InProcessPolicies:
    """The artifacts the gateway evaluates itself, by the policy server URL each replaces.

    Args:
        artifacts: (URL, artifact file) pairs, e.g. from `--policy-artifact URL=PATH`.
        seed: Seed of every artifact's sampler (each has its own Generator); None: OS entropy.

    Raises:
        ValueError: A URL is not a plain http(s) base URL or is mapped twice, or an artifact
            cannot be served (ArtifactError, a ValueError, names the file and the problem).
    """

    def __init__(self, artifacts: Iterable[tuple[str, Path]], seed: int | None = None) -> None:
        policies: dict[str, InProcessPolicy] = {}
        for uri, path in artifacts:
            normal = normalize_policy_uri(uri)
            if normal is None:
                raise ValueError(
                    f"--policy-artifact {uri!r}: not a plain http(s) base URL like "
                    "http://127.0.0.1:8101 (the policy server URL routes name)"
                )
            if normal in policies:
                raise ValueError(f"--policy-artifact maps {uri} twice; give each URL one file")
            policies[normal] = InProcessPolicy(uri, load_policy(path), seed)
        self._policies = policies

    @property
    def uris(self) -> list[str]:
        """The URLs served in-process (normalised), for the allow-list."""
        return list(self._policies)

    def get(self, uri: str) -> InProcessPolicy | None:
        """The policy served in-process for `uri` (under any spelling), or None."""
        normal = normalize_policy_uri(uri)
        return None if normal is None else self._policies.get(normal)

    def __len__(self) -> int:
        return len(self._policies)


def parse_policy_artifact(text: str) -> tuple[str, Path]:
    """`URL=PATH` as given to `--policy-artifact`, split at the last `=` (URLs may hold one).

    Raises:
        ValueError: There is no `=`, or either side is empty.
    """
    uri, separator, path = text.rpartition("=")
    if not separator or not uri or not path:
        raise ValueError(
            f"{text!r} is not URL=PATH; write e.g. http://127.0.0.1:8101=offers-41.json"
        )
    return uri, Path(path)

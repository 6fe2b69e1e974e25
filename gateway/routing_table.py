"""The routes the gateway applies, one per target, under the contract's generation rules.

- an **older** generation than the one held is refused (`RouteConflictError`, HTTP 409), naming
  the generation and rollout that hold the target;
- the **same** generation is a retried PUT: acknowledged with the route already held, unchanged;
- a **newer** generation replaces the route.

Before any of that, a route passes the gateway's admission rules (gateway.admission: target
name, generation bounds, allowed policy servers), and a new target is refused once the table
holds `max_targets` of them: the table never holds a route the gateway would refuse, neither
from a PUT nor from its state file (a state file holding one fails the start, naming it).

With a state file every change is written (temp file, fsync, `os.replace`) before it is
acknowledged, so a gateway restarted after a crash serves exactly the routes it confirmed, and a
reader never sees a half-written file.

This table is one gateway's; several replicas share their routes through a Redis instead
(gateway.route_store), under the same rules and with the same messages (`conflict`,
`too_many_targets`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from activities.contracts import Route
from gateway.admission import RouteRefusedError, RouteRules
from gateway.validation import describe

__all__ = [
    "DEFAULT_MAX_TARGETS",
    "PutResult",
    "RouteConflictError",
    "RoutingTable",
    "StateFileError",
    "TooManyTargetsError",
    "conflict",
    "too_many_targets",
]

DEFAULT_MAX_TARGETS = 256
"""Targets one gateway routes at most: each is a set of metric series and a state-file entry."""

_FORMAT = 1
"""Version of the state file's layout, so a later layout can still read this one."""


class RouteConflictError(Exception):
    """A route older than the one held was refused; the message names the holder."""


class StateFileError(Exception):
    """The state file cannot be read, or written; routes would be lost or made up."""


class TooManyTargetsError(RouteRefusedError):
    """A route for a new target, when the table already holds `max_targets` (HTTP 422)."""


@dataclass(frozen=True)
class PutResult:
    """What a PUT did: the route now held, and whether this PUT changed it."""

    route: Route
    changed: bool


class RoutingTable:
    """Routes by target, optionally kept in a JSON state file across restarts."""

    def __init__(
        self,
        state_file: Path | None = None,
        rules: RouteRules | None = None,
        max_targets: int = DEFAULT_MAX_TARGETS,
    ) -> None:
        """Start empty, or with the routes of `state_file` when it exists.

        Args:
            state_file: JSON file keeping the routes across restarts; None keeps them in memory.
            rules: The admission rules every route passes; None admits any valid route.
            max_targets: Most targets with a route; a route for one more is refused.

        Raises:
            StateFileError: The state file exists but is not one this gateway wrote, or holds
                a route the rules refuse; starting without its routes would silently send
                traffic to the wrong policies, and starting with a refused one would keep it.
        """
        if max_targets < 1:
            raise ValueError("max_targets must be at least 1")
        self._state_file = state_file
        self._rules = rules
        self._max_targets = max_targets
        self._routes: dict[str, Route] = {}
        if state_file is not None and state_file.exists():
            self._routes = _load(state_file)
            for target, route in self._routes.items():
                try:
                    self._check(target, route)
                except RouteRefusedError as exc:
                    raise StateFileError(
                        f"{state_file}: the route of target {target} would be refused now: "
                        f"{exc}; fix the gateway's options or remove that route from the file"
                    ) from None

    def get(self, target: str) -> Route | None:
        """The route applied to `target`, or None when it has none."""
        return self._routes.get(target)

    def targets(self) -> list[str]:
        """Every target with a route, sorted."""
        return sorted(self._routes)

    def put(self, target: str, route: Route) -> PutResult:
        """Apply `route` to `target` under the generation rules.

        Raises:
            RouteRefusedError: The route breaks an admission rule (TooManyTargetsError: it
                names a new target and the table is full); nothing was changed.
            RouteConflictError: The target holds a newer generation.
            StateFileError: The change could not be persisted; it was not applied.
        """
        self._check(target, route)
        held = self._routes.get(target)
        if held is None and len(self._routes) >= self._max_targets:
            raise too_many_targets(len(self._routes), target)
        if held is not None:
            if route.generation < held.generation:
                raise conflict(target, held, route)
            if route.generation == held.generation:
                return PutResult(held, changed=False)
        routes = {**self._routes, target: route}
        if self._state_file is not None:
            _save(self._state_file, routes)
        self._routes = routes
        return PutResult(route, changed=True)

    def _check(self, target: str, route: Route) -> None:
        if self._rules is not None:
            self._rules.check(target, route)


def conflict(target: str, held: Route, refused: Route) -> RouteConflictError:
    """The 409 for `refused`, naming the newer route `held` (one wording for every store)."""
    return RouteConflictError(
        f"target {target} holds generation {held.generation} of rollout {held.rollout_id}; "
        f"generation {refused.generation} of rollout {refused.rollout_id} is older and was not "
        "applied"
    )


def too_many_targets(held: int, target: str) -> TooManyTargetsError:
    """The 422 for a new target once `held` targets (the --max-targets) have a route."""
    return TooManyTargetsError(
        f"this gateway already routes {held} targets, its --max-targets; target {target} was "
        "not added"
    )


def _load(path: Path) -> dict[str, Route]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StateFileError(f"cannot read the gateway state file {path}: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise StateFileError(
            f"{path} is not a gateway state file (format {_FORMAT}); move it away or pass "
            "another --state-file"
        )
    routes = document.get("routes")
    if not isinstance(routes, dict):
        raise StateFileError(f"{path} has no `routes` object")
    loaded: dict[str, Route] = {}
    for target, stored in routes.items():
        try:
            loaded[target] = Route.model_validate(stored)
        except ValidationError as exc:
            raise StateFileError(
                f"{path}: the route of target {target} is invalid: {describe(exc)}"
            ) from exc
    return loaded


def _save(path: Path, routes: dict[str, Route]) -> None:
    document = {
        "format": _FORMAT,
        "routes": {target: route.model_dump(mode="json") for target, route in routes.items()},
    }
    data = json.dumps(document, indent=2, sort_keys=True).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
            _sync_directory(path.parent)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StateFileError(f"cannot write the gateway state file {path}: {exc}") from exc


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable: without it a power cut can bring the old file back."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

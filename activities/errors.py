"""The errors of lockgate's backends, one tree, mapped from httpx at the boundary.

    BackendError
    ├── UnknownBackendError      the spec names a backend type no registry knows
    ├── ProviderError            monitoring answered, but not with one usable number
    │   ├── ProviderUnavailable  unreachable, timed out, or 5xx
    │   ├── NoDataError          empty result or NaN: no evidence, never 0
    │   ├── PartialDataError     an answer with warnings (e.g. partial): it cannot tell
    │   └── AmbiguousResultError several series where one was expected
    ├── MissingCredential        an `auth` secret the worker cannot read (also both below)
    └── RouterError              the router refused a route (4xx other than 409)
        ├── RouterUnavailable    unreachable, timed out, or 5xx
        ├── RouteConflict        409: the router holds a newer generation
        └── RouteMismatch        the route read back differs from the one set

Activities turn these into Temporal ApplicationErrors whose `type` is the class name, so the
workflow can branch on it without importing this module's dependencies.
"""

from __future__ import annotations

import logging

from temporalio.exceptions import ApplicationError

__all__ = [
    "KNOWN_FAILURE_TYPES",
    "AmbiguousResultError",
    "BackendError",
    "MissingCredential",
    "NoDataError",
    "PartialDataError",
    "ProviderError",
    "ProviderUnavailable",
    "QuietKnownFailures",
    "RouteConflict",
    "RouteMismatch",
    "RouterError",
    "RouterUnavailable",
    "UnknownBackendError",
]


class BackendError(Exception):
    """Root of every error raised while talking to a router or a monitoring backend."""


class UnknownBackendError(BackendError):
    """Raised by a registry for a type it does not know: it never falls back to a default."""


class ProviderError(BackendError):
    """Raised when monitoring answers with something that is not one usable number."""


class ProviderUnavailable(ProviderError):
    """Raised when monitoring cannot be reached, times out, or answers 5xx."""


class NoDataError(ProviderError):
    """Raised on an empty result or NaN: there is no evidence, which is never a zero."""


class PartialDataError(ProviderError):
    """Raised when monitoring answers with warnings, such as a partial response.

    A partial sum can hide exactly the series that breaches, so such an answer is an error
    verdict (the check cannot tell), never a pass.
    """


class AmbiguousResultError(ProviderError):
    """Raised when a query returns several series: taking any one of them would be a guess."""


class RouterError(BackendError):
    """Raised when the router refuses a request (a 4xx other than 409)."""


class RouterUnavailable(RouterError):
    """Raised when the router cannot be reached, times out, or answers 5xx."""


class RouteConflict(RouterError):
    """Raised on 409: the router already holds a newer generation than the one sent."""


class RouteMismatch(RouterError):
    """Raised when the route read back after a change is not the route that was set."""


class MissingCredential(ProviderError, RouterError):
    """Raised when an `auth` block's secret is not on the worker (unset variable, bad file).

    It is both a provider error (the check cannot tell: an `error` verdict) and a router error
    (the route is retried): either way the message names the variable or file, never a value.
    """


def _known_names() -> frozenset[str]:
    names: set[str] = set()
    pending: list[type[BaseException]] = [BackendError]
    while pending:
        kind = pending.pop()
        names.add(kind.__name__)
        pending.extend(kind.__subclasses__())
    return frozenset(names)


KNOWN_FAILURE_TYPES = _known_names() | {"RefusedTransition"}
"""ApplicationError types lockgate raises on purpose: a backend's error, a refused command.

An activity failing with one of these is the outside world misbehaving (a router down, a bad
query), which its message explains; a traceback would only bury that one line."""


class QuietKnownFailures(logging.Filter):
    """Turns the SDK's "Completing activity as failed" traceback into one line with its cause.

    temporalio logs every failed activity attempt at WARNING with the whole exception chain
    (httpx's, lockgate's and Temporal's frames: some 20 lines per attempt, and an unreachable
    router fails an attempt every few seconds for hours). For lockgate's known errors the stack
    says nothing the message does not, so the record keeps one line ending in `Type: message`;
    any other exception is a bug, and keeps its traceback. Attach it to the
    `temporalio.activity` logger.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keep the record; strip the traceback of a known failure, naming its cause."""
        if not record.exc_info:
            return True
        error = record.exc_info[1]
        cause = _known_cause(error)
        if cause is None:
            return True
        record.msg = f"{record.getMessage()}: {cause}"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


def _known_cause(error: BaseException | None) -> str | None:
    """`Type: message` when `error` is one of lockgate's known failures, else None."""
    if isinstance(error, ApplicationError) and error.type in KNOWN_FAILURE_TYPES:
        return f"{error.type}: {error.message}"
    if isinstance(error, BackendError):
        return f"{type(error).__name__}: {error}"
    return None

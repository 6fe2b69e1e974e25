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

__all__ = [
    "AmbiguousResultError",
    "BackendError",
    "MissingCredential",
    "NoDataError",
    "PartialDataError",
    "ProviderError",
    "ProviderUnavailable",
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

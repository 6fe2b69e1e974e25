"""Backend type tag -> constructor, for monitoring providers and routers, from entry points.

Every backend type, lockgate's own included, is an installed declaration (entry-point groups
`lockgate.providers` and `lockgate.routers`, read by rollout_specs/backends.py); this module
turns each declaration's implementation into a factory. An unknown tag raises
UnknownBackendError, and a declaration whose implementation cannot be loaded fails the worker at
start-up: a registry never falls back to a default backend, because a rollout judged by the wrong
backend is judged blind.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from activities.errors import UnknownBackendError
from activities.providers.base import MetricProvider
from activities.routers.base import TrafficRouter
from rollout_specs import MonitoringConfig, RouterConfig
from rollout_specs.backends import (
    BackendDeclarationError,
    Implementation,
    monitoring_backends,
    router_backends,
)

__all__ = [
    "PROVIDERS",
    "ROUTERS",
    "BackendRegistry",
    "build_provider",
    "build_router",
    "installed_providers",
    "installed_routers",
]

ProviderFactory = Callable[[Any, httpx.AsyncClient], MetricProvider]
RouterFactory = Callable[[Any, httpx.AsyncClient], TrafficRouter]


def _factory(type_: str, implementation: Implementation) -> Callable[..., Any]:
    """The declaration's implementation, imported now so a broken one fails at start-up."""
    if not isinstance(implementation, str):
        return implementation
    try:
        found: object = pkgutil.resolve_name(implementation)
    except (ImportError, AttributeError, ValueError) as exc:
        raise BackendDeclarationError(
            f"backend type {type_!r}: its implementation {implementation!r} cannot be loaded "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if not callable(found):
        raise BackendDeclarationError(
            f"backend type {type_!r}: {implementation!r} is not callable; name a class or "
            "function that takes (config, httpx.AsyncClient)"
        )
    return found


def installed_providers() -> dict[str, ProviderFactory]:
    """A factory per installed monitoring type; raises BackendDeclarationError on a broken one."""
    return {
        type_: _factory(type_, backend.implementation)
        for type_, backend in monitoring_backends().items()
    }


def installed_routers() -> dict[str, RouterFactory]:
    """A factory per installed router type; raises BackendDeclarationError on a broken one."""
    return {
        type_: _factory(type_, backend.implementation)
        for type_, backend in router_backends().items()
    }


PROVIDERS: Mapping[str, ProviderFactory] = installed_providers()
"""The installed monitoring types, read once when the worker (or the CLI's preflight) starts."""
ROUTERS: Mapping[str, RouterFactory] = installed_routers()
"""The installed router types."""


class BackendRegistry:
    """Builds providers and routers from spec configs around one shared, pooled HTTP client."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        providers: Mapping[str, ProviderFactory] = PROVIDERS,
        routers: Mapping[str, RouterFactory] = ROUTERS,
    ) -> None:
        self._client = client
        self._providers = providers
        self._routers = routers

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared pooled client, for activities that talk HTTP without a backend type."""
        return self._client

    def provider(self, config: MonitoringConfig) -> MetricProvider:
        """The provider for a spec's `monitoring` block."""
        return build_provider(config, self._client, self._providers)

    def router(self, config: RouterConfig) -> TrafficRouter:
        """The router for a spec's `router` block."""
        return build_router(config, self._client, self._routers)


def build_provider(
    config: MonitoringConfig,
    client: httpx.AsyncClient,
    providers: Mapping[str, ProviderFactory] = PROVIDERS,
) -> MetricProvider:
    """Construct the provider for `config.type`, or raise UnknownBackendError."""
    factory = providers.get(config.type)
    if factory is None:
        raise UnknownBackendError(
            f"no monitoring provider of type {config.type!r}; known: {sorted(providers)}"
        )
    return factory(config, client)


def build_router(
    config: RouterConfig,
    client: httpx.AsyncClient,
    routers: Mapping[str, RouterFactory] = ROUTERS,
) -> TrafficRouter:
    """Construct the router for `config.type`, or raise UnknownBackendError."""
    factory = routers.get(config.type)
    if factory is None:
        raise UnknownBackendError(f"no router of type {config.type!r}; known: {sorted(routers)}")
    return factory(config, client)

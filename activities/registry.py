"""Backend type tag -> constructor, for monitoring providers and routers.

The keys are the spec's `type` tags. An unknown tag raises UnknownBackendError: a registry never
falls back to a default backend, because a rollout judged by the wrong backend is judged blind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from activities.errors import UnknownBackendError
from activities.providers.base import MetricProvider
from activities.providers.http_json import HttpJsonProvider
from activities.providers.prometheus import PrometheusProvider
from activities.routers.base import TrafficRouter
from activities.routers.http_router import HttpTrafficRouter
from rollout_specs import MonitoringConfig, RouterConfig

__all__ = ["PROVIDERS", "ROUTERS", "BackendRegistry", "build_provider", "build_router"]

ProviderFactory = Callable[[Any, httpx.AsyncClient], MetricProvider]
RouterFactory = Callable[[Any, httpx.AsyncClient], TrafficRouter]

PROVIDERS: Mapping[str, ProviderFactory] = {
    "prometheus": PrometheusProvider,
    "http": HttpJsonProvider,
}
ROUTERS: Mapping[str, RouterFactory] = {
    "http": HttpTrafficRouter,
}


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

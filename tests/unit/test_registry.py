"""The backend registries know exactly the spec's type tags, and fail closed on others."""

from __future__ import annotations

import typing

import httpx
import pytest

from activities.errors import UnknownBackendError
from activities.registry import PROVIDERS, ROUTERS, build_provider
from rollout_specs import HttpRouter, PrometheusMonitoring
from rollout_specs.models import MonitoringConfig, RouterConfig


def _tags(config: object) -> set[str]:
    union = typing.get_args(config)[0]
    members = typing.get_args(union) or (union,)
    return {typing.get_args(m.model_fields["type"].annotation)[0] for m in members}


def test_every_monitoring_type_of_the_spec_has_a_provider_and_no_more() -> None:
    assert set(PROVIDERS) == _tags(MonitoringConfig)


def test_every_router_type_of_the_spec_has_a_router_and_no_more() -> None:
    assert set(ROUTERS) == _tags(RouterConfig)
    assert _tags(RouterConfig) == set(typing.get_args(HttpRouter.model_fields["type"].annotation))


async def test_an_unknown_type_fails_closed() -> None:
    config = PrometheusMonitoring(type="prometheus", url="http://127.0.0.1:9090")
    async with httpx.AsyncClient() as client:
        with pytest.raises(
            UnknownBackendError, match="no monitoring provider of type 'prometheus'"
        ):
            build_provider(config, client, providers={})

"""Connecting to Temporal with lockgate's data converter and the configured credentials."""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, TLSConfig

from runtime.settings import Settings
from workflows.visibility import SEARCH_ATTRIBUTES

__all__ = ["connect", "ensure_search_attributes", "search_attribute_flags"]

_INDEXED = {
    "KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "DOUBLE": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
}
_CLI_TYPE = {"KEYWORD": "Keyword", "DOUBLE": "Double"}


def _tls(settings: Settings) -> TLSConfig | bool:
    paths = (settings.temporal_tls_cert, settings.temporal_tls_key, settings.temporal_tls_ca)
    if not any(paths):
        return settings.temporal_api_key is not None
    cert, key, ca = (path.read_bytes() if path else None for path in paths)
    return TLSConfig(client_cert=cert, client_private_key=key, server_root_ca_cert=ca)


async def connect(
    settings: Settings, *, runtime: Runtime | None = None, address: str | None = None
) -> Client:
    """Connect with the pydantic converter, which every lockgate message needs."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        address or settings.address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=_tls(settings),
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )


def search_attribute_flags() -> list[str]:
    """`--search-attribute Name=Type` flags registering lockgate's keys on a dev server."""
    flags: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}={_CLI_TYPE[key.indexed_value_type.name]}"]
    return flags


async def ensure_search_attributes(client: Client) -> None:
    """Register lockgate's search attributes (idempotent).

    A rollout that upserts an unregistered attribute fails its workflow task forever, so the
    worker makes sure before it polls. Servers that forbid it (Temporal Cloud without admin
    rights) raise RPCError: the operator must add the attributes once, as docs/operations.md says.
    """
    request = AddSearchAttributesRequest(
        namespace=client.namespace,
        search_attributes={
            key.name: _INDEXED[key.indexed_value_type.name] for key in SEARCH_ATTRIBUTES
        },
    )
    try:
        await client.operator_service.add_search_attributes(request, timeout=timedelta(seconds=10))
    except RPCError as exc:
        if "already" not in str(exc).lower():
            raise

"""Connecting to Temporal with lockgate's data converter and the configured credentials."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, TLSConfig

from runtime.codec import EncryptionCodec
from runtime.settings import Settings
from workflows.visibility import SEARCH_ATTRIBUTES

__all__ = [
    "connect",
    "data_converter",
    "ensure_search_attributes",
    "payload_codec",
    "search_attribute_flags",
]

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


def payload_codec(settings: Settings) -> EncryptionCodec | None:
    """The encryption codec `LOCKGATE_CODEC_KEYS` configures, or None when encryption is off."""
    keys = settings.lockgate_codec_keys
    if keys is None:
        return None
    return EncryptionCodec.from_setting(keys.get_secret_value())


def data_converter(settings: Settings) -> DataConverter:
    """The pydantic converter every lockgate message needs, plus the codec when it is on.

    The worker and the CLI both connect through here, so both encrypt and decrypt alike.
    """
    codec = payload_codec(settings)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)


async def connect(
    settings: Settings, *, runtime: Runtime | None = None, address: str | None = None
) -> Client:
    """Connect with lockgate's data converter (pydantic, encrypted when configured)."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        address or settings.address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=_tls(settings),
        data_converter=data_converter(settings),
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

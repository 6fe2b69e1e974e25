"""Connecting to Temporal with lockgate's data converter and the configured credentials."""

from __future__ import annotations

import dataclasses
import functools
import logging
from datetime import timedelta

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from runtime.codec import EncryptionCodec
from runtime.connection_errors import ConnectionFailed, explain, explain_rpc
from runtime.settings import Connection, Settings
from workflows.visibility import SEARCH_ATTRIBUTES

__all__ = [
    "ConnectionFailed",
    "connect",
    "connect_to",
    "core_runtime",
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


CORE_LOGGER = "temporalio.core"


def core_runtime(metrics: PrometheusConfig | None = None) -> Runtime:
    """A Temporal runtime whose own log lines go through Python logging, never to stdout.

    The SDK's default runtime prints its warnings (a retried gRPC call, say) straight to stdout,
    where they corrupt `-o json` output and the demo's live display. Forwarded, they reach the
    `temporalio.core` logger: stderr in the CLI, the worker's log format in the worker.
    """
    forwarding = LogForwardingConfig(logger=logging.getLogger(CORE_LOGGER))
    log = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"), forwarding=forwarding
    )
    return Runtime(telemetry=TelemetryConfig(logging=log, metrics=metrics))


@functools.cache
def _shared_runtime() -> Runtime:
    return core_runtime()


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
    """Connect with lockgate's data converter (pydantic, encrypted when configured).

    Where and how come from `settings.connection()` (flags, TEMPORAL_* variables, profile);
    `address` overrides the address alone. After connecting the namespace is described, since
    the server accepts a connection to any namespace and only a later call would fail (a
    "rollout not found" that hides the typo). Every failure is one line: ConnectionSettingError
    for settings that cannot be used, ConnectionFailed (runtime.connection_errors) otherwise.
    """
    connection = settings.connection()
    if address is not None:
        connection = dataclasses.replace(connection, address=address, embedded=False)
    return await connect_to(connection, data_converter(settings), runtime=runtime)


async def connect_to(
    connection: Connection, converter: DataConverter, *, runtime: Runtime | None = None
) -> Client:
    """Connect to a resolved `Connection`; see `connect`, which most callers want.

    Without a `runtime`, one shared `core_runtime()` is used, so no SDK log line reaches stdout.
    """
    tls: TLSConfig | bool = False
    if connection.tls_enabled:
        files = connection.tls_files()
        tls = TLSConfig(
            server_root_ca_cert=files.get("server_root_ca_cert"),
            client_cert=files.get("client_cert"),
            client_private_key=files.get("client_private_key"),
            domain=connection.tls.server_name if connection.tls else None,
        )
    try:
        client = await Client.connect(
            connection.address,
            namespace=connection.namespace,
            api_key=connection.api_key,
            tls=tls,
            rpc_metadata=dict(connection.rpc_metadata),
            data_converter=converter,
            runtime=runtime or _shared_runtime(),
        )
    except (RuntimeError, RPCError) as exc:
        raise ConnectionFailed(await explain(exc, connection)) from exc
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=connection.namespace),
            timeout=timedelta(seconds=10),
        )
    except RPCError as exc:
        # Only a namespace that is not there stops us: a key that may not describe namespaces
        # (some Temporal Cloud roles) is no reason to refuse work it may do.
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ConnectionFailed(explain_rpc(exc, connection)) from exc
    return client


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

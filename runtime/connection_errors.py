"""Why a connection to Temporal failed, in one line an operator can act on.

The SDK reports a failed connect as one long Rust error chain (`tonic::transport::Error(...)`)
whatever went wrong: TLS spoken to a plaintext server, plaintext to a TLS one, a refused port, a
certificate nobody trusts. `explain` reads the chain and says what it means and which setting
changes it; a plaintext failure that the text cannot explain is settled by a short TLS handshake
with the same address (`speaks_tls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl

from temporalio.service import RPCError, RPCStatusCode

from runtime.settings import Connection

__all__ = [
    "ConnectionFailed",
    "explain",
    "explain_rpc",
    "looks_like_tls_to_plaintext",
    "short_cause",
    "speaks_tls",
]

PROBE_TIMEOUT = 3.0
"""Seconds the TLS probe waits for a handshake: a TLS server answers at once."""

_TLS_TO_PLAINTEXT = (
    "InvalidContentType",  # rustls: the first record back was not TLS
    "CorruptMessage",
    "wrong version number",
    "packet length too long",
)
_PLAINTEXT_TO_TLS = (
    "Client sent an HTTP request to an HTTPS server",
    "frame with invalid size",
    "http2 error: connection error detected: frame",
    "invalid HTTP version",
)
_UNREACHABLE = ("ConnectionRefused", "Connection refused", "dns error", "NetworkUnreachable")
_NO_ANSWER = ("timed out", "TimedOut", "deadline")


class ConnectionFailed(RuntimeError):
    """Temporal could not be reached as configured; the message is the one line to print.

    A RuntimeError, as the SDK's own connect failure is, so existing handlers still catch it.
    """


def short_cause(text: str) -> str:
    """The readable core of an SDK error chain: its innermost quoted message, or kind."""
    messages = re.findall(r'message: "([^"]+)"', text)
    if messages:
        return str(messages[-1])
    kinds = re.findall(r"kind: (\w+)", text)
    if kinds:
        return str(kinds[-1])
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


def looks_like_tls_to_plaintext(text: str) -> bool:
    """Whether the error says the client spoke TLS and the server answered in plaintext."""
    return any(marker in text for marker in _TLS_TO_PLAINTEXT)


async def speaks_tls(address: str, within: float = PROBE_TIMEOUT) -> bool:
    """Whether a TLS handshake with `address` completes (certificate not checked).

    Only ever called with the address the operator configured, after a plaintext connect to it
    failed in a way the error text does not explain.
    """
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(within):
            _, writer = await asyncio.open_connection(
                host, int(port), ssl=context, server_hostname=host or None
            )
    except (OSError, ValueError, TimeoutError, ssl.SSLError):
        return False
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        async with asyncio.timeout(within):
            await writer.wait_closed()
    return True


def _tls_source(connection: Connection) -> str:
    origins = [
        connection.origin(name)
        for name in ("api_key", "client_cert", "server_root_ca_cert")
        if name in connection.origins
    ]
    return ", ".join(origins) if origins else "TEMPORAL_TLS or the profile's tls section"


def _unreachable(connection: Connection, cause: str) -> str:
    message = f"cannot reach Temporal at {connection.address} ({cause})"
    if connection.embedded:
        return (
            f"{message}; is `python worker.py` running? Set TEMPORAL_ADDRESS (or --address, or "
            "a profile) to use another server."
        )
    return f"{message}; check the address ({connection.origin('address')})"


def _certificate(connection: Connection, text: str) -> str | None:
    address = connection.address
    if "NotValidForName" in text:
        return (
            f"the certificate of the server at {address} is not valid for the name lockgate "
            "asked for; set TEMPORAL_TLS_SERVER_NAME (or --tls-server-name) to a name it has"
        )
    if "InvalidCertificate" in text or "UnknownIssuer" in text:
        detail = re.search(r"InvalidCertificate\((\w+)", text)
        reason = f" ({detail.group(1)})" if detail else ""
        return (
            f"the server at {address} presented a certificate lockgate does not trust{reason}; "
            "set TEMPORAL_TLS_SERVER_CA_CERT_PATH to the CA that signed it"
        )
    if "PrivateKeyParseError" in text:
        return (
            f"the TLS client key ({connection.origin('client_private_key')}) is not a valid "
            "PEM private key"
        )
    return None


async def explain(exc: BaseException, connection: Connection) -> str:
    """One line saying why connecting to `connection` failed with `exc`, and what to change."""
    if isinstance(exc, RPCError):
        return explain_rpc(exc, connection)
    text = str(exc)
    address = connection.address
    if connection.tls_enabled:
        if looks_like_tls_to_plaintext(text):
            return (
                f"the server at {address} does not speak TLS; unset TEMPORAL_API_KEY/TLS settings "
                f"or check the address (TLS is on because of {_tls_source(connection)})"
            )
        certificate = _certificate(connection, text)
        if certificate is not None:
            return certificate
    if any(marker in text for marker in _UNREACHABLE):
        return _unreachable(connection, short_cause(text))
    if not connection.tls_enabled and (
        any(marker in text for marker in _PLAINTEXT_TO_TLS) or await speaks_tls(address)
    ):
        return (
            f"the server at {address} speaks TLS but lockgate connected in plaintext; set "
            "TEMPORAL_TLS=true (or TEMPORAL_API_KEY, or the TEMPORAL_TLS_* settings) or check "
            "the address"
        )
    if any(marker in text for marker in _NO_ANSWER):
        return _unreachable(connection, f"no answer: {short_cause(text)}")
    return f"cannot connect to Temporal at {address}: {short_cause(text)}"


def explain_rpc(exc: RPCError, connection: Connection) -> str:
    """One line for an RPC refused while connecting: credentials or an unknown namespace."""
    address = connection.address
    if exc.status == RPCStatusCode.NOT_FOUND and "amespace" in exc.message:
        return (
            f"namespace {connection.namespace!r} does not exist on {address} "
            f"({connection.origin('namespace')})"
        )
    if exc.status in (RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED):
        return (
            f"Temporal at {address} refused lockgate's credentials ({exc.message}); check "
            "TEMPORAL_API_KEY or the client certificate"
        )
    return f"Temporal at {address} refused the connection: {exc.message}"

"""The control plane's bearer token: where it comes from, and the check on every request.

Only lockgate (and operators) may change routes, read routes, stats and metrics; those endpoints
listen on their own port and each request must carry `Authorization: Bearer <token>`. The token
is given to the gateway at start, from a file (`--control-token-file`) or an environment
variable (`--control-token-env`), never on the command line (where `ps` shows it to everyone).

- Only a SHA-256 digest of the token is kept, and the presented token's digest is compared with
  `hmac.compare_digest`, so the comparison takes the same time however much of a guess matches
  (comparing digests also hides the token's length).
- A refusal is `401` with `WWW-Authenticate: Bearer` and a detail that says what to send, never
  anything about the expected token.
- A token shorter than 16 characters (or with whitespace or control characters, which no header
  can carry intact) is refused at start: a guessable token is no control.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.limits import refuse

__all__ = [
    "MIN_TOKEN_LENGTH",
    "BearerGuard",
    "ControlToken",
    "ControlTokenError",
]

MIN_TOKEN_LENGTH = 16
"""Characters a control token must have at least (`secrets.token_urlsafe(32)` gives 43)."""
MAX_TOKEN_BYTES = 4096
"""A token longer than this is a misread file, not a token."""
OPEN_PATHS = frozenset({"/healthz"})
"""Paths the control plane answers without a token: readiness probes carry no secrets."""


class ControlTokenError(ValueError):
    """The control token cannot be read, or is too weak to protect the control plane."""


class ControlToken:
    """The control plane's secret, kept only as a digest.

    Build it with `from_secret`, `from_file` or `from_env`.
    """

    __slots__ = ("_digest",)

    def __init__(self, digest: bytes) -> None:
        self._digest = digest

    @classmethod
    def from_secret(cls, secret: str) -> ControlToken:
        """The token `secret`.

        Raises:
            ControlTokenError: Shorter than MIN_TOKEN_LENGTH, longer than MAX_TOKEN_BYTES, or
                with whitespace or control characters.
        """
        if len(secret.encode()) > MAX_TOKEN_BYTES:
            raise ControlTokenError(f"the control token is longer than {MAX_TOKEN_BYTES} bytes")
        if len(secret) < MIN_TOKEN_LENGTH:
            raise ControlTokenError(
                f"the control token has fewer than {MIN_TOKEN_LENGTH} characters; generate one "
                "with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if any(ch.isspace() or not ch.isprintable() for ch in secret):
            raise ControlTokenError(
                "the control token contains whitespace or control characters, which an "
                "Authorization header cannot carry"
            )
        return cls(_digest(secret.encode()))

    @classmethod
    def from_file(cls, path: Path) -> ControlToken:
        """The token in `path` (its content, without a trailing newline).

        Raises:
            ControlTokenError: The file cannot be read, or holds no acceptable token.
        """
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_TOKEN_BYTES + 1)
        except OSError as exc:
            raise ControlTokenError(
                f"cannot read the control token file {path}: {exc.strerror or exc}"
            ) from None
        try:
            secret = raw.decode().rstrip("\r\n")
        except UnicodeDecodeError:
            raise ControlTokenError(f"the control token file {path} is not UTF-8 text") from None
        try:
            return cls.from_secret(secret)
        except ControlTokenError as exc:
            raise ControlTokenError(f"{path}: {exc}") from None

    @classmethod
    def from_env(cls, name: str) -> ControlToken:
        """The token in the environment variable `name`.

        Raises:
            ControlTokenError: The variable is unset or empty, or holds no acceptable token.
        """
        secret = os.environ.get(name, "")
        if not secret:
            raise ControlTokenError(f"the environment variable {name} is unset or empty")
        try:
            return cls.from_secret(secret)
        except ControlTokenError as exc:
            raise ControlTokenError(f"{name}: {exc}") from None

    def matches(self, presented: bytes | None) -> bool:
        """Whether `presented` is the token, in time independent of how much of it matches."""
        if presented is None:
            return False
        return hmac.compare_digest(_digest(presented), self._digest)

    def __repr__(self) -> str:
        return "ControlToken(<hidden>)"


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


class BearerGuard:
    """ASGI middleware: a request without the control token is answered 401 and goes no further.

    Its body is never read whole, parsed or stored (the connection is closed after the answer,
    gateway.limits.refuse), so an unauthenticated client cannot make the gateway act on it.

    Args:
        app: The control plane's app.
        token: The token every request but OPEN_PATHS must carry; None turns the guard off
            (`--insecure-control-plane`, for tests and a laptop).
    """

    def __init__(self, app: ASGIApp, token: ControlToken | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass an authenticated (or open-path) request on; answer any other one 401."""
        if scope["type"] != "http" or self.token is None or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self.token.matches(_bearer(scope)):
            await self.app(scope, receive, send)
            return
        await refuse(
            receive,
            send,
            401,
            "the gateway's control plane needs the header `Authorization: Bearer <token>` with "
            "the token the gateway was started with (a router `auth` block in the spec: "
            "{type: bearer, token: {env: NAME}})",
            [(b"www-authenticate", b'Bearer realm="lockgate-gateway-control"')],
        )


def _bearer(scope: Scope) -> bytes | None:
    """The token of the request's one `Authorization: Bearer` header, or None."""
    values = [value for name, value in scope["headers"] if name == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    return token or None

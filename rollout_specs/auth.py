"""Credentials for the router, monitoring and webhooks, by reference only.

A spec is stored in the rollout's workflow history, printed by `lockgate status -o json` and
shown in the Temporal UI, so it must never hold a secret. An `auth` block names where the
*worker* reads the secret (an environment variable or a file on the worker's machine); the value
is read when a request is made, sent in a header, and scrubbed from every error text and log
line that leaves the worker.

    router:
      type: http
      url: https://router.internal:8443
      auth: {type: bearer, token: {env: LOCKGATE_ROUTER_TOKEN}}
    monitoring:
      type: prometheus
      url: https://prometheus.internal
      auth: {type: basic, username: lockgate, password: {file: /run/secrets/prometheus}}
    notify:
      - {type: webhook, url_from: {env: SLACK_HOOK_URL}}
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Auth", "BasicAuth", "BearerAuth", "HeaderAuth", "SecretRef"]

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
HEADER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$"


class _AuthModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class SecretRef(_AuthModel):
    """Where the worker finds a secret: exactly one of `env` or `file`, never the value."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["env"]}, {"required": ["file"]}]}
    )

    env: Annotated[str, Field(pattern=ENV_NAME_PATTERN)] | None = None
    """An environment variable of the worker, e.g. LOCKGATE_ROUTER_TOKEN."""
    file: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    """A file on the worker's machine (its content, without a trailing newline)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.env is None) == (self.file is None):
            raise ValueError(
                "name exactly one place for the secret: {env: VARIABLE} or {file: /path}; the "
                "spec never holds the secret itself"
            )
        return self

    def describe(self) -> str:
        """Where the secret lives, for messages (never its value)."""
        return f"environment variable {self.env}" if self.env else f"file {self.file}"


class BearerAuth(_AuthModel):
    """`Authorization: Bearer <token>`."""

    type: Literal["bearer"]
    """The auth kind: `bearer`, an `Authorization: Bearer` header."""
    token: SecretRef
    """Where the worker reads the token (`{env: NAME}` or `{file: /path}`)."""


class BasicAuth(_AuthModel):
    """HTTP basic authentication; the user name is not a secret, the password is."""

    type: Literal["basic"]
    """The auth kind: `basic`, HTTP basic authentication."""
    username: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^:\s]+$")]
    """The user name, written in the spec (it is not a secret); no ':' or spaces."""
    password: SecretRef
    """Where the worker reads the password (`{env: NAME}` or `{file: /path}`)."""


class HeaderAuth(_AuthModel):
    """Arbitrary request headers whose values are secrets (e.g. an API gateway's key)."""

    type: Literal["headers"]
    """The auth kind: `headers`, request headers whose values are secrets."""
    headers: Annotated[
        dict[Annotated[str, Field(pattern=HEADER_NAME_PATTERN)], SecretRef],
        Field(min_length=1, max_length=16),
    ]
    """Header name -> where the worker reads its value (1 to 16 headers)."""


Auth = Annotated[BearerAuth | BasicAuth | HeaderAuth, Field(discriminator="type")]
"""How lockgate authenticates to a backend; the secret values stay on the worker."""


def refuse_credentials_in_url(url: str) -> str:
    """Refuse `http://user:password@host`: the spec is stored and shown, so use an `auth` block."""
    authority = url.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in authority:
        raise ValueError(
            "the URL carries credentials (user:password@); the spec is stored in the rollout's "
            "history and shown in the UI, so remove them and add an `auth` block that names "
            "where the worker reads the secret, e.g. auth: {type: basic, username: lockgate, "
            "password: {env: PROMETHEUS_PASSWORD}}"
        )
    return url

"""Secrets by reference: the worker reads them where an `auth` block says, when it needs them.

A value is read at each request (so a rotated file is picked up without a restart), remembered
for redaction, and never returned in an error: a missing variable or an unreadable file is
reported by its name or path alone.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from activities.errors import MissingCredential
from activities.redaction import remember
from rollout_specs import Auth, BasicAuth, BearerAuth, SecretRef

__all__ = ["auth_headers", "read_secret"]

MAX_SECRET_BYTES = 64 * 1024


def read_secret(ref: SecretRef) -> str:
    """The secret's value, from the worker's environment or a file; remembered for redaction.

    Raises:
        MissingCredential: The variable is unset or empty, or the file cannot be read.
    """
    if ref.env is not None:
        value = os.environ.get(ref.env, "")
        if not value:
            raise MissingCredential(
                f"the worker has no environment variable {ref.env} (or it is empty); set it "
                "where the worker runs: the spec names the secret, it never holds it"
            )
    else:
        assert ref.file is not None
        path = Path(ref.file)
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise MissingCredential(
                f"the worker cannot read the secret file {ref.file} ({exc.strerror or exc}); "
                "check that it exists on the worker's machine and that the worker may read it"
            ) from None
        if len(raw) > MAX_SECRET_BYTES:
            raise MissingCredential(f"the secret file {ref.file} is larger than 64 KiB")
        value = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not value:
            raise MissingCredential(f"the secret file {ref.file} is empty")
    remember(value)
    return value


def auth_headers(auth: Auth | None) -> dict[str, str]:
    """The request headers an `auth` block stands for; every value is remembered for redaction."""
    if auth is None:
        return {}
    if isinstance(auth, BearerAuth):
        headers = {"Authorization": f"Bearer {read_secret(auth.token)}"}
    elif isinstance(auth, BasicAuth):
        pair = f"{auth.username}:{read_secret(auth.password)}".encode()
        headers = {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
    else:
        headers = {name: read_secret(ref) for name, ref in auth.headers.items()}
    for value in headers.values():
        remember(value)
    return headers

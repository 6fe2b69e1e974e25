"""Payload encryption: an AES-GCM payload codec with key ids, and the UI's remote codec server.

Temporal stores every payload (the spec, the rollout's state, activity inputs and results) in
its history. With `LOCKGATE_CODEC_KEYS` set, the worker and the CLI encrypt them before they
leave the process, so the Temporal server (and whoever can read its database or backups) holds
only ciphertext. The format is the one of Temporal's encryption samples (Go, TypeScript,
Python): metadata `encoding: binary/encrypted` and `encryption-key-id: <id>`, data the 12-byte
nonce followed by the AES-GCM ciphertext of the whole serialized original payload. Their codec
servers and `temporal workflow show --codec-endpoint` therefore read lockgate's payloads too.

Keys rotate by id: the first key encrypts, every listed key decrypts, so an operator puts a new
key first and keeps the old ones until nothing still running was written with them. Payloads
written before encryption was turned on pass through unchanged, so turning it on never breaks a
running rollout.

`codec_server_app` serves the codec over HTTP for the Temporal UI (and the `temporal` CLI):
`lockgate codec-server` runs it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

__all__ = [
    "ENCODING",
    "ENV_VAR",
    "KEY_ID_METADATA",
    "CodecConfigError",
    "CodecKey",
    "DecryptionFailed",
    "EncryptionCodec",
    "UnknownKeyId",
    "codec_server_app",
    "new_key",
    "parse_keys",
]

ENV_VAR = "LOCKGATE_CODEC_KEYS"
"""The setting that turns encryption on; named in every configuration error."""
ENCODING = b"binary/encrypted"
"""`encoding` metadata of an encrypted payload: how a reader knows to decrypt (or pass through)."""
KEY_ID_METADATA = "encryption-key-id"
"""Metadata naming the key a payload was encrypted with, so old keys keep decrypting after a
rotation. The id is stored in clear: it is a label, never secret."""
KEY_SIZE = 32
"""AES-256: the only key size accepted, so every deployment gets the same strength."""
NONCE_SIZE = 12
"""GCM's standard nonce, random per payload. NIST bounds random nonces at 2**32 encryptions per
key; a rollout checking every 30 s writes on the order of 10**4 payloads a day, so a large fleet
should rotate keys (docs/operations.md) well before its total nears that bound."""
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class CodecConfigError(ValueError):
    """`LOCKGATE_CODEC_KEYS` is malformed: refused at start, before anything is encrypted."""


class UnknownKeyId(Exception):
    """A payload was encrypted with a key id that is not configured (a key removed too soon)."""


class DecryptionFailed(Exception):
    """A payload did not authenticate: the key under its id is another one, or it was altered."""


@dataclass(frozen=True)
class CodecKey:
    """One named AES-256 key. The id travels with each payload; the key never leaves memory."""

    key_id: str
    key: bytes = field(repr=False)


def new_key() -> str:
    """A fresh random key, base64-encoded as `LOCKGATE_CODEC_KEYS` expects it (for the docs)."""
    return base64.b64encode(os.urandom(KEY_SIZE)).decode("ascii")


def parse_keys(value: str) -> list[CodecKey]:
    """Parse `id:base64key,id:base64key,...` (first one encrypts); raise CodecConfigError.

    Every mistake an operator can make with key material is caught here, at start, with the
    entry it is in (never the key itself): a bad id, a key that is not base64 or not 32 bytes,
    a duplicate id, or no key at all.
    """
    keys: list[CodecKey] = []
    entries = [entry.strip() for entry in value.split(",")]
    for position, entry in enumerate(entries, start=1):
        if not entry:
            continue  # a trailing comma is harmless
        key_id, separator, encoded = (part.strip() for part in entry.partition(":"))
        where = f"{ENV_VAR} entry {position}"
        if not separator or not encoded:
            raise CodecConfigError(
                f"{where} is not `id:base64key` (no `:` or no key after it); generate a key "
                'with `.venv/bin/python -c "from runtime.codec import new_key; print(new_key())"`'
            )
        if not _KEY_ID.fullmatch(key_id):
            raise CodecConfigError(
                f"{where}: key id {key_id!r} must be 1-64 characters of letters, digits, `.`, "
                "`_` or `-`"
            )
        where = f"{where} (key id {key_id!r})"
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CodecConfigError(f"{where}: the key is not valid base64 ({exc})") from None
        if len(key) != KEY_SIZE:
            raise CodecConfigError(
                f"{where}: the key is {len(key)} bytes; AES-256 needs exactly {KEY_SIZE} "
                f"(base64 of {KEY_SIZE} random bytes, 44 characters)"
            )
        if any(existing.key_id == key_id for existing in keys):
            raise CodecConfigError(
                f"{where}: the id is used twice; each key needs its own id, or a payload's id "
                "could not say which key decrypts it"
            )
        keys.append(CodecKey(key_id, key))
    if not keys:
        raise CodecConfigError(
            f"{ENV_VAR} is set but holds no key; unset it to turn encryption off"
        )
    return keys


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads: the first key encrypts, every key decrypts.

    Unencrypted payloads (written before encryption was turned on) decode unchanged, so turning
    encryption on mid-rollout is safe; turning it off is not (the old payloads would need a key).
    """

    def __init__(self, keys: Sequence[CodecKey]) -> None:
        if not keys:
            raise CodecConfigError(f"{ENV_VAR}: at least one key is needed")
        ids = [key.key_id for key in keys]
        if len(set(ids)) != len(ids):
            raise CodecConfigError(f"{ENV_VAR}: duplicate key ids in {ids}")
        self._encrypt_id = keys[0].key_id
        self._ciphers = {key.key_id: AESGCM(key.key) for key in keys}

    @classmethod
    def from_setting(cls, value: str) -> EncryptionCodec:
        """The codec of a `LOCKGATE_CODEC_KEYS` value; CodecConfigError if it is malformed."""
        return cls(parse_keys(value))

    @property
    def encrypting_key_id(self) -> str:
        """The id new payloads are encrypted with (the first configured key)."""
        return self._encrypt_id

    @property
    def key_ids(self) -> list[str]:
        """Every id this codec decrypts, in configured order (for messages and logs)."""
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload whole (data and metadata) under the first key."""
        cipher = self._ciphers[self._encrypt_id]
        encoded: list[Payload] = []
        for payload in payloads:
            nonce = os.urandom(NONCE_SIZE)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), None)
            encoded.append(
                Payload(
                    metadata={
                        "encoding": ENCODING,
                        KEY_ID_METADATA: self._encrypt_id.encode(),
                    },
                    data=nonce + sealed,
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt encrypted payloads with the key their id names; pass the others through."""
        return [self._decode_one(payload) for payload in payloads]

    def _decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        raw_id = payload.metadata.get(KEY_ID_METADATA, b"")
        key_id = raw_id.decode("utf-8", errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyId(
                f"payload encrypted with key id {key_id!r}, which is not in {ENV_VAR} "
                f"(configured: {', '.join(self._ciphers)}); add that key back (after the first "
                "one) to read it"
            )
        nonce, sealed = payload.data[:NONCE_SIZE], payload.data[NONCE_SIZE:]
        try:
            plain = cipher.decrypt(nonce, sealed, None)
        except InvalidTag:
            raise DecryptionFailed(
                f"payload with key id {key_id!r} did not decrypt: the key configured under that "
                "id is not the one it was encrypted with, or the payload was altered"
            ) from None
        decoded = Payload()
        try:
            decoded.ParseFromString(plain)
        except DecodeError as exc:
            raise DecryptionFailed(
                f"payload with key id {key_id!r} decrypted to something that is not a payload"
            ) from exc
        return decoded


_CODEC_ERRORS = (UnknownKeyId, DecryptionFailed)
"""What decoding raises for a payload the codec cannot read: a 400 naming why, not a 500."""


def codec_server_app(codec: PayloadCodec, origins: Sequence[str]) -> Starlette:
    """The Temporal remote codec protocol over HTTP, for the Temporal UI and `temporal` CLI.

    `POST .../encode` and `POST .../decode` take and return `{"payloads": [...]}` in proto3 JSON
    (the protocol matches on the last path segment only, so `/<namespace>/decode` works too).
    The browser calls it directly from the UI's page, so CORS allows exactly the UI's `origins`;
    the `X-Namespace` header the UI sends is accepted (one key set serves every namespace).
    Anyone who can reach this server can decrypt: bind it to loopback or put it behind auth.
    """
    operations: dict[str, Callable[[Sequence[Payload]], Awaitable[list[Payload]]]] = {
        "encode": codec.encode,
        "decode": codec.decode,
    }

    async def apply(request: Request) -> Response:
        operation = operations.get(request.url.path.rstrip("/").rsplit("/", 1)[-1])
        if operation is None:
            return JSONResponse({"error": "use POST /encode or POST /decode"}, status_code=404)
        try:
            body = json_format.Parse(await request.body(), Payloads())
        except json_format.ParseError as exc:
            return JSONResponse(
                {"error": f'the body is not {{"payloads": [...]}} in proto3 JSON: {exc}'},
                status_code=400,
            )
        try:
            result = Payloads(payloads=await operation(body.payloads))
        except _CODEC_ERRORS as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return Response(json_format.MessageToJson(result), media_type="application/json")

    cors = Middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=["POST"],
        allow_headers=["Content-Type", "X-Namespace"],
        max_age=600,
    )
    return Starlette(routes=[Route("/{path:path}", apply, methods=["POST"])], middleware=[cors])

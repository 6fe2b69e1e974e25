"""Payload encryption (runtime/codec.py): the codec, its key configuration, its HTTP server."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from google.protobuf import json_format
from pydantic import SecretStr, ValidationError
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.contrib.pydantic import pydantic_data_converter

from rollout_specs import RolloutSpec
from runtime.client import data_converter, payload_codec
from runtime.codec import (
    ENCODING,
    KEY_ID_METADATA,
    CodecConfigError,
    CodecKey,
    DecryptionFailed,
    EncryptionCodec,
    UnknownKeyId,
    codec_server_app,
    new_key,
    parse_keys,
)
from runtime.settings import Settings
from tests.conftest import build_spec, spec_document

UI_ORIGIN = "http://127.0.0.1:8233"
TARGET = "secret-ranker"


def _key() -> bytes:
    return os.urandom(32)


def _setting(*entries: tuple[str, bytes]) -> str:
    return ",".join(f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in entries)


def _spec() -> RolloutSpec:
    return build_spec(spec_document("http://127.0.0.1:9", "http://127.0.0.1:9", target=TARGET))


def _plain_payload() -> Payload:
    (payload,) = pydantic_data_converter.payload_converter.to_payloads([_spec()])
    return payload


async def test_a_payload_round_trips_and_is_stored_as_ciphertext_with_its_key_id() -> None:
    codec = EncryptionCodec([CodecKey("k1", _key())])
    plain = _plain_payload()
    assert TARGET.encode() in plain.data  # the control: the spec is readable before encoding

    (encrypted,) = await codec.encode([plain])
    assert encrypted.metadata["encoding"] == ENCODING
    assert encrypted.metadata[KEY_ID_METADATA] == b"k1"
    assert set(encrypted.metadata) == {"encoding", KEY_ID_METADATA}, "no clear metadata left"
    assert TARGET.encode() not in encrypted.SerializeToString()
    (decoded,) = await codec.decode([encrypted])
    assert decoded == plain  # data and metadata (json/plain, the pydantic type) restored

    (again,) = await codec.encode([plain])
    assert again.data != encrypted.data, "a fresh nonce per payload"


async def test_the_data_converter_encrypts_lockgate_messages_only_when_keys_are_configured() -> (
    None
):
    assert data_converter(Settings()) is pydantic_data_converter
    assert payload_codec(Settings(lockgate_codec_keys=SecretStr(" "))) is None
    settings = Settings(lockgate_codec_keys=SecretStr(_setting(("k1", _key()))))
    converter = data_converter(settings)
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class

    (payload,) = await converter.encode([_spec()])
    assert payload.metadata["encoding"] == ENCODING
    (value,) = await converter.decode([payload], [RolloutSpec])
    assert value == _spec()


async def test_after_a_rotation_payloads_under_the_old_key_id_still_decode() -> None:
    old, new = _key(), _key()
    before = EncryptionCodec.from_setting(_setting(("2024-q1", old)))
    (written_before,) = await before.encode([_plain_payload()])

    rotated = EncryptionCodec.from_setting(_setting(("2024-q2", new), ("2024-q1", old)))
    assert rotated.encrypting_key_id == "2024-q2"
    (written_after,) = await rotated.encode([_plain_payload()])
    assert written_after.metadata[KEY_ID_METADATA] == b"2024-q2", "the first key encrypts"
    assert await rotated.decode([written_before, written_after]) == [_plain_payload()] * 2

    # The old key removed too soon: the error names the id the payload needs.
    only_new = EncryptionCodec.from_setting(_setting(("2024-q2", new)))
    with pytest.raises(UnknownKeyId, match=r"key id '2024-q1'.*configured: 2024-q2"):
        await only_new.decode([written_before])


async def test_payloads_written_before_encryption_was_turned_on_pass_through() -> None:
    codec = EncryptionCodec([CodecKey("k1", _key())])
    plain = _plain_payload()
    (encrypted,) = await codec.encode([plain])
    assert await codec.decode([plain, encrypted, plain]) == [plain, plain, plain]


async def test_a_wrong_key_under_a_known_id_or_an_altered_payload_fails_authentication() -> None:
    (encrypted,) = await EncryptionCodec([CodecKey("k1", _key())]).encode([_plain_payload()])
    with pytest.raises(DecryptionFailed, match="key id 'k1' did not decrypt"):
        await EncryptionCodec([CodecKey("k1", _key())]).decode([encrypted])

    codec = EncryptionCodec([CodecKey("k1", _key())])
    (encrypted,) = await codec.encode([_plain_payload()])
    altered = Payload()
    altered.CopyFrom(encrypted)
    altered.data = encrypted.data[:-1] + bytes([encrypted.data[-1] ^ 1])
    with pytest.raises(DecryptionFailed, match="altered"):
        await codec.decode([altered])


SECRET = base64.b64encode(b"s" * 31).decode()
"""Key material that must never appear in an error message (31 bytes: one short)."""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("k1:not base64!", r"entry 1 \(key id 'k1'\): the key is not valid base64"),
        (f"k1:{SECRET}", r"entry 1 \(key id 'k1'\): the key is 31 bytes; AES-256 needs exactly 32"),
        (
            f"k1:{base64.b64encode(b'k' * 32).decode()},k1:{base64.b64encode(b'j' * 32).decode()}",
            r"entry 2 \(key id 'k1'\): the id is used twice",
        ),
        (SECRET, r"entry 1 is not `id:base64key`"),
        ("k1:", r"entry 1 is not `id:base64key`"),
        (f"bad id:{base64.b64encode(b'k' * 32).decode()}", r"key id 'bad id' must be 1-64"),
        (",,", r"holds no key"),
    ],
)
def test_bad_key_configuration_is_refused_naming_the_entry_never_the_key(
    value: str, message: str
) -> None:
    with pytest.raises(CodecConfigError, match=message) as raised:
        parse_keys(value)
    assert SECRET not in str(raised.value)

    # The same error when the settings load (worker and CLI start), with the input hidden.
    with pytest.raises(ValidationError, match=message) as invalid:
        Settings(lockgate_codec_keys=SecretStr(value))
    assert SECRET not in str(invalid.value)


def test_the_environment_variable_configures_the_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    key = _key()
    monkeypatch.setenv(
        "LOCKGATE_CODEC_KEYS", f" new:{new_key()} , old:{base64.b64encode(key).decode()}, "
    )
    codec = payload_codec(Settings())
    assert codec is not None
    assert codec.key_ids == ["new", "old"]
    assert "old:" not in repr(Settings()), "the keys stay a secret in reprs and logs"
    monkeypatch.setenv("LOCKGATE_CODEC_KEYS", "")
    assert payload_codec(Settings()) is None


def test_a_generated_key_is_accepted() -> None:
    (key,) = parse_keys(f"k:{new_key()}")
    assert len(key.key) == 32
    assert "key=" not in repr(key), "the key bytes are kept out of reprs"


# The codec server, as the Temporal UI calls it from the browser.


@pytest_asyncio.fixture
async def codec_http() -> AsyncIterator[tuple[httpx.AsyncClient, EncryptionCodec]]:
    codec = EncryptionCodec([CodecKey("k1", _key())])
    app = codec_server_app(codec, [UI_ORIGIN])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as http:
        yield http, codec


def _body(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


def _payloads(response: httpx.Response) -> list[Payload]:
    assert response.status_code == 200, response.text
    return list(json_format.Parse(response.text, Payloads()).payloads)


async def test_the_codec_server_encodes_and_decodes_payloads_in_proto3_json(
    codec_http: tuple[httpx.AsyncClient, EncryptionCodec],
) -> None:
    http, codec = codec_http
    headers = {"Content-Type": "application/json", "X-Namespace": "default", "Origin": UI_ORIGIN}
    plain = _plain_payload()
    encoded = _payloads(await http.post("/encode", content=_body(plain), headers=headers))
    assert encoded[0].metadata["encoding"] == ENCODING
    assert await codec.decode(encoded) == [plain], "the server encrypts as the worker does"

    # The protocol matches on the last path segment: /<namespace>/decode works too.
    for path in ("/decode", "/default/decode"):
        response = await http.post(path, content=_body(encoded[0], plain), headers=headers)
        assert _payloads(response) == [plain, plain]
        assert response.headers["access-control-allow-origin"] == UI_ORIGIN
    # The wire form is proto3 JSON: base64 bytes under "metadata" and "data".
    document = json.loads(_body(plain))["payloads"][0]
    assert base64.b64decode(document["metadata"]["encoding"]) == b"json/plain"


async def test_the_codec_server_lets_only_the_ui_origin_call_it_from_a_browser(
    codec_http: tuple[httpx.AsyncClient, EncryptionCodec],
) -> None:
    http, _ = codec_http
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    allowed = await http.options("/decode", headers={"Origin": UI_ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == UI_ORIGIN
    assert "x-namespace" in allowed.headers["access-control-allow-headers"].lower()
    assert "POST" in allowed.headers["access-control-allow-methods"]

    other = await http.options("/decode", headers={"Origin": "http://evil.example", **preflight})
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    response = await http.post("/decode", content=_body(), headers={"Origin": "http://x.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_the_codec_server_answers_what_it_cannot_decode_with_a_400_naming_why(
    codec_http: tuple[httpx.AsyncClient, EncryptionCodec],
) -> None:
    http, _ = codec_http
    (foreign,) = await EncryptionCodec([CodecKey("gone", _key())]).encode([_plain_payload()])
    response = await http.post("/decode", content=_body(foreign))
    assert response.status_code == 400
    assert "key id 'gone'" in response.json()["error"]

    bad = await http.post("/decode", content="not json")
    assert bad.status_code == 400
    assert "proto3 JSON" in bad.json()["error"]
    assert (await http.post("/other", content=_body())).status_code == 404
    assert (await http.get("/decode")).status_code == 405

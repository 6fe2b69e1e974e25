"""The decide endpoint as a plain ASGI app: a body in pieces, a client that leaves, the head."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import ClientDisconnect
from starlette.types import Message

from gateway.app import Gateway, create_gateway
from gateway.in_process import InProcessPolicies

ARTIFACTS = Path(__file__).resolve().parents[2] / "simulator" / "artifacts"
SERVER = "http://127.0.0.1:8101"
ROUTE = {
    "rollout_id": "rollout-offers/1",
    "generation": 1,
    "incumbent": {"version": "41", "uri": SERVER},
    "candidate": None,
    "mode": "off",
    "percent": 0.0,
    "scope": None,
    "guardrails": {},
}


async def _gateway() -> Gateway:
    gateway = create_gateway(
        policy_uris=[],
        in_process=InProcessPolicies([(SERVER, ARTIFACTS / "incumbent.json")], seed=1),
        control_token=None,
        insecure_control_plane=True,
    )
    transport = httpx.ASGITransport(app=gateway.control)
    async with httpx.AsyncClient(transport=transport, base_url="http://control") as control:
        (await control.put("/v1/targets/offers/route", json=ROUTE)).raise_for_status()
    return gateway


def _body() -> bytes:
    features = json.loads((ARTIFACTS / "incumbent.json").read_text(encoding="utf-8"))["features"]
    return json.dumps({"unit_id": "u-1", "context": {name: 0.5 for name in features}}).encode()


async def _call(gateway: Gateway, messages: list[Message], length: int) -> list[Message]:
    """Drive the data plane with these `receive` messages; what it sent."""
    sent: list[Message] = []
    pending = list(messages)

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/targets/offers/decide",
        "raw_path": b"/v1/targets/offers/decide",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % length)],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    await gateway.data(scope, receive, send)
    return sent


async def test_a_body_in_pieces_is_read_whole() -> None:
    gateway = await _gateway()
    body = _body()
    pieces = [body[:7], body[7:20], b"", body[20:]]
    messages: list[Message] = [
        {"type": "http.request", "body": piece, "more_body": True} for piece in pieces
    ]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    start, answer = await _call(gateway, messages, len(body))
    assert start["status"] == 200
    # the head a starlette JSON response has: its length, then its type
    assert start["headers"] == [
        (b"content-length", b"%d" % len(answer["body"])),
        (b"content-type", b"application/json"),
    ]
    decision = json.loads(answer["body"])
    assert (decision["arm"], decision["version"], decision["mode"]) == ("incumbent", "41", "off")


async def test_a_client_that_leaves_mid_body_is_a_client_disconnect() -> None:
    gateway = await _gateway()
    body = _body()
    with pytest.raises(ClientDisconnect):  # as starlette's Request.body() raises it
        await _call(gateway, [{"type": "http.request", "body": body[:5], "more_body": True}], 99)


async def test_a_malformed_length_is_a_400_before_anything_is_read() -> None:
    gateway = await _gateway()
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/v1/targets/offers/decide",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-length", b"12"), (b"content-length", b"13")],
    }
    await gateway.data(scope, receive, send)
    assert sent[0]["status"] == 400

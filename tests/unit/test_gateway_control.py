"""The control plane's token (gateway.control): where it is read from, what is too weak, and
the bearer check every control request passes."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.types import Message, Receive, Scope, Send

from gateway.control import BearerGuard, ControlToken, ControlTokenError

TOKEN = "s3cret-token-of-some-length_0123456789"


def test_only_the_exact_token_matches() -> None:
    token = ControlToken.from_secret(TOKEN)
    assert token.matches(TOKEN.encode())
    for guess in (None, b"", TOKEN[:-1].encode(), (TOKEN + "x").encode(), TOKEN.upper().encode()):
        assert not token.matches(guess)


def test_the_token_is_never_shown() -> None:
    token = ControlToken.from_secret(TOKEN)
    assert TOKEN not in repr(token)
    assert TOKEN not in str(token)
    assert not any(TOKEN in str(getattr(token, slot)) for slot in ControlToken.__slots__)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("short", "fewer than 16 characters"),
        ("a" * 15, "fewer than 16 characters"),
        ("with a space in it 0123", "whitespace or control"),
        ("with\ta-tab-0123456789", "whitespace or control"),
        ("x" * 5000, "longer than 4096 bytes"),
    ],
)
def test_a_weak_or_unsendable_token_is_refused(secret: str, message: str) -> None:
    with pytest.raises(ControlTokenError, match=message):
        ControlToken.from_secret(secret)


def test_a_token_file_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    assert ControlToken.from_file(path).matches(TOKEN.encode())


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read the control token file"), (b"", "fewer than 16"), (b"\xff" * 20, "UTF-8")],
)
def test_a_bad_token_file_is_refused_by_its_path(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ControlTokenError, match=message) as refused:
        ControlToken.from_file(path)
    assert str(path) in str(refused.value)


def test_a_token_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TOKEN", TOKEN)
    assert ControlToken.from_env("GW_TOKEN").matches(TOKEN.encode())
    monkeypatch.setenv("GW_TOKEN", "")
    with pytest.raises(ControlTokenError, match="GW_TOKEN is unset or empty"):
        ControlToken.from_env("GW_TOKEN")
    monkeypatch.setenv("GW_TOKEN", "weak")
    with pytest.raises(ControlTokenError, match="GW_TOKEN: the control token has fewer"):
        ControlToken.from_env("GW_TOKEN")


async def _call(guard: BearerGuard, path: str, headers: list[tuple[bytes, bytes]]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        # a refusal only discards the body, after its whole answer has gone out
        assert any(m.get("body") for m in sent), "the answer was sent before any body was read"
        return {"type": "http.request", "body": b"x" * 100, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "PUT", "path": path, "headers": headers}
    await guard(scope, receive, send)
    return sent


class _Reached:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1


@pytest.mark.parametrize(
    ("headers", "passes"),
    [
        ([(b"authorization", b"Bearer " + TOKEN.encode())], True),
        ([(b"authorization", b"bearer  " + TOKEN.encode())], True),
        ([], False),
        ([(b"authorization", TOKEN.encode())], False),
        ([(b"authorization", b"Basic " + TOKEN.encode())], False),
        ([(b"authorization", b"Bearer")], False),
        ([(b"authorization", b"Bearer " + TOKEN.encode())] * 2, False),
        ([(b"x-token", TOKEN.encode())], False),
    ],
)
async def test_the_guard_lets_only_the_bearer_of_the_token_through(
    headers: list[tuple[bytes, bytes]], passes: bool
) -> None:
    app = _Reached()
    sent = await _call(BearerGuard(app, ControlToken.from_secret(TOKEN)), "/metrics", headers)
    assert app.calls == (1 if passes else 0)
    if not passes:
        start, body, end = sent
        assert start["status"] == 401
        assert (b"connection", b"close") in start["headers"]
        assert TOKEN.encode() not in body["body"]
        assert b"Authorization: Bearer <token>" in body["body"]
        assert (end["body"], end["more_body"]) == (b"", False)


async def test_readiness_is_open_and_an_insecure_guard_lets_everything_through() -> None:
    app = _Reached()
    await _call(BearerGuard(app, ControlToken.from_secret(TOKEN)), "/healthz", [])
    await _call(BearerGuard(app, None), "/metrics", [])
    assert app.calls == 2

"""Credentials by reference: the spec names where a secret lives; the worker reads and hides it."""

from __future__ import annotations

import base64
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.credentials import auth_headers, read_secret
from activities.errors import MissingCredential
from activities.redaction import REDACTED, RedactingFilter, forget_all, redact, remember
from rollout_specs import BasicAuth, BearerAuth, HeaderAuth, SecretRef, SpecError, parse_spec
from tests.conftest import spec_document

SECRET = "s3cret-value-of-the-canary"


@pytest.fixture(autouse=True)
def clean_slate() -> Iterator[None]:
    forget_all()
    yield
    forget_all()


@pytest.mark.parametrize("place", ["monitoring", "router"], ids=["monitoring url", "router url"])
def test_a_url_with_credentials_is_refused_without_repeating_them(place: str) -> None:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2")
    document["spec"][place]["url"] = f"http://lockgate:{SECRET}@127.0.0.1:9"

    with pytest.raises(SpecError) as caught:
        parse_spec(document, "spec.yaml")

    message = str(caught.value)
    assert f"spec.{place}.url" in message
    assert "auth" in message, "the error says where credentials go instead"
    assert SECRET not in message


def test_a_webhook_names_its_url_or_where_to_read_it_exactly_once() -> None:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2")
    document["spec"]["notify"] = [{"type": "webhook"}]
    with pytest.raises(
        SpecError, match=r"spec\.notify\[0\]\S*: give the hook.s address as url .* or url_from"
    ):
        parse_spec(document, "spec.yaml")

    document["spec"]["notify"] = [{"type": "webhook", "url_from": {"env": "SLACK_HOOK_URL"}}]
    webhook = parse_spec(document, "spec.yaml").spec.notify[0]
    assert webhook.describe() == "the webhook URL from environment variable SLACK_HOOK_URL"


def test_a_secret_reference_names_exactly_one_place() -> None:
    with pytest.raises(ValueError, match="exactly one place"):
        SecretRef(env="A", file="/run/secrets/a")
    with pytest.raises(ValueError, match="exactly one place"):
        SecretRef()


def test_secrets_are_read_from_the_environment_and_from_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKGATE_TEST_TOKEN", SECRET)
    secret_file = tmp_path / "password"
    secret_file.write_text("file-secret\n", encoding="utf-8")

    assert read_secret(SecretRef(env="LOCKGATE_TEST_TOKEN")) == SECRET
    assert read_secret(SecretRef(file=str(secret_file))) == "file-secret", "newline dropped"
    assert redact(f"token {SECRET} and file-secret") == f"token {REDACTED} and {REDACTED}"


def test_a_missing_secret_names_its_place_never_a_value(tmp_path: Path) -> None:
    with pytest.raises(MissingCredential, match="no environment variable LOCKGATE_UNSET_X"):
        read_secret(SecretRef(env="LOCKGATE_UNSET_X"))
    with pytest.raises(MissingCredential, match="cannot read the secret file"):
        read_secret(SecretRef(file=str(tmp_path / "absent")))


def test_auth_blocks_become_headers_and_every_value_is_hidden_from_then_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("T", SECRET)
    bearer = auth_headers(BearerAuth(type="bearer", token=SecretRef(env="T")))
    basic = auth_headers(BasicAuth(type="basic", username="lockgate", password=SecretRef(env="T")))
    custom = auth_headers(HeaderAuth(type="headers", headers={"X-Api-Key": SecretRef(env="T")}))

    encoded = base64.b64encode(f"lockgate:{SECRET}".encode()).decode()
    assert bearer == {"Authorization": f"Bearer {SECRET}"}
    assert basic == {"Authorization": f"Basic {encoded}"}
    assert custom == {"X-Api-Key": SECRET}
    echoed = f"401: you sent {{'authorization': 'Basic {encoded}'}}"
    assert redact(echoed) == f"401: you sent {{'authorization': '{REDACTED}'}}"
    assert auth_headers(None) == {}


def test_credentials_in_any_url_are_hidden_even_if_never_remembered() -> None:
    text = "cannot reach http://admin:hunter22@10.0.0.1:9090/api (refused)"
    assert redact(text) == f"cannot reach http://{REDACTED}@10.0.0.1:9090/api (refused)"


def test_short_values_are_not_treated_as_secrets() -> None:
    remember("abc")
    assert redact("abc abc") == "abc abc"


def test_the_log_filter_hides_secrets_in_messages_and_tracebacks() -> None:
    remember(SECRET)
    record = logging.LogRecord("lockgate", logging.WARNING, __file__, 1, "sent %s", (SECRET,), None)
    try:
        raise RuntimeError(f"the router said: your token is {SECRET}")
    except RuntimeError:
        record.exc_info = sys.exc_info()

    assert RedactingFilter().filter(record)

    line = logging.Formatter().format(record)
    assert SECRET not in line
    assert "sent [redacted]" in line
    assert "the router said: your token is [redacted]" in line

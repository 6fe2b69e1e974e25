"""Reaching Temporal as an operator configures it: flags, profiles, TLS, namespaces, failures.

Every case runs the real `lockgate` command against a real dev server on 127.0.0.1 (or a TLS
listener, or a closed port, on 127.0.0.1 as well) and reads its exit code and its one line.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from temporalio.client import Client

from runtime.processes import free_port
from tests.e2e.processes import ROOT, worker_process
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.e2e


async def lockgate(
    *args: str, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`lockgate ARGS` with a clean environment: no TEMPORAL_* but those given, own HOME."""
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(home), "COLUMNS": "200", **(env or {})}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "cli.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single `error:` line of a failed command (and that there is no traceback)."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def _address(client: Client) -> str:
    return client.service_client.config.target_host


def _closed_address() -> str:
    return f"127.0.0.1:{free_port()}"


async def test_address_and_namespace_flags_override_the_environment(
    tmp_path: Path, client: Client
) -> None:
    address = _address(client)
    wrong = {"TEMPORAL_ADDRESS": _closed_address(), "TEMPORAL_NAMESPACE": "not-this-one"}

    listed = await lockgate(
        "--address", address, "--namespace", "default", "list", home=tmp_path, env=wrong
    )
    assert listed.returncode == 0, listed.stderr
    assert "rollouts" in listed.stdout

    unknown = await lockgate("--address", address, "--namespace", "ghost", "list", home=tmp_path)
    message = _one_line_error(unknown)
    assert f"namespace 'ghost' does not exist on {address}" in message
    assert "--namespace" in message


async def test_a_profile_file_selected_with_profile_or_temporal_profile(
    tmp_path: Path, client: Client
) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text(
        f'[profile.default]\naddress = "{_closed_address()}"\n\n'
        f'[profile.ci]\naddress = "{_address(client)}"\nnamespace = "default"\n',
        encoding="utf-8",
    )
    env = {"TEMPORAL_CONFIG_FILE": str(config)}

    by_flag = await lockgate("--profile", "ci", "list", home=tmp_path, env=env)
    assert by_flag.returncode == 0, by_flag.stderr
    by_variable = await lockgate("list", home=tmp_path, env={**env, "TEMPORAL_PROFILE": "ci"})
    assert by_variable.returncode == 0, by_variable.stderr

    default = _one_line_error(await lockgate("list", home=tmp_path, env=env))
    assert "cannot reach Temporal" in default
    assert "profile 'default' in" in default, "names where the address came from"
    assert "python worker.py" not in default, "no worker hint for a configured address"

    missing = _one_line_error(await lockgate("--profile", "prod", "list", home=tmp_path, env=env))
    assert f"profile 'prod' is not in {config}" in missing


async def test_a_profile_in_the_default_config_file_is_found(
    tmp_path: Path, client: Client
) -> None:
    config = tmp_path / ".config" / "temporalio" / "temporal.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[profile.default]\naddress = "{_address(client)}"\n', encoding="utf-8")

    listed = await lockgate("list", home=tmp_path)
    assert listed.returncode == 0, listed.stderr


async def test_an_unknown_namespace_is_named_not_taken_for_a_missing_rollout(
    tmp_path: Path, client: Client
) -> None:
    address = _address(client)
    env = {"TEMPORAL_ADDRESS": address, "TEMPORAL_NAMESPACE": "typo-ns"}

    for command in (("list",), ("status", "some-target")):
        message = _one_line_error(await lockgate(*command, home=tmp_path, env=env))
        assert message == (
            f"error: namespace 'typo-ns' does not exist on {address} (TEMPORAL_NAMESPACE)"
        )


@pytest.mark.parametrize(
    ("variable", "key_variable"),
    [
        ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH"),
        ("TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY"),  # lockgate's former names, still honoured
    ],
)
async def test_a_missing_certificate_file_is_one_line_naming_setting_and_path(
    tmp_path: Path, client: Client, variable: str, key_variable: str
) -> None:
    missing = tmp_path / "nowhere" / "client.pem"
    key = tmp_path / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n", encoding="utf-8")
    env = {"TEMPORAL_ADDRESS": _address(client), variable: str(missing), key_variable: str(key)}

    message = _one_line_error(await lockgate("list", home=tmp_path, env=env))
    assert f"cannot read the TLS client certificate {missing}" in message
    assert variable in message
    assert "No such file or directory" in message


@pytest.mark.parametrize(
    "tls_env",
    [{"TEMPORAL_API_KEY": "not-a-real-key"}, {"TEMPORAL_TLS": "true"}],
    ids=["api-key", "tls-true"],
)
async def test_tls_against_the_plaintext_dev_server_says_so(
    tmp_path: Path, client: Client, tls_env: dict[str, str]
) -> None:
    address = _address(client)
    env = {"TEMPORAL_ADDRESS": address, **tls_env}

    message = _one_line_error(await lockgate("list", home=tmp_path, env=env))
    assert f"the server at {address} does not speak TLS" in message
    assert "unset TEMPORAL_API_KEY/TLS settings or check the address" in message
    assert "python worker.py" not in message


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lockgate-test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest_asyncio.fixture
async def tls_listener(tmp_path: Path) -> AsyncIterator[str]:
    """A TLS server on 127.0.0.1 that is not Temporal: it handshakes, then hangs up."""
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"127.0.0.1:{port}"


async def test_plaintext_against_a_tls_server_says_so(tmp_path: Path, tls_listener: str) -> None:
    message = _one_line_error(await lockgate("--address", tls_listener, "list", home=tmp_path))
    assert f"the server at {tls_listener} speaks TLS but lockgate connected in plaintext" in message
    assert "TEMPORAL_TLS=true" in message


async def test_an_untrusted_server_certificate_names_the_ca_setting(
    tmp_path: Path, tls_listener: str
) -> None:
    env = {"TEMPORAL_TLS": "true"}
    message = _one_line_error(
        await lockgate("--address", tls_listener, "list", home=tmp_path, env=env)
    )
    assert f"the server at {tls_listener} presented a certificate lockgate does not trust" in (
        message
    )
    assert "TEMPORAL_TLS_SERVER_CA_CERT_PATH" in message


async def test_no_server_hints_at_the_worker_only_for_the_embedded_default(
    tmp_path: Path,
) -> None:
    port = free_port()
    embedded = _one_line_error(
        await lockgate("list", home=tmp_path, env={"LOCKGATE_TEMPORAL_PORT": str(port)})
    )
    assert f"cannot reach Temporal at 127.0.0.1:{port}" in embedded
    assert "is `python worker.py` running?" in embedded

    address = _closed_address()
    configured = _one_line_error(await lockgate("--address", address, "list", home=tmp_path))
    assert f"cannot reach Temporal at {address}" in configured
    assert "python worker.py" not in configured
    assert "--address" in configured


async def test_a_certificate_for_another_name_names_the_server_name_setting(
    tmp_path: Path, tls_listener: str
) -> None:
    env = {"TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(tmp_path / "server.pem")}
    result = await lockgate(
        "--address",
        tls_listener,
        "--tls-server-name",
        "other.example",
        "list",
        home=tmp_path,
        env=env,
    )
    message = _one_line_error(result)
    assert "is not valid for the name" in message
    assert "--tls-server-name" in message


async def test_the_worker_says_what_is_wrong_in_one_line(tmp_path: Path, client: Client) -> None:
    worker = worker_process(
        tmp_path / "worker.log",
        {
            "HOME": str(tmp_path),
            "TEMPORAL_ADDRESS": _address(client),
            "TEMPORAL_NAMESPACE": "ghost",
            "LOCKGATE_TASK_QUEUE": "connection-namespace",
        },
    )
    worker.start()
    try:
        await wait_until(lambda: not worker.alive, timeout=45, what="the worker to exit")
    finally:
        code = worker.stop()
    output = worker.output()
    assert code == 1, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, output
    assert "lockgate worker cannot start: namespace 'ghost' does not exist on" in errors[0]

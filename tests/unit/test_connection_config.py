"""Resolving the connection: flags over TEMPORAL_* over the profile, aliases, TLS, warnings.

`Settings.connection` is given an explicit environment here, so nothing of the machine running
the tests (its variables, its ~/.config/temporalio) leaks in. Nothing connects anywhere: the
error texts below are the SDK's own, as it reports a failed connect.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import RPCError, RPCStatusCode

from runtime.connection_errors import explain, explain_rpc, short_cause
from runtime.settings import Connection, ConnectionSettingError, Settings, is_loopback


@pytest.fixture(autouse=True)
def _own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK finds the default config file from the process's HOME: make it the test's."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)


def _env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """An environment with a HOME of its own (no default config file) plus `variables`."""
    return {"HOME": str(tmp_path), **variables}


def _profile_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "temporal.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_nothing_configured_means_the_embedded_server_on_lockgates_port(tmp_path: Path) -> None:
    connection = Settings(lockgate_temporal_port=7999).connection(_env(tmp_path))
    assert connection.embedded
    assert connection.address == "127.0.0.1:7999"
    assert connection.namespace == "default"
    assert not connection.tls_enabled


def test_flags_override_variables_which_override_the_profile(tmp_path: Path) -> None:
    config = _profile_file(
        tmp_path,
        '[profile.prod]\naddress = "prod.example:7233"\nnamespace = "prod-ns"\n'
        '[profile.prod.tls]\nserver_name = "from-profile"\n',
    )
    env = _env(tmp_path, TEMPORAL_CONFIG_FILE=config, TEMPORAL_PROFILE="prod")

    from_profile = Settings().connection(env)
    assert (from_profile.address, from_profile.namespace) == ("prod.example:7233", "prod-ns")
    assert not from_profile.embedded
    assert from_profile.tls is not None
    assert from_profile.tls.server_name == "from-profile"
    assert "profile 'prod'" in from_profile.origin("address")

    variables = Settings().connection({**env, "TEMPORAL_NAMESPACE": "env-ns"})
    assert variables.namespace == "env-ns"
    assert variables.origin("namespace") == "TEMPORAL_NAMESPACE"

    flags = Settings(
        temporal_address="flag.example:7233",
        temporal_namespace="flag-ns",
        temporal_tls_server_name="flag-sni",
    ).connection({**env, "TEMPORAL_NAMESPACE": "env-ns"})
    assert (flags.address, flags.namespace) == ("flag.example:7233", "flag-ns")
    assert flags.tls is not None
    assert flags.tls.server_name == "flag-sni"
    assert flags.origin("address") == "--address"


def test_the_profile_flag_beats_temporal_profile(tmp_path: Path) -> None:
    config = _profile_file(
        tmp_path, '[profile.a]\naddress = "a.example:1"\n[profile.b]\naddress = "b.example:2"\n'
    )
    env = _env(tmp_path, TEMPORAL_CONFIG_FILE=config, TEMPORAL_PROFILE="a")
    assert Settings(temporal_profile="b").connection(env).address == "b.example:2"


def test_connection_variables_are_read_by_the_sdk_not_by_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One reader per variable: Settings' own fields stay the explicit overrides."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", "env.example:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "env-ns")
    settings = Settings()
    assert settings.temporal_address is None
    assert settings.temporal_namespace is None


def test_lockgates_former_tls_variables_are_aliases_and_the_sdk_names_win(
    tmp_path: Path,
) -> None:
    env = _env(
        tmp_path,
        TEMPORAL_ADDRESS="127.0.0.1:7233",
        TEMPORAL_TLS_CERT="/old/cert.pem",
        TEMPORAL_TLS_KEY="/old/key.pem",
        TEMPORAL_TLS_CA="/old/ca.pem",
        TEMPORAL_TLS_SERVER_CA_CERT_PATH="/new/ca.pem",
    )
    connection = Settings().connection(env)
    assert connection.tls is not None
    assert connection.tls.client_cert == Path("/old/cert.pem")
    assert connection.tls.client_private_key == Path("/old/key.pem")
    assert connection.tls.server_root_ca_cert == Path("/new/ca.pem")
    assert connection.origin("client_cert").startswith("TEMPORAL_TLS_CERT, deprecated")
    assert connection.origin("server_root_ca_cert") == "TEMPORAL_TLS_SERVER_CA_CERT_PATH"


def test_tls_files_are_read_with_the_setting_named(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    not_pem = tmp_path / "key.der"
    not_pem.write_bytes(b"\x30\x82binary")
    env = _env(tmp_path, TEMPORAL_ADDRESS="127.0.0.1:7233")

    with pytest.raises(ConnectionSettingError, match="mTLS needs both"):
        Settings().connection({**env, "TEMPORAL_TLS_CLIENT_CERT_PATH": str(cert)}).tls_files()

    bad_key = {"TEMPORAL_TLS_CLIENT_CERT_PATH": str(cert), "TEMPORAL_TLS_KEY": str(not_pem)}
    with pytest.raises(ConnectionSettingError) as raised:
        Settings().connection({**env, **bad_key}).tls_files()
    assert f"the TLS client key {not_pem} (TEMPORAL_TLS_KEY" in str(raised.value)
    assert "is not PEM" in str(raised.value)

    config = _profile_file(
        tmp_path, '[profile.default.tls]\nserver_ca_cert_path = "/gone/ca.pem"\n'
    )
    with pytest.raises(ConnectionSettingError) as missing:
        Settings().connection({**env, "TEMPORAL_CONFIG_FILE": config}).tls_files()
    assert "cannot read the TLS server CA certificate /gone/ca.pem" in str(missing.value)
    assert f"tls.server_ca_cert_path of profile 'default' in {config}" in str(missing.value)


def test_a_default_profile_counts_and_dev_null_ignores_it(tmp_path: Path) -> None:
    default = tmp_path / ".config" / "temporalio" / "temporal.toml"
    default.parent.mkdir(parents=True)
    default.write_text('[profile.default]\naddress = "shared.example:7233"\n', encoding="utf-8")

    configured = Settings().connection(_env(tmp_path))
    assert configured.address == "shared.example:7233"
    assert not configured.embedded
    ignored = Settings().connection(_env(tmp_path, TEMPORAL_CONFIG_FILE="/dev/null"))
    assert ignored.embedded


def test_bad_config_files_and_profiles_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConnectionSettingError, match=r"names /no/such\.toml, which does not exist"):
        Settings().connection(_env(tmp_path, TEMPORAL_CONFIG_FILE="/no/such.toml"))
    broken = _profile_file(tmp_path, "[profile.default\naddress =")
    with pytest.raises(ConnectionSettingError) as raised:
        Settings().connection(_env(tmp_path, TEMPORAL_CONFIG_FILE=broken))
    assert "\n" not in str(raised.value)
    assert "TOML parse error" in str(raised.value)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:7233", True),
        ("127.8.9.10:7233", True),
        ("localhost:7233", True),
        ("[::1]:7233", True),
        ("10.0.0.5:7233", False),
        ("temporal.internal:7233", False),
        ("my-ns.a1b2c.tmprl.cloud:7233", False),
        ("[2001:db8::1]:7233", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_a_remote_address_without_tls_is_warned_about(tmp_path: Path) -> None:
    remote = Settings(temporal_address="temporal.internal:7233")
    warning = remote.connection(_env(tmp_path)).plaintext_warning()
    assert warning is not None
    assert "temporal.internal:7233 without TLS" in warning

    for env in ({"TEMPORAL_API_KEY": "k"}, {"TEMPORAL_TLS": "true"}):
        assert remote.connection(_env(tmp_path, **env)).plaintext_warning() is None
    local = Settings(temporal_address="127.0.0.1:7233")
    assert local.connection(_env(tmp_path)).plaintext_warning() is None
    assert Settings().connection(_env(tmp_path)).plaintext_warning() is None
    off = remote.connection(_env(tmp_path, TEMPORAL_API_KEY="k", TEMPORAL_TLS="false"))
    assert off.plaintext_warning() is not None, "TEMPORAL_TLS=false turns TLS off"


TLS_TO_PLAINTEXT = (
    "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
    "ConnectError(Custom { kind: InvalidData, error: InvalidMessage(InvalidContentType) }))"
)
REFUSED = (
    "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
    'ConnectError(ConnectError("tcp connect error", 127.0.0.1:1, Os { code: 111, kind: '
    'ConnectionRefused, message: "Connection refused" })))'
)
UNTRUSTED = (
    "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
    "ConnectError(Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }))"
)


def _connection(**fields: object) -> Connection:
    values: dict[str, object] = {
        "address": "temporal.internal:7233",
        "namespace": "default",
        "embedded": False,
    }
    return Connection(**{**values, **fields})  # type: ignore[arg-type]


async def test_explain_tls_against_plaintext() -> None:
    connection = _connection(api_key="k", origins={"api_key": "TEMPORAL_API_KEY"})
    message = await explain(RuntimeError(TLS_TO_PLAINTEXT), connection)
    assert message == (
        "the server at temporal.internal:7233 does not speak TLS; unset TEMPORAL_API_KEY/TLS "
        "settings or check the address (TLS is on because of TEMPORAL_API_KEY)"
    )


async def test_explain_an_untrusted_certificate() -> None:
    message = await explain(RuntimeError(UNTRUSTED), _connection(api_key="k"))
    assert "presented a certificate lockgate does not trust (UnknownIssuer)" in message
    assert "TEMPORAL_TLS_SERVER_CA_CERT_PATH" in message


async def test_explain_a_refused_port_hints_at_the_worker_only_when_embedded() -> None:
    embedded = await explain(
        RuntimeError(REFUSED), _connection(address="127.0.0.1:7233", embedded=True)
    )
    assert embedded.startswith("cannot reach Temporal at 127.0.0.1:7233 (Connection refused);")
    assert "is `python worker.py` running?" in embedded
    configured = await explain(
        RuntimeError(REFUSED),
        _connection(address="127.0.0.1:7233", origins={"address": "TEMPORAL_ADDRESS"}),
    )
    assert "python worker.py" not in configured
    assert configured.endswith("check the address (TEMPORAL_ADDRESS)")


def test_explain_an_unknown_namespace_and_refused_credentials() -> None:
    connection = _connection(namespace="typo", origins={"namespace": "--namespace"})
    missing = RPCError("Namespace typo is not found.", RPCStatusCode.NOT_FOUND, b"")
    assert explain_rpc(missing, connection) == (
        "namespace 'typo' does not exist on temporal.internal:7233 (--namespace)"
    )
    denied = RPCError("Request unauthorized.", RPCStatusCode.PERMISSION_DENIED, b"")
    assert "refused lockgate's credentials (Request unauthorized.)" in explain_rpc(
        denied, connection
    )


def test_short_cause_keeps_the_readable_core() -> None:
    assert short_cause(REFUSED) == "Connection refused"
    assert short_cause(TLS_TO_PLAINTEXT) == "InvalidData"
    assert len(short_cause("x" * 1000)) == 200

"""Settings from the environment, the way operators configure a long-lived service.

lockgate's own settings (`LOCKGATE_*`) are read here with pydantic. Where Temporal is and how to
reach it is read by the Temporal SDK's environment configuration (`temporalio.envconfig`): the
`TEMPORAL_*` variables and the TOML profiles of the `temporal` CLI's config file, so one profile
serves the `temporal` CLI, lockgate's CLI and the worker alike. `Settings.connection` resolves
it, with command-line flags over variables over the profile.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS, DataSource

from runtime.codec import parse_keys
from workflows import TASK_QUEUE

__all__ = [
    "DEFAULT_ADDRESS",
    "DEPRECATED_ALIASES",
    "Connection",
    "ConnectionSettingError",
    "Settings",
    "config_file_path",
    "is_loopback",
]

DEFAULT_ADDRESS = "127.0.0.1:7233"
"""Where the embedded dev server listens, and where the CLI looks when no address is configured."""

DEPRECATED_ALIASES = {
    "TEMPORAL_TLS_CERT": "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_KEY": "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CA": "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
}
"""lockgate's former TLS variables and the SDK's names they stand for.

Deployments written before lockgate used the SDK's configuration keep working; the SDK's name
wins when both are set.
"""

_CONNECTION_FIELDS = frozenset(
    {"temporal_address", "temporal_namespace", "temporal_profile", "temporal_tls_server_name"}
)


class ConnectionSettingError(RuntimeError):
    """The connection settings cannot be used as given: an unknown profile, a missing file...

    The message names the setting (variable, flag or profile key) and the value, in one line, so
    the CLI and the worker print it alone instead of a traceback. A RuntimeError, like a failed
    connect, so a caller that reports one reports both.
    """


def config_file_path(environ: Mapping[str, str]) -> Path:
    """The TOML file the SDK reads profiles from: TEMPORAL_CONFIG_FILE, else the default one.

    Only for messages and checks: the SDK itself reads the file.
    """
    explicit = environ.get("TEMPORAL_CONFIG_FILE")
    if explicit:
        return Path(explicit)
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "temporalio" / "temporal.toml"


def is_loopback(address: str) -> bool:
    """Whether `host:port` names this machine, where plaintext gRPC leaves no wire to sniff.

    Names other than `localhost` are not resolved: a name that resolves to loopback today may
    not tomorrow, so it counts as remote.
    """
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
    if host.startswith("[") and "]" in host:
        host = host[1 : host.index("]")]
    host = host.strip().lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class _TLSFile:
    """One TLS file setting: which of the profile's sources, and the names an operator knows."""

    attribute: str
    variable: str
    profile_key: str
    what: str


_TLS_FILES = (
    _TLSFile(
        "client_cert", "TEMPORAL_TLS_CLIENT_CERT_PATH", "tls.client_cert_path", "client certificate"
    ),
    _TLSFile(
        "client_private_key", "TEMPORAL_TLS_CLIENT_KEY_PATH", "tls.client_key_path", "client key"
    ),
    _TLSFile(
        "server_root_ca_cert",
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
        "tls.server_ca_cert_path",
        "server CA certificate",
    ),
)


@dataclass(frozen=True)
class Connection:
    """Where Temporal is and how to reach it, resolved from flags, variables and profile.

    `origins` says where each value came from (`--address`, `TEMPORAL_ADDRESS`, `profile 'prod'
    in /path`), so an error can name the setting to change.
    """

    address: str
    namespace: str
    embedded: bool
    """No address configured anywhere: the worker runs its own dev server at `address`."""
    api_key: str | None = field(default=None, repr=False)
    tls: ClientConfigTLS | None = None
    rpc_metadata: Mapping[str, str] = field(default_factory=dict, repr=False)
    profile: str | None = None
    origins: Mapping[str, str] = field(default_factory=dict)

    @property
    def tls_enabled(self) -> bool:
        """Whether the connection uses TLS: an API key or any TLS setting turns it on.

        The same rule as the SDK's `to_client_connect_config`; `TEMPORAL_TLS=false` (or
        `tls.disabled = true`) turns it off.
        """
        if self.tls is not None and self.tls.disabled is not None:
            return not self.tls.disabled
        return self.tls is not None or self.api_key is not None

    def origin(self, name: str) -> str:
        """Where the setting `name` (address, namespace, api_key, tls, ...) came from."""
        return self.origins.get(name, "the default")

    def plaintext_warning(self) -> str | None:
        """A warning when a remote address is reached without TLS, else None.

        Plaintext gRPC carries every spec, status and command readable (and forgeable) on the
        wire; that is fine on loopback and rarely meant anywhere else.
        """
        if self.tls_enabled or is_loopback(self.address):
            return None
        return (
            f"connecting to {self.address} without TLS: specs, states and commands cross the "
            "network in clear; set TEMPORAL_API_KEY or the TEMPORAL_TLS_* settings "
            "(TEMPORAL_TLS=true for server-only TLS) unless this network is trusted"
        )

    def tls_files(self) -> dict[str, bytes | None]:
        """The TLS sources' bytes by attribute, read now so a bad file is named, not traced.

        Raises ConnectionSettingError naming the setting and the path for a file that is
        missing, unreadable or not PEM, and for a client certificate without its key.
        """
        contents: dict[str, bytes | None] = {}
        if self.tls is None or self.tls.disabled:
            return contents
        for spec in _TLS_FILES:
            source: DataSource | None = getattr(self.tls, spec.attribute)
            contents[spec.attribute] = self._read(spec, source)
        has_cert = contents["client_cert"] is not None
        if has_cert != (contents["client_private_key"] is not None):
            present, missing = _TLS_FILES[0:2] if has_cert else _TLS_FILES[1::-1]
            raise ConnectionSettingError(
                f"the TLS {present.what} is set ({self.origin(present.attribute)}) but not the "
                f"{missing.what} ({missing.variable}): mTLS needs both"
            )
        return contents

    def _read(self, spec: _TLSFile, source: DataSource | None) -> bytes | None:
        if source is None:
            return None
        if isinstance(source, str):
            data = source.encode()
        elif isinstance(source, bytes):
            data = source
        else:
            try:
                data = source.read_bytes()
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise ConnectionSettingError(
                    f"cannot read the TLS {spec.what} {source} ({self.origin(spec.attribute)}): "
                    f"{reason}"
                ) from None
        if b"-----BEGIN " not in data:
            where = f"{source} " if isinstance(source, Path) else ""
            raise ConnectionSettingError(
                f"the TLS {spec.what} {where}({self.origin(spec.attribute)}) is not PEM: "
                "expected a '-----BEGIN ...' block"
            )
        return data


def _apply_aliases(env: dict[str, str]) -> dict[str, str]:
    """Map lockgate's former TLS variables onto the SDK's names in `env`; say which were used."""
    origins: dict[str, str] = {}
    for old, new in DEPRECATED_ALIASES.items():
        if env.get(old) and not env.get(new):
            env[new] = env[old]
            origins[new] = f"{old}, deprecated: use {new}"
    return origins


def _load_profile(
    env: Mapping[str, str], profile_name: str | None, config_file: Path
) -> ClientConfigProfile:
    """The SDK's profile with the variables applied, or a one-line ConnectionSettingError."""
    # A typo here would silently drop the profile (and connect elsewhere); /dev/null is the
    # deliberate way to ignore every profile.
    if env.get("TEMPORAL_CONFIG_FILE") and not config_file.exists():
        raise ConnectionSettingError(
            f"TEMPORAL_CONFIG_FILE names {config_file}, which does not exist"
        )
    try:
        return ClientConfigProfile.load(profile=profile_name, override_env_vars=env)
    except RuntimeError as exc:  # temporalio's ConfigError
        reason = " ".join(str(exc).split())
        if profile_name and "not found" in reason:
            exists = "" if config_file.is_file() else ", which does not exist"
            reason = f"profile {profile_name!r} is not in {config_file}{exists}"
        raise ConnectionSettingError(f"cannot load the Temporal settings: {reason}") from None


class _EnvWithoutConnection(EnvSettingsSource):
    """The environment minus Temporal's connection variables, which the SDK reads itself.

    One reader per variable: the SDK applies TEMPORAL_ADDRESS over the profile, and a second
    reading here could only disagree with it.
    """

    def __call__(self) -> dict[str, Any]:
        return {
            name: value
            for name, value in super().__call__().items()
            if name not in _CONNECTION_FIELDS
        }


class Settings(BaseSettings):
    """Everything the worker and the CLI read from the environment.

    With no Temporal address configured (no TEMPORAL_ADDRESS, no address in the selected
    profile, no `--address`) the worker runs an embedded Temporal dev server and the CLI looks
    for it on 127.0.0.1:LOCKGATE_TEMPORAL_PORT. The `temporal_*` fields are not read from the
    environment (the SDK's envconfig reads TEMPORAL_*): they are explicit overrides, set by the
    CLI's global flags or by code (`Settings(temporal_address=...)`).
    """

    # hide_input_in_errors: a malformed LOCKGATE_CODEC_KEYS must not print its keys in the error.
    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, hide_input_in_errors=True
    )

    temporal_address: str | None = None
    """host:port of the Temporal frontend, over TEMPORAL_ADDRESS and the profile (`--address`)."""
    temporal_namespace: str | None = None
    """Namespace, over TEMPORAL_NAMESPACE and the profile (`--namespace`)."""
    temporal_profile: str | None = None
    """Profile of the config file to use, over TEMPORAL_PROFILE (`--profile`)."""
    temporal_tls_server_name: str | None = None
    """TLS server name (SNI), over TEMPORAL_TLS_SERVER_NAME (`--tls-server-name`)."""
    lockgate_task_queue: str = TASK_QUEUE
    lockgate_data_dir: Path = Path(".lockgate")
    """Where the embedded server keeps its SQLite file and log."""
    lockgate_temporal_port: int = 7233
    """gRPC port of the embedded server."""
    lockgate_ui_port: int = 8233
    """Web UI port of the embedded server."""
    lockgate_metrics_address: str = "127.0.0.1:9464"
    """Where the worker serves its SDK metrics for Prometheus; empty to disable."""
    lockgate_codec_keys: SecretStr | None = None
    """`id:base64key,...`: encrypt payloads with the first key, decrypt with any (runtime/codec.py).
    Unset or empty: payloads are stored in clear, as before."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read the environment without the connection variables (see _EnvWithoutConnection)."""
        return (
            init_settings,
            _EnvWithoutConnection(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    @field_validator("lockgate_codec_keys")
    @classmethod
    def _valid_codec_keys(cls, value: SecretStr | None) -> SecretStr | None:
        """Refuse bad key material when the settings load, i.e. at start, not at first use."""
        if value is None or not value.get_secret_value().strip():
            return None
        parse_keys(value.get_secret_value())
        return value

    def connection(self, environ: Mapping[str, str] | None = None) -> Connection:
        """Resolve where and how to connect: these overrides, then TEMPORAL_*, then the profile.

        `environ` defaults to the process's environment. Raises ConnectionSettingError for an
        unknown profile, an unreadable or invalid config file.
        """
        env = dict(os.environ if environ is None else environ)
        origins = _apply_aliases(env)
        config_file = config_file_path(env)
        profile_name = self.temporal_profile or env.get("TEMPORAL_PROFILE") or None
        loaded = _load_profile(env, profile_name, config_file)
        profile_origin = f"profile {profile_name or 'default'!r} in {config_file}"

        def origin(variable: str, flag: str | None = None) -> str:
            if flag is not None:
                return flag
            return origins.get(variable) or (variable if env.get(variable) else profile_origin)

        tls = loaded.tls
        if self.temporal_tls_server_name:
            tls = dataclasses.replace(
                tls or ClientConfigTLS(), server_name=self.temporal_tls_server_name
            )
        address = self.temporal_address or loaded.address
        resolved = {
            "address": origin("TEMPORAL_ADDRESS", "--address" if self.temporal_address else None)
            if address
            else f"the embedded server (LOCKGATE_TEMPORAL_PORT={self.lockgate_temporal_port})",
        }
        if self.temporal_namespace or loaded.namespace:
            resolved["namespace"] = origin(
                "TEMPORAL_NAMESPACE", "--namespace" if self.temporal_namespace else None
            )
        if loaded.api_key:
            resolved["api_key"] = origin("TEMPORAL_API_KEY")
        for spec in _TLS_FILES:
            if tls is not None and getattr(tls, spec.attribute) is not None:
                data_variable = spec.variable.removesuffix("_PATH") + "_DATA"
                variable = data_variable if env.get(data_variable) else spec.variable
                resolved[spec.attribute] = origin(variable).replace(
                    profile_origin, f"{spec.profile_key} of {profile_origin}"
                )
        return Connection(
            address=address or f"127.0.0.1:{self.lockgate_temporal_port}",
            namespace=self.temporal_namespace or loaded.namespace or "default",
            embedded=address is None,
            api_key=loaded.api_key or None,
            tls=tls,
            rpc_metadata=dict(loaded.grpc_meta),
            profile=profile_name,
            origins=resolved,
        )

    @property
    def address(self) -> str:
        """The frontend to connect to: the configured one, or the embedded server's."""
        return self.connection().address

    @property
    def embedded(self) -> bool:
        """Whether the worker must start its own dev server (no address configured anywhere)."""
        return self.connection().embedded

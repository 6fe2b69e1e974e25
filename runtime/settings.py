"""Settings from the environment, the way operators configure a long-lived service."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.codec import parse_keys
from workflows import TASK_QUEUE

__all__ = ["DEFAULT_ADDRESS", "Settings"]

DEFAULT_ADDRESS = "127.0.0.1:7233"
"""Where the embedded dev server listens, and where the CLI looks when TEMPORAL_ADDRESS is unset."""


class Settings(BaseSettings):
    """Everything the worker and the CLI read from the environment.

    With TEMPORAL_ADDRESS unset the worker runs an embedded Temporal dev server; set it to use a
    self-hosted cluster or Temporal Cloud (with TEMPORAL_API_KEY or the TLS paths).
    """

    # hide_input_in_errors: a malformed LOCKGATE_CODEC_KEYS must not print its keys in the error.
    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, hide_input_in_errors=True
    )

    temporal_address: str | None = None
    """host:port of the Temporal frontend. Unset: the worker embeds a dev server."""
    temporal_namespace: str = "default"
    temporal_api_key: SecretStr | None = None
    """API key (Temporal Cloud); implies TLS."""
    temporal_tls_cert: Path | None = None
    """Client certificate (PEM) for mTLS."""
    temporal_tls_key: Path | None = None
    """Client private key (PEM) for mTLS."""
    temporal_tls_ca: Path | None = None
    """CA bundle (PEM) that signed the server's certificate."""
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

    @field_validator("lockgate_codec_keys")
    @classmethod
    def _valid_codec_keys(cls, value: SecretStr | None) -> SecretStr | None:
        """Refuse bad key material when the settings load, i.e. at start, not at first use."""
        if value is None or not value.get_secret_value().strip():
            return None
        parse_keys(value.get_secret_value())
        return value

    @property
    def address(self) -> str:
        """The frontend to connect to: the configured one, or the embedded server's."""
        return self.temporal_address or f"127.0.0.1:{self.lockgate_temporal_port}"

    @property
    def embedded(self) -> bool:
        """Whether the worker must start its own dev server."""
        return self.temporal_address is None

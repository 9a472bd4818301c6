"""Settings base: every service reads a validated schema of its environment, once, at start-up."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from ooda.bus import KafkaConnection

# Markers of the values shipped in examples (deploy/compose/.env.example) and of placeholders:
# a secret containing one is public, so anyone could sign tokens with it.
PLACEHOLDER_MARKERS = (
    "dev-only",
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "placeholder",
)


def shared(name: str) -> Any:
    """A field read from a platform-wide variable (not prefixed by the service)."""
    return AliasChoices(name)


class ServiceSettings(BaseSettings):
    """What every service needs; subclasses set `env_prefix` (e.g. `CMDB_`) and their port."""

    model_config = SettingsConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True)

    service_name: str = "ooda"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    database_url: str = Field(
        ..., description="SQLAlchemy URL of the service's own database (postgresql+asyncpg://...)"
    )
    kafka_bootstrap: str = Field("127.0.0.1:9092", validation_alias=shared("OODA_KAFKA_BOOTSTRAP"))
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = Field(
        "PLAINTEXT", validation_alias=shared("OODA_KAFKA_SECURITY_PROTOCOL")
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = Field(
        "SCRAM-SHA-512", validation_alias=shared("OODA_KAFKA_SASL_MECHANISM")
    )
    kafka_username: str | None = Field(
        None,
        validation_alias=shared("OODA_KAFKA_USERNAME"),
        description="this service's own Kafka principal (SASL)",
    )
    kafka_password: SecretStr | None = Field(None, validation_alias=shared("OODA_KAFKA_PASSWORD"))
    kafka_ssl_cafile: str | None = Field(None, validation_alias=shared("OODA_KAFKA_SSL_CAFILE"))
    auth_secret: SecretStr | None = Field(
        None,
        min_length=32,
        validation_alias=shared("OODA_AUTH_SECRET"),
        description="verifies bearer tokens; only services with token-protected routes get it",
    )
    auth_max_ttl_seconds: int = Field(
        24 * 3600,
        ge=60,
        validation_alias=shared("OODA_AUTH_MAX_TTL_SECONDS"),
        description="tokens whose lifetime (exp - iat) is longer are refused",
    )
    auth_leeway_seconds: float = Field(
        30.0,
        ge=0,
        le=300,
        validation_alias=shared("OODA_AUTH_LEEWAY_SECONDS"),
        description="clock skew allowed on a token's iat, nbf and exp",
    )
    auth_revocations: Path | None = Field(
        None,
        validation_alias=shared("OODA_AUTH_REVOCATIONS"),
        description="file of revoked token ids and subjects (`ooda-token revoke`)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=shared("OODA_LOG_LEVEL")
    )
    trace_exporter: Literal["none", "console"] = Field(
        "none", validation_alias=shared("OODA_TRACE_EXPORTER")
    )
    topic_prefix: str = Field(
        "",
        validation_alias=shared("OODA_TOPIC_PREFIX"),
        description="prefix of every topic and consumer group (isolated test or staging runs)",
    )
    outbox_poll_seconds: float = Field(1.0, gt=0)
    max_body_bytes: int = Field(
        1024 * 1024,
        gt=0,
        description="largest request body a route accepts unless it sets its own limit (413)",
    )
    consumer_max_attempts: int = Field(4, ge=1)

    @field_validator("auth_secret")
    @classmethod
    def _not_a_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        text = value.get_secret_value().lower()
        if any(marker in text for marker in PLACEHOLDER_MARKERS):
            raise ValueError(
                "is an example or placeholder value; set a random secret of at least 32 "
                "characters (e.g. `openssl rand -base64 48`)"
            )
        return value

    verifies_tokens: ClassVar[bool] = True
    """Whether the service has routes that need a bearer token (and so needs the secret)."""

    @model_validator(mode="after")
    def _complete(self) -> ServiceSettings:
        if self.verifies_tokens and self.auth_secret is None:
            raise ValueError("OODA_AUTH_SECRET is required: this service verifies bearer tokens")
        self.kafka()  # SASL without a username or password stops the service here
        return self

    def kafka(self) -> KafkaConnection:
        """How this service reaches and authenticates to Kafka (its own principal)."""
        return KafkaConnection(
            self.kafka_bootstrap,
            self.kafka_security_protocol,
            self.kafka_sasl_mechanism,
            self.kafka_username,
            self.kafka_password,
            self.kafka_ssl_cafile,
        )

    def token_secret(self) -> str:
        """The secret bearer tokens are signed with."""
        if self.auth_secret is None:
            raise RuntimeError("OODA_AUTH_SECRET is not set for this service")
        return self.auth_secret.get_secret_value()


S = TypeVar("S", bound=ServiceSettings)


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable that sets `field` of settings class `cls`."""
    info = cls.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        first = info.validation_alias.choices[0]
        if isinstance(first, str):
            return first
    prefix = cls.model_config.get("env_prefix", "") or ""
    return f"{prefix}{field}".upper()


def load_settings(cls: type[S]) -> S:
    """Build settings from the environment or stop the process naming each bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            lines.append(f"  {env_name(cls, field)}: {err['msg']}")
        print(f"configuration error in {cls.__module__}:\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None

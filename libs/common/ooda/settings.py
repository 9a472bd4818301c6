"""Settings base: every service reads a validated schema of its environment, once, at start-up."""

from __future__ import annotations

import sys
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    auth_secret: SecretStr = Field(..., min_length=32, validation_alias=shared("OODA_AUTH_SECRET"))
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

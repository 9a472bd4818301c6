"""Settings of the elastic service, read from `ELASTIC_*` and `OODA_*` environment variables."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ooda.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment of the elastic service."""

    model_config = SettingsConfigDict(env_prefix="ELASTIC_", extra="ignore")

    service_name: str = "elastic"
    port: int = 8004
    cmdb_url: str = Field(
        "http://127.0.0.1:8001", description="base URL of the CMDB's HTTP API (specs, hosts)"
    )
    cmdb_timeout_seconds: float = Field(5.0, gt=0)

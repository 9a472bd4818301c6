"""Settings of the elastic service, read from `ELASTIC_*` and `OODA_*` environment variables."""

from pydantic_settings import SettingsConfigDict

from ooda.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment of the elastic service."""

    model_config = SettingsConfigDict(env_prefix="ELASTIC_", extra="ignore")

    service_name: str = "elastic"
    port: int = 8004

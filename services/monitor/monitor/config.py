"""Settings of the monitor service, read from `MONITOR_*` and `OODA_*` environment variables."""

from pydantic_settings import SettingsConfigDict

from ooda.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment of the monitor service."""

    model_config = SettingsConfigDict(env_prefix="MONITOR_", extra="ignore")

    service_name: str = "monitor"
    port: int = 8003

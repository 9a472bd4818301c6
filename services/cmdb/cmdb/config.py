"""Settings of the cmdb service, read from `CMDB_*` and `OODA_*` environment variables."""

from pydantic_settings import SettingsConfigDict

from ooda.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment of the cmdb service."""

    model_config = SettingsConfigDict(env_prefix="CMDB_", extra="ignore")

    service_name: str = "cmdb"
    port: int = 8001

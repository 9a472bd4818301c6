"""Settings of the cmdb service, read from `CMDB_*` and `OODA_*` environment variables."""

from ooda.settings import ServiceSettings
from pydantic_settings import SettingsConfigDict


class Settings(ServiceSettings):
    """Environment of the cmdb service."""

    model_config = SettingsConfigDict(env_prefix="CMDB_", extra="ignore")

    service_name: str = "cmdb"
    port: int = 8001

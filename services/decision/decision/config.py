"""Settings of the decision service, read from `DECISION_*` and `OODA_*` environment variables."""

from ooda.settings import ServiceSettings
from pydantic_settings import SettingsConfigDict


class Settings(ServiceSettings):
    """Environment of the decision service."""

    model_config = SettingsConfigDict(env_prefix="DECISION_", extra="ignore")

    service_name: str = "decision"
    port: int = 8005

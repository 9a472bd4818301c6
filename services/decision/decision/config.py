"""Settings of the decision service, read from `DECISION_*` and `OODA_*` environment variables."""

from pydantic_settings import SettingsConfigDict

from ooda.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment of the decision service."""

    model_config = SettingsConfigDict(env_prefix="DECISION_", extra="ignore")

    service_name: str = "decision"
    port: int = 8005

"""Settings of the pipeline service, read from `PIPELINE_*` and `OODA_*` environment variables."""

from pydantic_settings import SettingsConfigDict

from ooda.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment of the pipeline service."""

    model_config = SettingsConfigDict(env_prefix="PIPELINE_", extra="ignore")

    service_name: str = "pipeline"
    port: int = 8002

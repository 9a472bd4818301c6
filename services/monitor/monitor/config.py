"""Settings of the monitor service, read from `MONITOR_*` and `OODA_*` environment variables."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ooda.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment of the monitor service."""

    model_config = SettingsConfigDict(env_prefix="MONITOR_", extra="ignore")

    service_name: str = "monitor"
    port: int = 8003
    cmdb_url: str = Field("http://127.0.0.1:8001", description="base URL of the CMDB (its SD)")
    scrape_interval_seconds: float = Field(5.0, gt=0, description="scrape and aggregate period")
    scrape_timeout_seconds: float | None = Field(
        None, gt=0, description="per-target timeout; default 80% of the interval"
    )
    scrape_max_bytes: int = Field(4 * 1024 * 1024, gt=0, description="largest body accepted")
    scrape_concurrency: int = Field(128, ge=1, description="targets fetched at once")
    scrape_pools: int = Field(16, ge=1, description="HTTP clients targets are spread over")
    series_limit: int = Field(5_000, ge=1, description="series kept per target; the rest dropped")
    sd_refresh_seconds: float | None = Field(
        None, gt=0, description="SD refresh period; default every round (and on cmdb-changed)"
    )
    retention_every_seconds: float = Field(60.0, gt=0, description="downsampling job period")
    owner_cache_seconds: float = Field(
        5.0, ge=0, description="how long an application's owner team read from the CMDB is kept"
    )
    cpu_request_cores: float = Field(1.0, gt=0, description="cores each instance is granted")

    @property
    def scrape_timeout(self) -> float:
        """The per-target timeout in seconds."""
        return self.scrape_timeout_seconds or self.scrape_interval_seconds * 0.8

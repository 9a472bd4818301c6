"""Settings of the decision service, read from `DECISION_*` and `OODA_*` environment variables."""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ooda.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment of the decision service."""

    model_config = SettingsConfigDict(env_prefix="DECISION_", extra="ignore")

    service_name: str = "decision"
    verifies_tokens: ClassVar[bool] = False  # read-only HTTP API: it is not given the secret
    port: int = 8005
    cmdb_url: str = Field("http://127.0.0.1:8001", description="where application specs are read")
    default_policy: str = Field("predictive", description="policy when a spec names none")
    prior_capacity_rps: float = Field(
        50.0, gt=0, description="requests/s one instance serves, before anything is learned"
    )
    default_delay_s: float = Field(
        60.0, gt=0, description="provisioning delay assumed until deploy-done timings teach it"
    )
    fresh_windows: int = Field(
        3, ge=1, description="an observation older than this many windows is history: no decision"
    )

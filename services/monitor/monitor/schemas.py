"""Request and response models of the monitor's HTTP API."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ooda.events.contracts import MetricValues


class ObservationIn(BaseModel):
    """One application's aggregates over one window, pushed by an agent that aggregates itself."""

    model_config = ConfigDict(extra="forbid")

    window_start: datetime
    window_end: datetime
    values: MetricValues
    instance_count: int = Field(ge=0)

    @model_validator(mode="after")
    def window_is_ordered(self) -> "ObservationIn":
        if self.window_start.tzinfo is None or self.window_end.tzinfo is None:
            raise ValueError("window_start and window_end need a timezone (e.g. 'Z')")
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self


class ObservationOut(BaseModel):
    """A recorded observation and the event that announced it."""

    app: str
    window_start: datetime
    window_end: datetime
    values: MetricValues
    instance_count: int
    event_id: str
    recorded_by: str
    created: bool = Field(description="false when this window was already recorded")

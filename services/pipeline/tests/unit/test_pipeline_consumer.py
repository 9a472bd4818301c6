"""Which `change-requested` records the pipeline's consumer turns into changes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ooda.consumer import PermanentError
from ooda.events import Event, spec_for_payload
from ooda.events.contracts import ChangeRequested, ChangeTarget
from pipeline.consumer import subscriptions_for

pytestmark = pytest.mark.unit


def handler() -> Any:
    (subscription,) = subscriptions_for(34, lambda: None)(SimpleNamespace(outbox=None))  # type: ignore[arg-type]
    return subscription.handlers[spec_for_payload(ChangeRequested).type]


async def test_an_emergency_on_the_bus_is_dead_lettered_before_anything_is_written() -> None:
    forged = ChangeRequested(
        app="shop",
        request_id="cmdb/shop/spec-9/deploy",
        kind="scale",
        target=ChangeTarget(replicas=9),
        requested_by="mallory",
        emergency=True,
    )
    # No session: the record is refused before the handler touches the database.
    with pytest.raises(PermanentError, match="emergency"):
        await handler()(None, Event.new(forged, source="/ooda/cmdb"))

"""The simulated driver: the Driver protocol with instant effects, for scale benchmarks only."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.driver import Driver, InstanceSpec
from pipeline.simulated import SimulatedDriver

pytestmark = pytest.mark.unit

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def spec(instance_id: str) -> InstanceSpec:
    return InstanceSpec(
        id=instance_id, app="shop", version="v1", host="h1", zone="z1", artifact=Path("/none")
    )


def test_instances_start_once_answer_ready_and_stop_without_any_process() -> None:
    with SimulatedDriver() as driver:
        as_protocol: Driver = driver
        first = as_protocol.start(spec("shop-1"))
        assert as_protocol.start(spec("shop-1")) == first  # idempotent by id
        assert as_protocol.alive("shop-1") and not as_protocol.alive("shop-2")
        assert [r.id for r in as_protocol.running()] == ["shop-1"]
        with DIRECT.open(first.endpoint + "/readyz", timeout=5) as response:
            assert response.status == 200
        as_protocol.stop("shop-1")
        as_protocol.stop("shop-1")  # stopping a stopped instance does nothing
        assert not as_protocol.alive("shop-1") and as_protocol.running() == []
        assert "shop-1" in as_protocol.describe_exit("shop-1")


def test_the_fixed_delay_is_spent_on_start_and_stop_but_not_on_an_adopted_instance() -> None:
    with SimulatedDriver(delay_s=0.05) as driver:
        t0 = time.perf_counter()
        driver.start(spec("shop-1"))
        t1 = time.perf_counter()
        driver.start(spec("shop-1"))
        t2 = time.perf_counter()
        driver.stop("shop-1")
        t3 = time.perf_counter()
    assert t1 - t0 >= 0.05 and t3 - t2 >= 0.05
    assert t2 - t1 < 0.05

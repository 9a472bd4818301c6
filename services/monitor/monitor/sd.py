"""Where scrape targets come from: the CMDB's Prometheus HTTP SD endpoint, behind a Protocol."""

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import httpx

from monitor.domain import Target

SD_PATH = "/v1/sd/prometheus"
log = logging.getLogger(__name__)

HOSTS_PATH = "/v1/hosts"
_MAX_HOST_PAGES = 1000


class ServiceDiscoveryError(Exception):
    """The discovery endpoint could not be read or answered something unusable."""


class TargetSource(Protocol):
    """Anything that lists the instances to scrape right now.

    A source may also have `async known_hosts() -> set[str] | None`, the addresses of the hosts
    it knows: announced targets on any other host are then listed but never fetched."""

    async def targets(self) -> list[Target]:
        """Every target currently registered (ready instances only)."""
        ...


def targets_from_sd(groups: Any) -> list[Target]:
    """Targets from a Prometheus HTTP SD document: `[{"targets": [...], "labels": {...}}]`."""
    if not isinstance(groups, list):
        raise ServiceDiscoveryError("service discovery answer is not a list of target groups")
    found: dict[str, Target] = {}
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("targets"), list):
            raise ServiceDiscoveryError(f"malformed target group: {group!r:.200}")
        labels = group.get("labels") or {}
        app = labels.get("app")
        if not app:
            continue  # a target without an application cannot be aggregated
        scheme = labels.get("__scheme__", "http")
        path = labels.get("__metrics_path__", "/metrics")
        addresses: Sequence[str] = group["targets"]
        # The group's other labels (zone, host, version...) are shown with the target.
        shown = tuple(
            sorted(
                (str(k), str(v))
                for k, v in labels.items()
                if k not in ("app", "instance") and not str(k).startswith("__")
            )
        )
        for address in addresses:
            instance = labels.get("instance") if len(addresses) == 1 else None
            instance_id = str(instance or address)
            found[instance_id] = Target(
                app_id=str(app),
                instance_id=instance_id,
                url=f"{scheme}://{address}{path}",
                labels=shown,
            )
    return sorted(found.values(), key=lambda t: t.instance_id)


class HttpServiceDiscovery:
    """Reads `GET {base_url}/v1/sd/prometheus`, the CMDB's Prometheus HTTP SD endpoint."""

    def __init__(self, base_url: str, client: httpx.AsyncClient, timeout_s: float = 5.0) -> None:
        self.url = base_url.rstrip("/") + SD_PATH
        self.hosts_url = base_url.rstrip("/") + HOSTS_PATH
        self.client = client
        self.timeout_s = timeout_s
        self.hosts: set[str] = set()

    async def targets(self) -> list[Target]:
        """Every ready instance the CMDB lists."""
        try:
            response = await self.client.get(self.url, timeout=self.timeout_s)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ServiceDiscoveryError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        return targets_from_sd(document)

    async def known_hosts(self) -> set[str] | None:
        """The address of every host in the CMDB (`GET /v1/hosts`, every page); the last set
        read when the CMDB does not answer (empty until it first does)."""
        found: set[str] = set()
        cursor: str | None = None
        try:
            for _ in range(_MAX_HOST_PAGES):
                params = {"limit": "1000"} | ({"cursor": cursor} if cursor else {})
                response = await self.client.get(
                    self.hosts_url, params=params, timeout=self.timeout_s
                )
                response.raise_for_status()
                page = response.json()
                found.update(
                    str(item["address"]).lower()
                    for item in page.get("items", [])
                    if isinstance(item, dict) and item.get("address")
                )
                cursor = page.get("next")
                if not cursor:
                    break
        except (httpx.HTTPError, ValueError, AttributeError, TypeError) as exc:
            log.warning("reading the CMDB's hosts failed, keeping the last set: %s", exc)
            return self.hosts
        self.hosts = found
        return found

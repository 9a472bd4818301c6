"""Fetching every target's exposition concurrently, each bounded in time and size."""

import asyncio
import logging
import time
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx

from monitor.domain import ScrapeResult, Target, record_scrape, scrape_failed

log = logging.getLogger(__name__)

ACCEPT = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"


class BodyTooLarge(Exception):
    """A target answered more bytes than the scraper accepts."""


class Scraper:
    """Scrapes targets through shared HTTP clients; a slow or broken target only fails itself."""

    def __init__(
        self,
        clients: httpx.AsyncClient | Sequence[httpx.AsyncClient],
        timeout_s: float,
        max_bytes: int,
        series_limit: int,
        concurrency: int,
    ) -> None:
        # Each target always goes through the same client (by its host and port), so its
        # connection is kept alive between rounds; several clients keep each connection pool
        # small, as a pool's bookkeeping grows with the square of its connections.
        self.clients = [clients] if isinstance(clients, httpx.AsyncClient) else list(clients)
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.series_limit = series_limit
        self.gate = asyncio.Semaphore(concurrency)

    async def scrape_all(self, targets: Sequence[Target]) -> list[ScrapeResult]:
        """One round: every target scraped at once (up to the concurrency limit)."""
        return list(await asyncio.gather(*(self.scrape(t) for t in targets)))

    async def scrape(self, target: Target) -> ScrapeResult:
        """Fetch and parse one target; never raises."""
        if target.refused is not None:
            return scrape_failed(target, datetime.now(UTC), 0.0, target.refused)
        async with self.gate:
            started_at = datetime.now(UTC)
            began = time.perf_counter()
            try:
                async with asyncio.timeout(self.timeout_s):
                    body = await self._fetch(self._client_for(target.url), target.url)
            except TimeoutError:
                error = f"timed out after {self.timeout_s:g}s"
                return scrape_failed(target, started_at, time.perf_counter() - began, error)
            except BodyTooLarge:
                error = f"response larger than {self.max_bytes} bytes"
                return scrape_failed(target, started_at, time.perf_counter() - began, error)
            except httpx.HTTPStatusError as exc:
                error = f"HTTP {exc.response.status_code} from {target.url}"
                return scrape_failed(target, started_at, time.perf_counter() - began, error)
            except (httpx.HTTPError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                return scrape_failed(target, started_at, time.perf_counter() - began, error)
            except Exception as exc:
                # Whatever else one target provokes (a URL that does not parse, a client bug)
                # fails that target alone; the round goes on with the others.
                log.warning("scraping %s failed", target.instance_id, exc_info=True)
                error = f"scrape failed: {type(exc).__name__}: {exc}"
                return scrape_failed(target, started_at, time.perf_counter() - began, error)
            fetched = time.perf_counter() - began
        # Parsing happens outside the gate so a parse never holds a fetch slot.
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return scrape_failed(target, started_at, fetched, f"body is not UTF-8 (at {exc.start})")
        # The samples were taken somewhere between sending and receiving: the midpoint is the
        # best estimate, and keeps rates exact when one fetch waits longer than the previous.
        sampled_at = started_at + timedelta(seconds=fetched / 2)
        try:
            return record_scrape(target, sampled_at, fetched, text, self.series_limit)
        except Exception as exc:
            log.warning("parsing the scrape of %s failed", target.instance_id, exc_info=True)
            return scrape_failed(target, started_at, fetched, f"parse failed: {type(exc).__name__}")

    def _client_for(self, url: str) -> httpx.AsyncClient:
        origin = urlsplit(url).netloc
        return self.clients[zlib.crc32(origin.encode()) % len(self.clients)]

    async def _fetch(self, client: httpx.AsyncClient, url: str) -> bytes:
        async with client.stream("GET", url, headers={"Accept": ACCEPT}) as response:
            response.raise_for_status()
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise BodyTooLarge
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise BodyTooLarge
                chunks.append(chunk)
            return b"".join(chunks)

"""Turning one target's exposition into capped samples, and the record of each scrape."""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
"""A series: metric name and its labels sorted by name."""

DEFAULT_SERIES_LIMIT = 5_000
_SHOWN_LINE_CHARS = 200
# The prometheus-client parser reports bad input as ValueError, but a few malformed lines
# surface as other built-in errors from its string handling.
_PARSER_ERRORS = (ValueError, IndexError, KeyError, TypeError)


_MAX_ERROR_CHARS = 500


class ExpositionError(ValueError):
    """A target served text that is not the Prometheus exposition format."""

    def __init__(self, reason: str, line_number: int | None = None, line: str | None = None):
        self.reason = reason
        self.line_number = line_number
        self.line = line
        if line_number is None:
            super().__init__(f"malformed exposition: {reason}")
        else:
            shown = (line or "")[:_SHOWN_LINE_CHARS]
            super().__init__(f"malformed exposition at line {line_number}: {reason}: {shown!r}")


@dataclass(frozen=True, slots=True)
class Exposition:
    """The samples kept from one exposition, and how many series the cap dropped."""

    samples: dict[SeriesKey, float]
    dropped: int


def parse_exposition(text: str, series_limit: int = DEFAULT_SERIES_LIMIT) -> Exposition:
    """Parse Prometheus text format, keeping at most `series_limit` series and counting the rest."""
    # Plain exposition (what client libraries write) takes a line-level fast path that gives
    # exactly prometheus-client's result; anything else is left to prometheus-client itself.
    simple = _parse_plain(text, series_limit)
    return simple if simple is not None else _parse_with_client(text, series_limit)


def _parse_with_client(text: str, series_limit: int) -> Exposition:
    """The reference path: prometheus-client's parser, with the failing line located."""
    # The parser holds one metric family at a time besides the text itself, so memory is bounded
    # by the body size the scraper accepts plus the cap.
    samples: dict[SeriesKey, float] = {}
    dropped = 0
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if len(samples) < series_limit or key in samples:
                    samples[key] = float(sample.value)
                else:
                    dropped += 1
    except _PARSER_ERRORS as exc:
        raise _locate_error(text, exc) from exc
    return Exposition(samples, dropped)


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PLAIN_SAMPLE = re.compile(
    r"([a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")(?:,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*)?\})?'
    r"[ \t]+(\S+)(?:[ \t]+(\S+))?"
)
_PLAIN_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\\n]*)"')
# Sample-name suffixes a family of each type owns, as prometheus-client's text parser has them.
_FAMILY_SUFFIXES = {
    "counter": ("",),
    "gauge": ("",),
    "summary": ("_count", "_sum", ""),
    "histogram": ("_count", "_sum", "_bucket"),
}


# The same series come back every scrape: their parsed keys are remembered (and shared between
# snapshots) up to a bound, past which the memo starts over.
_SERIES_KEYS: dict[tuple[str, str | None], SeriesKey] = {}
_SERIES_KEYS_HELD = 500_000


def _plain_value(token: str) -> float | None:
    """A value as prometheus-client reads it, None where it would refuse it."""
    if "_" in token:
        return None
    try:
        return float(token)
    except ValueError:
        return None


def _parse_plain(text: str, series_limit: int) -> Exposition | None:
    """prometheus-client's text parsing for unescaped, unquoted exposition; None for the rest."""
    # Mirrors prometheus_client.parser.text_fd_to_metric_families: the current family's name,
    # type and owned sample names decide whether a counter sample gains `_total`. Any line it
    # does not recognise sends the whole text to the reference parser, which decides.
    samples: dict[SeriesKey, float] = {}
    dropped = 0
    family = ""
    kind = "untyped"
    owned: tuple[str, ...] = ()
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            if '"' in line or "\\" in line:
                return None
            parts = line.split(None, 3)
            if len(parts) < 2:
                continue
            if parts[1] not in ("TYPE", "HELP"):
                continue
            if len(parts) < 3 or not _NAME.fullmatch(parts[2]):
                return None
            name = parts[2]
            if parts[1] == "HELP":
                if name != family:
                    family, kind, owned = name, "untyped", (name,)
                continue
            if len(parts) < 4:
                return None
            family, kind = name, parts[3]
            owned = tuple(name + suffix for suffix in _FAMILY_SUFFIXES.get(kind, ("",)))
            continue
        match = _PLAIN_SAMPLE.fullmatch(line)
        if match is None:
            return None
        name, label_text, value_text, stamp = match.groups()
        value = _plain_value(value_text)
        if value is None or (stamp is not None and _plain_value(stamp) is None):
            return None
        if name in owned:
            if kind == "counter" and not family.endswith("_total"):
                name += "_total"
        else:
            family, kind, owned = "", "untyped", ()
        key = _SERIES_KEYS.get((name, label_text))
        if key is None:
            pairs = _PLAIN_LABEL.findall(label_text) if label_text else []
            labels = dict(pairs)
            if len(labels) != len(pairs) or "__name__" in labels:
                return None
            key = (name, tuple(sorted(labels.items())))
            if len(_SERIES_KEYS) >= _SERIES_KEYS_HELD:
                _SERIES_KEYS.clear()
            _SERIES_KEYS[(name, label_text)] = key
        if len(samples) < series_limit or key in samples:
            samples[key] = value
        else:
            dropped += 1
    return Exposition(samples, dropped)


def _locate_error(text: str, exc: Exception) -> ExpositionError:
    """Find the first line the parser rejects on its own, to name it in the error."""
    # Lines of the text format parse independently, so re-parsing line by line (only on the
    # failure path) finds the culprit without reaching into the parser's private helpers.
    for number, line in enumerate(text.split("\n"), start=1):
        try:
            for _ in text_string_to_metric_families(line):
                pass
        except _PARSER_ERRORS as line_exc:
            return ExpositionError(str(line_exc) or "not a valid sample or comment", number, line)
    return ExpositionError(str(exc) or type(exc).__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """One instance endpoint to scrape: discovered from the CMDB (`sd`) or `announced`."""

    app_id: str
    instance_id: str
    url: str
    source: str = "sd"
    labels: tuple[tuple[str, str], ...] = ()
    refused: str | None = None
    """Why this target is listed but not fetched (its host is not one the CMDB knows)."""


def target_host(url: str) -> str | None:
    """The host a target's URL points at (lower case), or None when the URL does not parse."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None


def refuse_unknown_hosts(targets: Sequence[Target], known: set[str]) -> list[Target]:
    """`targets`, those pointing at a host outside `known` marked refused (never fetched): the
    monitor fetches only from machines the CMDB knows, whoever announced the instance."""
    refused = []
    for target in targets:
        host = target_host(target.url)
        if host is None or host not in known:
            reason = f"not scraped: host {host!r} is not a host the CMDB knows"
            target = replace(target, refused=reason)
        refused.append(target)
    return refused


def merge_targets(discovered: Sequence[Target], announced: Sequence[Target]) -> list[Target]:
    """The discovered targets plus the announced ones they do not already cover.

    An announced target is left out when a discovered one has its instance id or its URL: the
    CMDB's entry wins, so an instance is never scraped twice under two names.
    """
    ids = {t.instance_id for t in discovered}
    urls = {t.url for t in discovered}
    merged = list(discovered)
    for target in announced:
        if target.instance_id in ids or target.url in urls:
            continue
        ids.add(target.instance_id)
        urls.add(target.url)
        merged.append(target)
    return sorted(merged, key=lambda t: t.instance_id)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One instance's samples as of one scrape."""

    instance_id: str
    at: datetime
    samples: Mapping[SeriesKey, float]


@dataclass(frozen=True, slots=True)
class ScrapeResult:
    """What one scrape of one target gave: health for the record, samples when it was up."""

    target: Target
    started_at: datetime
    duration_s: float
    up: bool
    last_error: str | None
    series: int
    dropped: int
    snapshot: Snapshot | None


def record_scrape(
    target: Target,
    started_at: datetime,
    duration_s: float,
    body: str,
    series_limit: int = DEFAULT_SERIES_LIMIT,
) -> ScrapeResult:
    """Parse a fetched body into an up result, or a down result naming the line it could not
    parse (never its text: a target's answer is not echoed to anyone who reads the targets)."""
    try:
        exposition = parse_exposition(body, series_limit)
    except ExpositionError as exc:
        where = f" at line {exc.line_number}" if exc.line_number is not None else ""
        error = f"malformed exposition{where}: not the Prometheus text format"
        return scrape_failed(target, started_at, duration_s, error)
    snapshot = Snapshot(target.instance_id, started_at, exposition.samples)
    return ScrapeResult(
        target=target,
        started_at=started_at,
        duration_s=duration_s,
        up=True,
        last_error=None,
        series=len(exposition.samples),
        dropped=exposition.dropped,
        snapshot=snapshot,
    )


def scrape_failed(
    target: Target, started_at: datetime, duration_s: float, error: str
) -> ScrapeResult:
    """A down result for a target that timed out, refused, answered badly or served garbage."""
    return ScrapeResult(
        target=target,
        started_at=started_at,
        duration_s=duration_s,
        up=False,
        last_error=error.replace("\x00", "")[:_MAX_ERROR_CHARS],
        series=0,
        dropped=0,
        snapshot=None,
    )

"""`ooda`: declare applications, follow their rollouts, steer changes and read the events.

Exit codes: 0 ok, 1 the operation failed (or the change did), 2 usage or authentication,
3 a service (or Kafka) is unavailable.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from ooda_cli import events as events_cmd
from ooda_cli.client import (
    FAILED,
    OK,
    UNAVAILABLE,
    USAGE,
    CliError,
    Credentials,
    Platform,
    service_urls,
)
from ooda_cli.diff import SPEC_METADATA, diff_specs

FINISHED = {"succeeded", "failed", "rolled_back", "aborted"}

app = typer.Typer(
    name="ooda",
    help="Drive the OODA platform: apply specs, watch rollouts, freeze releases, tail events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
rollout_app = typer.Typer(help="Follow rollouts.", no_args_is_help=True)
events_app = typer.Typer(help="Read the platform's events from Kafka.", no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")
app.add_typer(events_app, name="events")

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@dataclass
class State:
    """What the global options resolved to; `transport` lets tests swap the network."""

    urls: dict[str, str]
    credentials: Credentials
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep

    def platform(self) -> Platform:
        return Platform(self.urls, self.credentials, self.transport)


# Tests set this to route every HTTP call through a fake transport.
TRANSPORT: httpx.BaseTransport | None = None
SLEEP: Callable[[float], None] = time.sleep


@app.callback()
def main(ctx: typer.Context) -> None:
    """Service URLs come from OODA_<SERVICE>_URL (default 127.0.0.1:8001-8005); the bearer token
    from OODA_TOKEN (an admin issues it with `ooda-token`)."""
    ctx.obj = State(service_urls(), Credentials.from_env(), TRANSPORT, SLEEP)


def _state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def _fail(error: CliError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {error.message}")
    return typer.Exit(error.code)


# --- apply -------------------------------------------------------------------------------------


def load_manifest(path: Path) -> dict[str, Any]:
    """Read and check an application manifest: `app`, `owner_team`, optional `tier`/`labels`,
    and `spec` (the CMDB ApplicationSpec; `artifact_file` is uploaded to the pipeline)."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", USAGE) from exc
    except yaml.YAMLError as exc:
        raise CliError(f"{path} is not valid YAML: {exc}", USAGE) from exc
    if not isinstance(doc, dict):
        raise CliError(f"{path}: expected a mapping with app, owner_team and spec", USAGE)
    missing = [k for k in ("app", "owner_team", "spec") if k not in doc]
    if missing:
        raise CliError(f"{path}: missing {', '.join(missing)}", USAGE)
    if not isinstance(doc["spec"], dict):
        raise CliError(f"{path}: spec must be a mapping", USAGE)
    return doc


def _resolve_artifact(
    platform: Platform, spec: dict[str, Any], base: Path, team: str
) -> dict[str, Any]:
    spec = dict(spec)
    file = spec.pop("artifact_file", None)
    if file is None:
        return spec
    path = (base / str(file)).resolve()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read artifact_file {path}: {exc.strerror}", USAGE) from exc
    sha = hashlib.sha256(data).hexdigest()
    known = platform.get("pipeline", f"/v1/artifacts/{sha}", allow_404=True)
    if known is None:
        params = {"name": path.name, "team": team}  # the owner's quota
        platform.post("pipeline", "/v1/artifacts", params=params, content=data)
        console.print(f"uploaded artifact {path.name} sha256:{sha[:12]}")
    spec["artifact"] = f"sha256:{sha}"
    return spec


def find_change(
    platform: Platform, app_id: str, request_id: str, wait_s: float, sleep: Callable[[float], None]
) -> dict[str, Any] | None:
    """The pipeline change created for `request_id`, waiting up to `wait_s` for it to appear."""
    deadline = time.monotonic() + wait_s
    while True:
        page = platform.get("pipeline", "/v1/changes", params={"app": app_id, "limit": 50})
        for change in page["items"]:
            if change["request_id"] == request_id:
                return dict(change)
        if time.monotonic() >= deadline:
            return None
        sleep(0.5)


@app.command()
def apply(
    ctx: typer.Context,
    manifest: Annotated[Path, typer.Argument(help="application YAML: app, owner_team, spec")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only show the diff")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="follow the triggered rollout")] = False,
    wait: Annotated[float, typer.Option(help="seconds to wait for the change to appear")] = 15.0,
) -> None:
    """Declare an application and its spec: show the diff and the change it triggers."""
    state = _state(ctx)
    platform = state.platform()
    try:
        doc = load_manifest(manifest)
        app_id = str(doc["app"])
        current_app = platform.get("cmdb", f"/v1/apps/{app_id}", allow_404=True)
        current_spec = platform.get("cmdb", f"/v1/apps/{app_id}/spec", allow_404=True)
        app_body = {"owner_team": doc["owner_team"]}
        for key in ("tier", "labels", "attributes"):
            if key in doc:
                app_body[key] = doc[key]
        spec = _resolve_artifact(platform, doc["spec"], manifest.parent, str(doc["owner_team"]))
        app_changes = (
            diff_specs({k: current_app.get(k) for k in app_body}, app_body)
            if current_app
            else [("+", "application", app_id)]
        )
        spec_changes = diff_specs(current_spec, spec)
        _print_diff(app_id, current_spec, app_changes, spec_changes)
        if not app_changes and not spec_changes:
            console.print("[green]no changes[/]: the CMDB already holds this spec")
            raise typer.Exit(OK)
        if dry_run:
            raise typer.Exit(OK)
        if app_changes:
            platform.put("cmdb", f"/v1/apps/{app_id}", app_body)
        if not spec_changes:
            console.print(f"application {app_id} updated; the spec is unchanged")
            raise typer.Exit(OK)
        written = platform.put("cmdb", f"/v1/apps/{app_id}/spec", spec)
        request_id = written.get("change_request_id")
        console.print(
            f"spec revision [bold]{written['revision']}[/] of {app_id} recorded "
            f"(change set {written.get('change_set_id')})"
        )
        if not request_id:
            console.print("no change requested (nothing to deploy or scale)")
            raise typer.Exit(OK)
        change = find_change(platform, app_id, request_id, wait, state.sleep)
        if change is None:
            raise CliError(
                f"requested {request_id}, but the pipeline shows no change for it after {wait:g}s "
                "(is the pipeline consuming change-requested?)",
                FAILED,
            )
        console.print(
            f"change [bold]{change['id']}[/] ({change['kind']}, {change['state']}"
            f"{': ' + change['reason'] if change['reason'] else ''}) for request {request_id}"
        )
        if watch:
            raise typer.Exit(_watch(platform, change["id"], 2.0, 600.0, state.sleep))
        console.print(f"follow it with: ooda rollout watch {change['id']}")
    except CliError as error:
        raise _fail(error) from None
    finally:
        platform.close()


def _print_diff(
    app_id: str,
    current: dict[str, Any] | None,
    app_changes: list[tuple[str, str, Any]],
    spec_changes: list[tuple[str, str, Any]],
) -> None:
    revision = current.get("revision") if current else None
    title = f"{app_id}: spec revision {revision}" if revision else f"{app_id}: new application"
    console.print(f"[bold]{title}[/]")
    colour = {"+": "green", "-": "red", "~": "yellow"}
    for sign, path, value in [*app_changes, *spec_changes]:
        console.print(f"  [{colour[sign]}]{sign} {path}: {value}[/]")


# --- status ------------------------------------------------------------------------------------


def _optional(platform: Platform, service: str, path: str, **kw: Any) -> Any:
    """A read from a service the view can do without: None (with a warning) when it is down."""
    try:
        return platform.get(service, path, **kw)
    except CliError as error:
        if error.code != UNAVAILABLE:
            raise
        err.print(f"[yellow]warning:[/] {error.message}")
        return None


@app.command()
def status(
    ctx: typer.Context,
    app_id: Annotated[str | None, typer.Argument(metavar="[APP]", help="one application")] = None,
    decisions: Annotated[int, typer.Option(help="how many recent decisions")] = 5,
) -> None:
    """Applications, or one application's instances, current change and last decisions."""
    platform = _state(ctx).platform()
    try:
        freeze = _optional(platform, "pipeline", "/v1/freeze")
        if freeze and freeze.get("frozen"):
            console.print(
                f"[bold red]releases frozen[/] by {freeze.get('actor')}: {freeze.get('reason')}"
            )
        if app_id is None:
            _status_all(platform)
        else:
            _status_one(platform, app_id, decisions)
    except CliError as error:
        raise _fail(error) from None
    finally:
        platform.close()


def _status_all(platform: Platform) -> None:
    apps = platform.get("cmdb", "/v1/apps", params={"limit": 1000})["items"]
    changes = _optional(platform, "pipeline", "/v1/changes", params={"limit": 200})
    latest: dict[str, dict[str, Any]] = {}
    for change in (changes or {}).get("items", []):
        latest.setdefault(change["app"], change)
    table = Table(title="applications")
    for column in ("app", "team", "version", "ready/desired", "last change"):
        table.add_column(column, overflow="fold")
    for item in apps:
        spec = platform.get("cmdb", f"/v1/apps/{item['id']}/spec", allow_404=True) or {}
        instances = platform.get("cmdb", "/v1/instances", params={"app": item["id"]})["items"]
        ready = sum(1 for i in instances if i["status"] == "ready")
        change = latest.get(item["id"])
        table.add_row(
            item["id"],
            str(item.get("owner_team", "")),
            str(spec.get("version", "-")),
            f"{ready}/{spec.get('replicas', {}).get('desired', '-')}",
            f"{change['id']} {change['state']}" if change else "-",
        )
    console.print(table)


def _status_one(platform: Platform, app_id: str, decisions: int) -> None:
    item = platform.get("cmdb", f"/v1/apps/{app_id}", allow_404=True)
    if item is None:
        raise CliError(f"no application {app_id!r} in the CMDB", FAILED)
    spec = platform.get("cmdb", f"/v1/apps/{app_id}/spec", allow_404=True) or {}
    replicas = spec.get("replicas", {})
    console.print(
        f"[bold]{app_id}[/] team {item.get('owner_team')} · spec revision {spec.get('revision')} "
        f"· version {spec.get('version')} · replicas {replicas.get('min')}..{replicas.get('max')}"
        f" desired {replicas.get('desired')}"
    )
    instances = platform.get("cmdb", "/v1/instances", params={"app": app_id})["items"]
    table = Table(title=f"instances ({len(instances)})")
    for column in ("instance", "version", "zone", "host", "endpoint", "status"):
        table.add_column(column, overflow="fold")
    for inst in instances:
        table.add_row(
            inst["id"],
            str(inst.get("version")),
            str(inst.get("zone_id")),
            str(inst.get("host_id")),
            str(inst.get("endpoint")),
            inst["status"],
        )
    console.print(table)
    running = sorted({str(i.get("version")) for i in instances if i["status"] == "ready"})
    if running and spec.get("version") and running != [str(spec["version"])]:
        console.print(
            f"[yellow]drift:[/] the spec declares {spec['version']} but ready instances run "
            f"{', '.join(running)} (a rollback pins the bad version; declare the one to run)"
        )
    changes = _optional(platform, "pipeline", "/v1/changes", params={"app": app_id, "limit": 5})
    if changes is not None:
        table = Table(title="changes (newest first)")
        for column in ("change", "kind", "state", "position", "reason", "actor"):
            table.add_column(column, overflow="fold")
        for change in changes["items"]:
            table.add_row(
                change["id"],
                change["kind"],
                change["state"],
                change.get("position") or "",
                change.get("reason") or "",
                change.get("actor") or "",
            )
        console.print(table)
    found = _optional(
        platform, "decision", f"/v1/apps/{app_id}/decisions", params={"limit": decisions}
    )
    if found is not None:
        table = Table(title="last decisions")
        for column in ("window end", "policy", "current → desired", "published", "why"):
            table.add_column(column)
        for decision in found:
            table.add_row(
                str(decision.get("window_end")),
                str(decision.get("policy")),
                f"{decision.get('current_replicas')} → {decision.get('desired_replicas')}",
                "yes" if decision.get("published") else "no",
                str(decision.get("reason")),
            )
        console.print(table)


# --- rollout watch -----------------------------------------------------------------------------


def _phase(change: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    if change.get("rollback") and change["state"] in ("rolling_back", "rolled_back"):
        return "rollback", change["rollback"]
    return "rollout", change.get("rollout")


def _watch(
    platform: Platform,
    change_id: str,
    interval: float,
    timeout: float,
    sleep: Callable[[float], None],
    expect: str = "succeeded",
) -> int:
    deadline = time.monotonic() + timeout
    tasks: dict[tuple[str, int], Any] = {}
    status_task = None
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
    ) as progress:
        while True:
            change = platform.get("pipeline", f"/v1/changes/{change_id}", allow_404=True)
            if change is None:
                raise CliError(f"no change {change_id!r} in the pipeline", FAILED)
            state = change["state"]
            note = f"{state} {change.get('position') or ''} {change.get('reason') or ''}".strip()
            if status_task is None:
                status_task = progress.add_task(
                    f"{change['id']} ({change['app']}, {change['kind']})", total=None, note=note
                )
            progress.update(status_task, note=note)
            phase, plan = _phase(change)
            if plan:
                for batch in plan["plan"]["batches"]:
                    number = int(batch["number"])
                    key = (phase, number)
                    size = max(1, len(batch["start"]) + len(batch["stop"]))
                    if key not in tasks:
                        tasks[key] = progress.add_task(
                            f"  {phase} batch {number}/{plan['batches']}", total=size, note=""
                        )
                    if number <= plan["done"]:
                        progress.update(tasks[key], completed=size, note="done")
                    elif number <= plan["started"]:
                        progress.update(tasks[key], completed=size / 2, note="in progress")
                    else:
                        progress.update(tasks[key], note="waiting")
            if state in FINISHED:
                progress.update(status_task, total=1, completed=1)
                break
            if time.monotonic() >= deadline:
                progress.stop()
                err.print(f"[yellow]still {state} after {timeout:g}s[/]")
                return FAILED
            sleep(interval)
    reason = f": {change['reason']}" if change.get("reason") else ""
    if state == expect:
        console.print(f"[green]change {change_id} {state}[/]{reason}")
        return OK
    console.print(f"[red]change {change_id} {state}[/]{reason}")
    return FAILED


@rollout_app.command("watch")
def rollout_watch(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(metavar="CHANGE")],
    interval: Annotated[float, typer.Option(help="seconds between polls")] = 1.0,
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 600.0,
    expect: Annotated[
        str, typer.Option(help="the outcome that exits 0 (e.g. rolled_back after a rollback)")
    ] = "succeeded",
) -> None:
    """A live progress bar per batch until the change finishes (exit 0 on the expected outcome,
    1 on any other)."""
    if expect not in FINISHED:
        err.print(f"[bold red]error:[/] --expect takes one of {', '.join(sorted(FINISHED))}")
        raise typer.Exit(USAGE)
    state = _state(ctx)
    platform = state.platform()
    try:
        code = _watch(platform, change_id, interval, timeout, state.sleep, expect)
    except CliError as error:
        raise _fail(error) from None
    finally:
        platform.close()
    raise typer.Exit(code)


# --- pause, resume, abort, rollback ------------------------------------------------------------


def _act(ctx: typer.Context, change_id: str, action: str, reason: str) -> None:
    platform = _state(ctx).platform()
    try:
        body = {"reason": reason} if reason else None
        change = platform.post("pipeline", f"/v1/changes/{change_id}/{action}", body)
        console.print(
            f"{action}: change {change['id']} is {change['state']}"
            f"{' (' + change['reason'] + ')' if change.get('reason') else ''}"
        )
    except CliError as error:
        raise _fail(error) from None
    finally:
        platform.close()


REASON = Annotated[str, typer.Option("--reason", help="why (recorded with the change)")]
CHANGE = Annotated[str, typer.Argument(metavar="CHANGE")]


@app.command()
def pause(ctx: typer.Context, change_id: CHANGE, reason: REASON = "") -> None:
    """Hold a rollout before its next batch."""
    _act(ctx, change_id, "pause", reason)


@app.command()
def resume(ctx: typer.Context, change_id: CHANGE, reason: REASON = "") -> None:
    """Let a paused rollout go on."""
    _act(ctx, change_id, "resume", reason)


@app.command()
def abort(ctx: typer.Context, change_id: CHANGE, reason: REASON = "") -> None:
    """Stop a change for good after any running batch."""
    _act(ctx, change_id, "abort", reason)


@app.command()
def rollback(ctx: typer.Context, change_id: CHANGE, reason: REASON = "") -> None:
    """Roll back a succeeded or aborted change, in batches."""
    _act(ctx, change_id, "rollback", reason)


# --- freeze ------------------------------------------------------------------------------------


@app.command()
def freeze(
    ctx: typer.Context,
    mode: Annotated[str, typer.Argument(metavar="on|off|show")] = "show",
    reason: Annotated[str | None, typer.Option("--reason", help="required for on")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 end of the freeze")] = None,
) -> None:
    """Freeze releases platform-wide (admin), lift the freeze, or show it."""
    if mode not in ("on", "off", "show"):
        err.print(f"[bold red]error:[/] freeze takes on, off or show, not {mode!r}")
        raise typer.Exit(USAGE)
    if mode == "on" and not reason:
        err.print("[bold red]error:[/] freeze on needs --reason")
        raise typer.Exit(USAGE)
    platform = _state(ctx).platform()
    try:
        if mode == "on":
            body: dict[str, Any] = {"reason": reason}
            if until:
                body["until"] = until
            found = platform.put("pipeline", "/v1/freeze", body)
        elif mode == "off":
            found = platform.delete("pipeline", "/v1/freeze")
        else:
            found = platform.get("pipeline", "/v1/freeze")
    except CliError as error:
        raise _fail(error) from None
    finally:
        platform.close()
    if found and found.get("frozen"):
        until_text = f" until {found['until']}" if found.get("until") else ""
        console.print(
            f"[bold red]frozen[/] by {found.get('actor')} since {found.get('since')}"
            f"{until_text}: {found.get('reason')}"
        )
    else:
        console.print("[green]not frozen[/]: releases run")


# --- events tail -------------------------------------------------------------------------------


@events_app.command("tail")
def events_tail(
    topic: Annotated[str, typer.Argument(help="e.g. deploy-done (see `ooda events topics`)")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    offset: Annotated[
        int | None, typer.Option("--offset", help="start each partition at this offset")
    ] = None,
    count: Annotated[int | None, typer.Option("--count", "-n", help="stop after N events")] = None,
    idle: Annotated[
        float | None, typer.Option("--idle", help="stop after this many seconds with no event")
    ] = None,
    raw: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Pretty-print the CloudEvents on a topic (new ones by default), decoded with ooda.events."""
    if from_beginning and offset is not None:
        err.print("[bold red]error:[/] give --from-beginning or --offset, not both")
        raise typer.Exit(USAGE)
    try:
        code = events_cmd.tail(
            topic, from_beginning, offset, count, idle, raw, console, events_cmd.kafka_settings()
        )
    except CliError as error:
        raise _fail(error) from None
    raise typer.Exit(code)


@events_app.command("grant")
def events_grant(
    team: Annotated[str, typer.Argument(help="the subscribing team, e.g. payments")],
    topic: Annotated[str, typer.Argument(help="e.g. deploy-done (see `ooda events topics`)")],
    rotate: Annotated[
        bool, typer.Option("--rotate-password", help="new credentials for an existing principal")
    ] = False,
) -> None:
    """Let TEAM read TOPIC with a read-only Kafka principal of its own (team-TEAM, consumer
    groups TEAM.*); prints new credentials once. Needs the admin principal (OODA_KAFKA_*)."""
    try:
        code = events_cmd.grant(team, topic, rotate, console, events_cmd.kafka_settings())
    except CliError as error:
        raise _fail(error) from None
    raise typer.Exit(code)


@events_app.command("revoke")
def events_revoke(
    team: Annotated[str, typer.Argument(help="the subscribing team")],
    topic: Annotated[
        str | None, typer.Argument(help="one topic; none: the principal and all it may read")
    ] = None,
) -> None:
    """Take TOPIC away from TEAM's principal, or delete the principal (credentials and every
    rule). Needs the admin principal (OODA_KAFKA_*)."""
    try:
        code = events_cmd.revoke(team, topic, console, events_cmd.kafka_settings())
    except CliError as error:
        raise _fail(error) from None
    raise typer.Exit(code)


@events_app.command("topics")
def events_topics() -> None:
    """Every topic of the platform, with its event type and producer."""
    from ooda.events import CATALOG

    table = Table(title="topics")
    for column in ("topic", "event type", "producer", "consumers"):
        table.add_column(column)
    for spec in CATALOG:
        table.add_row(spec.topic, spec.type, spec.producer, ", ".join(spec.consumers) or "-")
    console.print(table)


def run() -> None:
    """Entry point of the `ooda` script."""
    app()


__all__ = ["SPEC_METADATA", "app", "run"]

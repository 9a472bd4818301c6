"""Dashboards as code (grafana-foundation-sdk, Grafana 11) and the Prometheus configuration.

    .venv/bin/python deploy/grafana/generate.py            # rewrite the committed files
    .venv/bin/python deploy/grafana/generate.py --check    # fail if they are stale

Writes `deploy/grafana/dashboards/{platform-health,loop-overview,capacity-and-budget}.json` and
`deploy/prometheus/prometheus.yml`. Every panel query is checked against a real Prometheus by
`tests/surfaces/test_dashboards.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery as PromQuery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DASHBOARDS = HERE / "dashboards"
PROMETHEUS_YML = REPO / "deploy" / "prometheus" / "prometheus.yml"

SERVICES = {"cmdb": 8001, "pipeline": 8002, "monitor": 8003, "elastic": 8004, "decision": 8005}
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"


def _query(expr: str, legend: str, ref: str = "A") -> PromQuery:
    return PromQuery().expr(expr).legend_format(legend).datasource(DS).ref_id(ref)


def _series(title: str, unit: str, *queries: tuple[str, str], description: str = "") -> Timeseries:
    panel = Timeseries().title(title).unit(unit).datasource(DS).height(8).span(12)
    if description:
        panel = panel.description(description)
    for n, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + n)))
    return panel


def _stat(title: str, unit: str, expr: str, legend: str) -> Stat:
    return (
        Stat()
        .title(title)
        .unit(unit)
        .datasource(DS)
        .height(4)
        .span(6)
        .with_target(_query(expr, legend))
    )


def _or_zero(expr: str, by: str, metric: str) -> str:
    """`expr`, or 0 per group while the counter it filters has no such series yet."""
    return f"({expr}) or (sum by ({by}) ({metric}) * 0)"


def _datasource() -> DatasourceVariable:
    return DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def platform_health() -> Dashboard:
    """Per service: events in and out, consumer lag, dead letters, outbox backlog, HTTP."""
    svc = 'service=~"$service"'
    job = 'job=~"$service"'
    return (
        Dashboard("OODA platform health")
        .uid("ooda-platform-health")
        .tags(["ooda"])
        .refresh("10s")
        .time("now-1h", "now")
        .with_variable(_datasource())
        .with_variable(
            QueryVariable("service")
            .label("service")
            .query("label_values(ooda_outbox_backlog, service)")
            .datasource(DS)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_row(Row("Events"))
        .with_panel(
            _series(
                "Events consumed per second by outcome",
                "ops",
                (
                    "sum by (service, outcome) "
                    f"(rate(ooda_consumer_messages_total{{{svc}}}[{RATE}]))",
                    "{{service}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Events published per second (outbox)",
                "ops",
                (
                    f"sum by (service, topic) (rate(ooda_outbox_published_total{{{svc}}}[{RATE}]))",
                    "{{service}} → {{topic}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Consumer lag (records behind)",
                "short",
                (f"sum by (service, topic) (ooda_consumer_lag{{{svc}}})", "{{service}} {{topic}}"),
            )
        )
        .with_panel(
            _series(
                "Dead letters (last hour)",
                "short",
                (
                    _or_zero(
                        "sum by (service) (increase(ooda_consumer_messages_total"
                        f'{{{svc},outcome="dead_lettered"}}[1h]))',
                        "service",
                        f"ooda_consumer_messages_total{{{svc}}}",
                    ),
                    "{{service}}",
                ),
                description="Read them with `ooda events tail TOPIC.dlq --from-beginning`.",
            )
        )
        .with_panel(
            _series(
                "Outbox backlog (rows not yet published)",
                "short",
                (f"sum by (service) (ooda_outbox_backlog{{{svc}}})", "{{service}}"),
            )
        )
        .with_panel(
            _series(
                "Outbox rows parked, records skipped (last hour)",
                "short",
                (
                    _or_zero(
                        f"sum by (service) (increase(ooda_outbox_parked_total{{{svc}}}[1h]))",
                        "service",
                        f"ooda_outbox_backlog{{{svc}}}",
                    ),
                    "parked {{service}}",
                ),
                (
                    _or_zero(
                        "sum by (service) (increase(ooda_consumer_messages_total"
                        f'{{{svc},outcome="skipped"}}[1h]))',
                        "service",
                        f"ooda_consumer_messages_total{{{svc}}}",
                    ),
                    "skipped {{service}}",
                ),
                description="Parked: outbox rows the broker refused (`parked_reason` says why). "
                "Skipped: records whose dead letter could not be written (see the logs).",
            )
        )
        .with_panel(
            _series(
                "Outbox publish delay p99",
                "s",
                (
                    "histogram_quantile(0.99, sum by (service, le) "
                    f"(rate(ooda_outbox_publish_delay_seconds_bucket{{{svc}}}[{RATE}])))",
                    "{{service}}",
                ),
            )
        )
        .with_row(Row("HTTP APIs"))
        .with_panel(
            _series(
                "HTTP requests per second",
                "reqps",
                (f"sum by (job) (rate(http_requests_total{{{job}}}[{RATE}]))", "{{job}}"),
            )
        )
        .with_panel(
            _series(
                "HTTP error rate (5xx share)",
                "percentunit",
                (
                    "("
                    + _or_zero(
                        f'sum by (job) (rate(http_requests_total{{{job},status="5xx"}}[{RATE}]))',
                        "job",
                        f"rate(http_requests_total{{{job}}}[{RATE}])",
                    )
                    + f") / sum by (job) (rate(http_requests_total{{{job}}}[{RATE}]))",
                    "{{job}}",
                ),
            )
        )
        .with_panel(
            _series(
                "HTTP latency p50 / p99",
                "s",
                (
                    "histogram_quantile(0.5, sum by (job, le) "
                    f"(rate(http_request_duration_seconds_bucket{{{job}}}[{RATE}])))",
                    "{{job}} p50",
                ),
                (
                    "histogram_quantile(0.99, sum by (job, le) "
                    f"(rate(http_request_duration_seconds_bucket{{{job}}}[{RATE}])))",
                    "{{job}} p99",
                ),
            )
        )
        .with_panel(
            _series(
                "Services up",
                "short",
                (f"up{{{job}}}", "{{job}}"),
            )
        )
    )


def loop_overview() -> Dashboard:
    """Per application: load, instances, latency, decisions and changes."""
    app = 'app=~"$app"'
    return (
        Dashboard("OODA loop overview")
        .uid("ooda-loop-overview")
        .tags(["ooda"])
        .refresh("10s")
        .time("now-1h", "now")
        .with_variable(_datasource())
        .with_variable(
            QueryVariable("app")
            .label("application")
            .query("label_values(ooda_app_instances, app)")
            .datasource(DS)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_row(Row("Observe"))
        .with_panel(_stat("Applications", "short", "count(ooda_app_instances)", "apps"))
        .with_panel(
            _stat(
                "Instances up (scraped by Prometheus)",
                "short",
                'sum(up{job="ooda-instances"})',
                "up",
            )
        )
        .with_panel(
            _series(
                "Load (requests per second, monitor window)",
                "reqps",
                (f"sum by (app) (ooda_app_request_rate{{{app}}})", "{{app}}"),
            )
        )
        .with_panel(
            _series(
                "Load seen by Prometheus (instances' own counters)",
                "reqps",
                (
                    "sum by (app) "
                    f'(rate(http_requests_total{{job="ooda-instances",{app}}}[{RATE}]))',
                    "{{app}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Instances: ready vs total",
                "short",
                (f"sum by (app) (ooda_app_ready_instances{{{app}}})", "{{app}} ready"),
                (f"sum by (app) (ooda_app_instances{{{app}}})", "{{app}} total"),
            )
        )
        .with_panel(
            _series(
                "Load per instance (capacity use)",
                "reqps",
                (f"sum by (app) (ooda_app_load_per_instance{{{app}}})", "{{app}}"),
            )
        )
        .with_panel(
            _series(
                "Latency p99 (monitor window)",
                "ms",
                (f"max by (app) (ooda_app_latency_p99_ms{{{app}}})", "{{app}}"),
            )
        )
        .with_panel(
            _series(
                "CPU utilisation",
                "percentunit",
                (f"max by (app) (ooda_app_cpu_utilisation{{{app}}})", "{{app}}"),
            )
        )
        .with_panel(
            _series(
                "Data staleness",
                "s",
                (f"max by (app) (ooda_app_staleness_seconds{{{app}}})", "{{app}}"),
            )
        )
        .with_row(Row("Decide and act"))
        .with_panel(
            _series(
                "Metric windows published (monitor) and scale decisions consumed (elastic)",
                "ops",
                (
                    f'sum(rate(ooda_outbox_published_total{{topic=~".*metric-observed"}}[{RATE}]))',
                    "metric-observed",
                ),
                (
                    _or_zero(
                        "sum(rate(ooda_consumer_messages_total"
                        f'{{service="elastic",topic=~".*scale-decided"}}[{RATE}]))',
                        "service",
                        'ooda_consumer_messages_total{service="elastic"}',
                    ),
                    "scale-decided",
                ),
            )
        )
        .with_panel(
            _series(
                "Changes finished by kind and outcome (last hour)",
                "short",
                (
                    "sum by (kind, outcome) (increase(pipeline_changes_finished_total[1h]))",
                    "{{kind}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Rollout batch duration p90",
                "s",
                (
                    "histogram_quantile(0.9, sum by (phase, le) "
                    f"(rate(pipeline_batch_seconds_bucket[{RATE}])))",
                    "{{phase}}",
                ),
            )
        )
    )


def _pool_share(allocated: str, total: str, pool: str) -> str:
    return f"sum by (pool) ({allocated}{{{pool}}}) / sum by (pool) ({total}{{{pool}}})"


def capacity_and_budget() -> Dashboard:
    """Per team and pool: budget spend, replicas, quota use, pool capacity, held-back decisions."""
    team = 'team=~"$team"'
    pool = 'pool=~"$pool"'
    of_team = f"and on (app) ooda_elastic_app_replicas{{{team}}}"
    return (
        Dashboard("OODA capacity and budget")
        .uid("ooda-capacity-and-budget")
        .tags(["ooda"])
        .refresh("30s")
        .time("now-6h", "now")
        .with_variable(_datasource())
        .with_variable(
            QueryVariable("team")
            .label("team")
            .query("label_values(ooda_elastic_app_replicas, team)")
            .datasource(DS)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_variable(
            QueryVariable("pool")
            .label("pool")
            .query("label_values(ooda_pool_cpu_millis, pool)")
            .datasource(DS)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_row(Row("Budget per team"))
        .with_panel(
            _stat(
                "Replicas running",
                "short",
                f"sum(ooda_elastic_app_replicas{{{team}}})",
                "replicas",
            )
        )
        .with_panel(
            _stat(
                "Budget committed (share of the limit)",
                "percentunit",
                f"max(sum by (team) (ooda_budget_committed_replica_hours{{{team}}}) "
                f"/ sum by (team) (ooda_budget_limit_replica_hours{{{team}}}))",
                "most committed team",
            )
        )
        .with_panel(
            _stat(
                "Pool CPU allocated",
                "percentunit",
                f"sum(ooda_pool_allocated_cpu_millis{{{pool}}}) "
                f"/ sum(ooda_pool_cpu_millis{{{pool}}})",
                "allocated",
            )
        )
        .with_panel(
            _stat(
                "Decisions held back (last hour)",
                "short",
                f'sum(increase(ooda_elastic_holds_total{{{team},rule!="at_target"}}[1h]))',
                "held",
            )
        )
        .with_panel(
            _series(
                "Budget this period: limit, committed and used (replica-hours)",
                "short",
                (f"sum by (team) (ooda_budget_limit_replica_hours{{{team}}})", "{{team}} limit"),
                (
                    f"sum by (team) (ooda_budget_committed_replica_hours{{{team}}})",
                    "{{team}} committed",
                ),
                (f"sum by (team) (ooda_budget_used_replica_hours{{{team}}})", "{{team}} used"),
                description=(
                    "Committed: what was used so far plus what the replicas running now use "
                    "until the period ends."
                ),
            )
        )
        .with_panel(
            _series(
                "Budget used and committed (share of the limit)",
                "percentunit",
                (
                    f"sum by (team) (ooda_budget_used_replica_hours{{{team}}}) "
                    f"/ sum by (team) (ooda_budget_limit_replica_hours{{{team}}})",
                    "{{team}} used",
                ),
                (
                    f"sum by (team) (ooda_budget_committed_replica_hours{{{team}}}) "
                    f"/ sum by (team) (ooda_budget_limit_replica_hours{{{team}}})",
                    "{{team}} committed",
                ),
            )
        )
        .with_row(Row("Replicas per team and application"))
        .with_panel(
            _series(
                "Replicas per team",
                "short",
                (f"sum by (team) (ooda_elastic_app_replicas{{{team}}})", "{{team}}"),
            )
        )
        .with_panel(
            _series(
                "Replicas per application, with the policy's maximum",
                "short",
                (f"sum by (team, app) (ooda_elastic_app_replicas{{{team}}})", "{{team}}/{{app}}"),
                (
                    f"max by (team, app) (ooda_elastic_app_max_replicas{{{team}}})",
                    "{{team}}/{{app}} max",
                ),
            )
        )
        .with_row(Row("Quotas"))
        .with_panel(
            _series(
                "Quota use: CPU (share of the limit)",
                "percentunit",
                (
                    f"sum by (team, scope, name) (ooda_quota_used_cpu_millis{{{team}}}) "
                    f"/ sum by (team, scope, name) (ooda_quota_cpu_millis{{{team}}})",
                    "{{team}} {{scope}} {{name}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Quota use: memory (share of the limit)",
                "percentunit",
                (
                    f"sum by (team, scope, name) (ooda_quota_used_memory_mib{{{team}}}) "
                    f"/ sum by (team, scope, name) (ooda_quota_memory_mib{{{team}}})",
                    "{{team}} {{scope}} {{name}}",
                ),
            )
        )
        .with_row(Row("Capacity per pool"))
        .with_panel(
            _series(
                "CPU per pool: schedulable and allocated (cores)",
                "short",
                (f"sum by (pool) (ooda_pool_cpu_millis{{{pool}}}) / 1000", "{{pool}} schedulable"),
                (
                    f"sum by (pool) (ooda_pool_allocated_cpu_millis{{{pool}}}) / 1000",
                    "{{pool}} allocated",
                ),
                description=(
                    "Schedulable: hosts that are up. Allocated: what live instances reserve."
                ),
            )
        )
        .with_panel(
            _series(
                "Memory per pool: schedulable and allocated",
                "mbytes",
                (f"sum by (pool) (ooda_pool_memory_mib{{{pool}}})", "{{pool}} schedulable"),
                (
                    f"sum by (pool) (ooda_pool_allocated_memory_mib{{{pool}}})",
                    "{{pool}} allocated",
                ),
            )
        )
        .with_panel(
            _series(
                "Allocation per pool (share of schedulable CPU and memory)",
                "percentunit",
                (
                    _pool_share("ooda_pool_allocated_cpu_millis", "ooda_pool_cpu_millis", pool),
                    "{{pool}} CPU",
                ),
                (
                    _pool_share("ooda_pool_allocated_memory_mib", "ooda_pool_memory_mib", pool),
                    "{{pool}} memory",
                ),
            )
        )
        .with_panel(
            _series(
                "Hosts and instances per pool",
                "short",
                (f"sum by (pool, status) (ooda_pool_hosts{{{pool}}})", "{{pool}} hosts {{status}}"),
                (f"sum by (pool) (ooda_pool_instances{{{pool}}})", "{{pool}} instances"),
            )
        )
        .with_row(Row("Decisions against the limits"))
        .with_panel(
            _series(
                "Decisions held back, by the rule that held them (last hour)",
                "short",
                (
                    "sum by (team, rule) (increase(ooda_elastic_holds_total"
                    f'{{{team},rule!="at_target"}}[1h]))',
                    "{{team}} {{rule}}",
                ),
                description=(
                    "budget, cooldown, rate_limit, capacity (hosts and quotas), spread, or "
                    "cmdb_unavailable; `ooda` shows each outcome's reason."
                ),
            )
        )
        .with_panel(
            _series(
                "Decisions clipped, by rule (last hour)",
                "short",
                (
                    f"sum by (team, rule) (increase(ooda_elastic_clips_total{{{team}}}[1h]))",
                    "{{team}} {{rule}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Scale outcomes by action (last hour)",
                "short",
                (
                    f"sum by (team, action) (increase(ooda_elastic_outcomes_total{{{team}}}[1h]))",
                    "{{team}} {{action}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Forecast load against serving capacity",
                "reqps",
                (f"sum by (app) (ooda_decision_forecast_rps {of_team})", "{{app}} forecast"),
                (f"sum by (app) (ooda_decision_capacity_rps {of_team})", "{{app}} capacity now"),
                (
                    f"sum by (app) (ooda_decision_planned_capacity_rps {of_team})",
                    "{{app}} capacity decided",
                ),
                description=(
                    "Forecast: the load the latest decision sized for. Capacity: learned load "
                    "per instance times the ready (now) or decided replicas."
                ),
            )
        )
    )


def prometheus_config(
    services: dict[str, str] | None = None,
    cmdb: str | None = None,
    scrape_interval: str = "5s",
) -> dict[str, Any]:
    """Scrape every service (`host:port` per name) and, via the CMDB's HTTP SD, every instance."""
    services = services or {name: f"127.0.0.1:{port}" for name, port in SERVICES.items()}
    cmdb = cmdb or f"http://{services['cmdb']}"
    jobs: list[dict[str, Any]] = [
        {"job_name": name, "static_configs": [{"targets": [target]}]}
        for name, target in services.items()
    ]
    jobs.append(
        {
            "job_name": "ooda-instances",
            "http_sd_configs": [{"url": f"{cmdb}/v1/sd/prometheus", "refresh_interval": "10s"}],
        }
    )
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": jobs,
    }


def _conforming(board: Any) -> dict[str, Any]:
    """The dashboard as Grafana's published schema (`@grafana/schema`) types it.

    The SDK gives every variable the interval variable's `auto*` fields, which the schema's
    `VariableModel` does not declare: keep them on interval variables only.
    """
    raw: dict[str, Any] = json.loads(json.dumps(board, cls=JSONEncoder))
    for variable in raw.get("templating", {}).get("list", []):
        if variable.get("type") != "interval":
            for key in ("auto", "auto_count", "auto_min"):
                variable.pop(key, None)
    return raw


def render() -> dict[Path, str]:
    """Every generated file and its content."""
    out = {}
    boards = {
        "platform-health": platform_health(),
        "loop-overview": loop_overview(),
        "capacity-and-budget": capacity_and_budget(),
    }
    for name, board in boards.items():
        text = json.dumps(_conforming(board.build()), cls=JSONEncoder, sort_keys=True, indent=2)
        out[DASHBOARDS / f"{name}.json"] = text + "\n"
    header = "# generated by deploy/grafana/generate.py: do not edit\n"
    out[PROMETHEUS_YML] = header + yaml.safe_dump(prometheus_config(), sort_keys=False)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        stale = [str(p) for p, text in files.items() if not p.exists() or p.read_text() != text]
        if stale:
            print("stale: " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

# OODA: every routine command is one target calling a real tool.
.PHONY: help venv up restart down status demo first-event test unit lint typecheck bench soak fuzz contracts dashboards evaluate clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

venv:  ## create or update .venv from uv.lock (and the AsyncAPI checker)
	tools/bootstrap.sh

up: venv  ## start Kafka, PostgreSQL and the five services (safe to run twice)
	deploy/local/ooda-local up

restart: venv  ## restart the five services (after pulling new code; Kafka and PostgreSQL keep running)
	deploy/local/ooda-local restart services

down:  ## stop exactly what `make up` started
	deploy/local/ooda-local down

status:  ## show what runs where
	deploy/local/ooda-local status

demo: up  ## start the platform, replay a real trace as live load and watch it scale the app by itself (~7 min; MINUTES=20 for a short replay; report in reports/)
	.venv/bin/python examples/demo $(if $(MINUTES),--minutes $(MINUTES))

first-event: up  ## show one event travelling through the platform
	.venv/bin/python examples/first_event.py

test:  ## set up everything, then lint, type-check and run every test on real Kafka and PostgreSQL
	tools/test.sh

unit: venv  ## the fast tests only (no infrastructure)
	.venv/bin/python -m pytest -p no:cacheprovider -m unit

lint: venv  ## ruff
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

typecheck: venv  ## mypy
	.venv/bin/mypy libs/common/ooda services/cmdb/cmdb services/pipeline/pipeline services/monitor/monitor services/elastic/elastic services/decision/decision cli/ooda_cli

bench: venv  ## benchmarks, each beside a baseline measured in the same run
	deploy/local/ooda-local infra-up
	.venv/bin/python bench/events.py
	.venv/bin/python bench/monitor_parse.py
	.venv/bin/python bench/monitor.py
	.venv/bin/python bench/pipeline.py
	.venv/bin/python bench/cmdb.py
	.venv/bin/python bench/loop.py

soak: venv  ## the closed loop under steady load with fuzzing beside it (MINUTES=30): RSS, connections, lost events, 5xx
	deploy/local/ooda-local infra-up
	.venv/bin/python bench/soak.py --minutes $${MINUTES:-30}

fuzz: venv  ## schemathesis against the five services at length (OODA_FUZZ_MAX_EXAMPLES=200, OODA_FUZZ_SECONDS=600 per service)
	deploy/local/ooda-local infra-up
	OODA_FUZZ_MAX_EXAMPLES=$${OODA_FUZZ_MAX_EXAMPLES:-200} OODA_FUZZ_SECONDS=$${OODA_FUZZ_SECONDS:-600} \
	.venv/bin/python -m pytest -p no:cacheprovider -s tests/integration/test_fuzz.py

contracts: venv  ## regenerate the event catalogue (AsyncAPI + JSON Schemas) in docs/events
	.venv/bin/ooda-contracts asyncapi > docs/events/asyncapi.yaml
	.venv/bin/ooda-contracts schemas docs/events/schemas
	.venv/bin/ooda-catalogue docs/catalogue

evaluate: venv  ## replay every trace through every policy for D in 1, 2, 5, 10 min: table + Pareto plot in reports/evaluation
	.venv/bin/python -m decision.cli evaluate --traces data/traces --out reports/evaluation

dashboards: venv  ## regenerate the Grafana dashboards and deploy/prometheus/prometheus.yml
	.venv/bin/python deploy/grafana/generate.py

clean: down  ## stop everything and delete local state (.local)
	rm -rf .local

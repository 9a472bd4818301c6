#!/usr/bin/env bash
# `make test`: set up everything on a fresh machine, run lint, type checks and every test against
# real Kafka and PostgreSQL, then stop the infrastructure if this script started it.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/bootstrap.sh

LOCAL="${OODA_LOCAL_DIR:-$PWD/.local}"
running() { deploy/local/ooda-local status 2>/dev/null | awk -v c="$1" '$1 == c { print $2 }' | grep -qx running; }
started_here=no
if ! running kafka || ! running postgresql; then started_here=yes; fi
deploy/local/ooda-local infra-up
if [ "$started_here" = yes ]; then
  trap 'echo "==> Stopping the infrastructure this run started"; deploy/local/ooda-local down' EXIT
fi
# The tests read where Kafka and PostgreSQL are from the environment.
set -a; . "$LOCAL/ooda.env"; set +a

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy libs/common/ooda services/cmdb/cmdb services/pipeline/pipeline \
  services/monitor/monitor services/elastic/elastic services/decision/decision cli/ooda_cli
echo "==> pytest"
.venv/bin/python -m pytest -p no:cacheprovider "$@"

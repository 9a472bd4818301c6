#!/usr/bin/env bash
# Create or update the project's environment: uv, the virtualenv from uv.lock, and the Node tools
# that validate the AsyncAPI document and the Grafana dashboards, and the Compose Specification
# schema. Safe to run repeatedly; fast when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.8

if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  echo "==> Installing uv $UV_VERSION"
  python3 -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi
echo "==> Syncing .venv from uv.lock"
uv sync --all-packages --frozen --quiet
if [ ! -d tools/asyncapi/node_modules/@asyncapi/parser ]; then
  echo "==> Installing the AsyncAPI parser (npm ci)"
  (cd tools/asyncapi && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -d tools/grafana-schema/node_modules/@grafana/schema ]; then
  echo "==> Installing Grafana's published dashboard schema (npm ci)"
  (cd tools/grafana-schema && npm ci --no-audit --no-fund --loglevel=error)
fi
python3 tools/compose-spec/fetch.py

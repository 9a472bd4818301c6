#!/usr/bin/env bash
# Create or update the project's environment: uv, the virtualenv from uv.lock, and the Node tool
# that validates the AsyncAPI document. Safe to run repeatedly; fast when nothing changed.
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

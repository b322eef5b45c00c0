#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh Debian machine (idempotent):
# Debian packages (redis-server), a virtualenv with the project, and the npm packages the
# tests drive. torch is pinned to the CPU build on this disk (an unpinned torch pulls CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "setup: redis-server is missing; install it: sudo apt-get install redis-server" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q -e ".[pipeline,test]"
  touch "$stamp"
fi

if [ ! -f node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --silent
fi
if [ ! -f tests/node/node_modules/.package-lock.json ]; then
  (cd tests/node && npm ci --legacy-peer-deps --no-audit --no-fund --silent)
fi

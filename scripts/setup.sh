#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh Debian machine (idempotent):
# Debian packages (redis-server; chromium for the browser tests), a virtualenv with the
# project, and the npm packages of the page and the tests. torch is pinned to the CPU build
# on this disk (an unpinned torch pulls CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing ${missing[*]}; install: sudo apt-get install ${missing[*]}" >&2
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

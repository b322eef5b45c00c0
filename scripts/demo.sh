#!/usr/bin/env bash
# The main job of the README: installs what it needs, then indexes a demo workspace end to end
# on the embedded defaults (MongoDB-protocol server, head, local Ray). Extra arguments are PDFs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/indexer demo "$@"

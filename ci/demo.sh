#!/usr/bin/env bash
# One command for a fresh machine: install, then run the demo on the embedded synthetic archive.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/bootstrap.sh
exec .venv/bin/itslive-dask demo "$@"

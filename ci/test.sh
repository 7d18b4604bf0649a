#!/usr/bin/env bash
# One command for a fresh machine: install, lint, type-check, then run the default test suite (slow
# benchmarks are excluded by the pytest configuration; run them with `-m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/bootstrap.sh
.venv/bin/ruff check itslive_dask tests benchmarks
.venv/bin/mypy
# the map page's browser tests drive Debian's chromium (installed once per machine)
bash ci/install-browser.sh || echo "warning: chromium could not be installed; the browser tests will be skipped" >&2
exec .venv/bin/python -m pytest "$@"

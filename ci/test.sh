#!/usr/bin/env bash
# One command for a fresh machine: install, lint, type-check, then run the default test suite and
# the reliability suite (slow benchmarks are excluded by the pytest configuration; run them with
# `-m slow`). Exits non-zero if either suite fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/bootstrap.sh
.venv/bin/ruff check itslive_dask tests benchmarks
.venv/bin/ruff format --check itslive_dask tests benchmarks
.venv/bin/mypy
# the API and CLI reference pages are generated from the code: they must not be stale
.venv/bin/python docs/gen_api.py --check
# the map page's browser tests drive Debian's chromium (installed once per machine)
bash ci/install-browser.sh || echo "warning: chromium could not be installed; the browser tests will be skipped" >&2
# 1. the default suite (pyproject's addopts leave out the `slow` benchmarks and the
#    `reliability` runs); arguments given to this script go to this run only
status=0
.venv/bin/python -m pytest "$@" || status=$?
# 2. the reliability suite (fault-injection builds, docs/reliability.md: ~2-3 min on 2 cores),
#    a second invocation so a developer can still run the first one alone with
#    `pytest` (or skip this one: ITSLIVE_SKIP_RELIABILITY=1 bash ci/test.sh)
if [ "$#" -eq 0 ] && [ "${ITSLIVE_SKIP_RELIABILITY:-0}" != "1" ]; then
  .venv/bin/python -m pytest -m "reliability and not slow" || status=$?
fi
exit "$status"

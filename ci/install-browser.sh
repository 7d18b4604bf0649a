#!/usr/bin/env bash
# Install Debian's Chromium for the map page's browser tests (tests/server/test_map_browser.py),
# only when /usr/bin/chromium is missing. Playwright drives this system browser; never run
# `playwright install` (it downloads a browser build, which this project does not use).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version

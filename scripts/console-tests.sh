#!/usr/bin/env bash
# The console's browser tests: Debian's Chromium (installed here if missing: the project's own
# install step, idempotent), playwright-core and axe from npm (no browser download), a real
# `leadrouter serve`. Screenshots at 375 px go to $CARGO_TARGET_DIR/console-screens/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "Chromium is missing: sudo apt-get install -y chromium"; exit 1
  fi
fi
(cd tests/console && { [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --silent; })
cargo build -q -p leadrouter-cli
node --test --test-timeout=180000 tests/console/

#!/usr/bin/env bash
# Set up everything the tests need (venv, test tools, Chromium), then run the whole suite.
#   scripts/test.sh           the whole suite (what CI runs)
#   scripts/test.sh --fast    the fast tier: neither slow (real architectures, browser) nor e2e
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
if [ "${1:-}" = "--fast" ]; then
  shift
  exec .venv/bin/python -m pytest -m "not slow and not e2e" "$@"
fi
exec .venv/bin/python -m pytest "$@"

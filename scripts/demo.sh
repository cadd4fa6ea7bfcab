#!/usr/bin/env bash
# Set up the runtime, then start the demo on http://127.0.0.1:7860 (offline: the medmnist backbone).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python app.py "$@"

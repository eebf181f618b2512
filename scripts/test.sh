#!/usr/bin/env bash
# Set up everything the tests need (.venv with the quantize and test extras, Mosquitto), lint, run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "opencv,quantize,test"
.venv/bin/ruff check edged quantize tests scripts bench
.venv/bin/python -m pytest "$@"

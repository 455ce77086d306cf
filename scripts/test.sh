#!/usr/bin/env bash
# Set up the environment if needed, then run the default test suite
# (slow statistical checks: add --runslow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PYTHONHASHSEED=0  # plots: tests select Agg themselves; notebook kernels keep inline
exec .venv/bin/python -m pytest -q "$@"

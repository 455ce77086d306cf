#!/usr/bin/env bash
# Set up the environment if needed, then run the sleepstudy demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m bayes_hlm.demo "$@"

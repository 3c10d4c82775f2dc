#!/usr/bin/env bash
# Sets up .venv when needed, then runs the test suite (CI calls this).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
python -m pytest tests -q "$@"

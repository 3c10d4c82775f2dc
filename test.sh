#!/usr/bin/env bash
# Sets up .venv when needed, then runs the test suite (CI calls this; ~9 min on 2 cores).
# TORCH_INDEX=cpu takes torch and torchvision from PyTorch's CPU-only index (scripts/venv.sh).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
# -rs: a summary line per skipped test saying why (no GPU, no data set, ...)
python -m pytest tests -q -rs "$@"

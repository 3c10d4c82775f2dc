#!/usr/bin/env bash
# The prepared check for a lent GPU (no network there): scripts/device_check.py runs the
# CUDA paths of train.py in under 8 minutes and writes summary.md/.csv, log.txt and
# bench_epoch.csv into $OUT. Nothing is installed: unlike scripts/venv.sh, this never runs
# pip. The interpreter is the active virtual environment, else ./.venv when it imports torch
# (carried along, or made here), else python3 (the GPU image's, which holds torch).
#
#   device tool:  command "scripts/device_check.sh", carry ["data/fashion-mnist-gz"], timeout_s 540
#   here, first:  scripts/device_check.sh --stage-data     (Fashion-MNIST's .gz files, 30 MB)
#   here, CPU:    scripts/device_check.sh --dry --out /tmp/device-check
set -u
cd "$(dirname "$0")/.." || exit 1
need='import torch, torchvision, numpy, yaml, tqdm'
if [ -n "${VIRTUAL_ENV:-}" ] && python -c "$need" 2>/dev/null; then
  py=python
elif [ -x .venv/bin/python ] && .venv/bin/python -c "$need" 2>/dev/null; then
  py=.venv/bin/python
elif python3 -c "$need" 2>/dev/null; then
  py=python3
else
  echo "error: no Python here imports torch, torchvision, numpy, yaml and tqdm (active venv, ./.venv or python3); nothing is installed without a network" >&2
  exit 2
fi
exec "$py" -m scripts.device_check "$@"

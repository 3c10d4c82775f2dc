#!/usr/bin/env bash
# Reproduce the paper's tables and figures.
#   bash reproduce.sh --quick            CPU, bundled digits data, every model x method (minutes)
#   bash reproduce.sh                    the paper profile on GPU(s), released hyperparameters
#   bash reproduce.sh --profile NAME     any profile in configs/profiles/ (quick, short, paper, ablation)
# Remaining options go to sweep.py (e.g. --jobs 4, --launcher slurm, --dry-run).
set -euo pipefail
cd "$(dirname "$0")"
profile=paper
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) profile=quick; shift ;;
    --profile) profile="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
source scripts/venv.sh
status=0
python sweep.py "$profile" "${args[@]}" || status=$?
case " ${args[*]:-} " in *" --dry-run "*) exit $status ;; esac
if [ -f report.py ]; then python report.py; fi
exit $status

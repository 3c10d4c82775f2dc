#!/usr/bin/env bash
# Reproduce the paper's tables and figures: bootstrap .venv, run a profile's sweep, report.
#   bash reproduce.sh --quick            CPU, bundled digits data, every model x method (22.8 min on 2 cores)
#   bash reproduce.sh                    the paper profile on GPU(s), released hyperparameters
#   bash reproduce.sh --profile NAME     any profile in configs/profiles/ (quick, digits, short, paper, ablation)
# The report covers exactly that profile's runs: results/<profile>/REPORT.md and tables/,
# figures/<profile>/ at the top level (beside results/). The quick profile, a pipeline check,
# writes its runs and report to the git-ignored scratch/results/ and scratch/figures/ instead
# (its `results:` key), so the committed results/ stays as it is.
# TORCH_INDEX=cpu bash reproduce.sh ...: torch and torchvision from PyTorch's CPU-only index
# into a new .venv (scripts/venv.sh; the default takes PyPI's CUDA build, 5.9 GB).
# Remaining options go to sweep.py, e.g. --jobs 4, --dry-run, --results DIR, or
#   --launcher slurm --partition gpu --time 24:00:00 --gpus 1 --array-parallelism 32
# Finished runs are skipped and unfinished ones resume, so rerunning after a failure or an
# interruption only does what is left. Committed complete runs (results/runs/ without weights)
# count as done: `--profile fashion` trains none of them unless given --retrain. The report is rebuilt even if some runs failed
# (from the runs that finished); the exit status is the sweep's (1: some runs failed or were
# blocked, 2: a bad profile or option), or the report's if that fails.
set -euo pipefail
cd "$(dirname "$0")"
profile=paper
args=()
report_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) profile=quick; shift ;;
    --profile) profile="${2:?--profile needs a name}"; shift 2 ;;
    --results) report_args+=(--results "${2:?--results needs a folder}"); args+=("$1" "$2"); shift 2 ;;
    --results=*) report_args+=("$1"); args+=("$1"); shift ;;
    *) args+=("$1"); shift ;;
  esac
done
source scripts/venv.sh
status=0
python sweep.py "$profile" ${args[@]+"${args[@]}"} || status=$?
[ $status -eq 2 ] && exit 2   # a bad profile or option: nothing ran
case " ${args[*]:-} " in *" --dry-run "*) exit $status ;; esac
python report.py "$profile" ${report_args[@]+"${report_args[@]}"} || status=$?
exit $status

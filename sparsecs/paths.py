"""Every file name of a run folder and of the results tree, in one place (README, "Run folders").

    RESULTS/runs/<run name>/   config.yaml metrics.csv layers.csv summary.json
                               predictions.npy checkpoint.pt model.pt
    RESULTS/runs.csv           one row per finished run (an index; the folders are the truth)
    RESULTS/labels/<data set>.npy   the test set's labels, in its fixed order (the report
                               scores predictions.npy against them: paired tests)

Sweeps write to `results/`; an ad-hoc `python train.py` writes to `scratch/` (git-ignored)
unless it is given --results, so experiments never mix into the committed results.
RunFolderError, the one error for a run file that is missing or damaged, is here too: every
module that reads a run folder raises it, and this one imports nothing of the repository.
"""
import os
import re


RESULTS = "results"     # where sweeps write
SCRATCH = "scratch"     # where ad-hoc train.py runs go by default (git-ignored)

CONFIG, METRICS, LAYERS, SUMMARY = "config.yaml", "metrics.csv", "layers.csv", "summary.json"
CHECKPOINT, CHECKPOINT_PREV, MODEL = "checkpoint.pt", "checkpoint.prev.pt", "model.pt"
# the predicted class of every test image at the final evaluation, in the test set's fixed
# order (uint8; int16 past 256 classes): 10,128 bytes for Fashion-MNIST, committed with the run
PREDICTIONS = "predictions.npy"
LABELS = "labels"       # RESULTS/labels/<data set>.npy: the test labels the predictions are scored on
LOCK = "run.lock"       # held by the one process training the folder
INDEX = "runs.csv"
MARKER = ".sparse-run"  # written by train.py into every run folder it creates
# Temporary files atomic_write leaves when a writer is killed: ".tmp-" + the target's name +
# mkstemp's random letters. Only names of this pattern are removed as stale (a user's own
# .tmp-notes.txt in a run folder is not ours).
STALE_TEMP = re.compile(r"\.tmp-(?:config\.yaml|metrics\.csv|layers\.csv|summary\.json|checkpoint\.pt"
                        r"|predictions\.npy|model(?:\.[a-z]+)?\.pt(?:\.sha256)?|export\.json|\.sparse-run)[a-z0-9_]{1,16}\Z")


class RunFolderError(Exception):
    """One line: which run file is missing or unreadable."""


RETRAIN = "; delete the run folder to retrain it"   # the advice a damaged run file ends with


def path(out, name):
    return os.path.join(out, name)


def run_dir(results, name):
    return os.path.join(results, "runs", name)


def labels_path(results, dataset):
    return os.path.join(results, LABELS, f"{dataset}.npy")


def model_path(run_or_file):
    return path(run_or_file, MODEL) if os.path.isdir(run_or_file) else run_or_file

"""Add `train_acc_final` to finished runs trained before train.py recorded it.

    python -m scripts.backfill_train_acc_final RUN_DIR [RUN_DIR ...]

The collapse rule (criteria.collapsed) reads the final weights' training accuracy; older
summaries only have the last epoch's average (train_acc). For a run whose model.pt is the
file it wrote (size and sha256 as its summary recorded), this measures the number exactly as
train.py does at the end of training (final_eval.final_train_accuracy: the same images, the same
weights with their recalibrated BatchNorm statistics), then adds it to summary.json and to
the run's row of runs.csv. Nothing else in the folder changes; a run that already has the
field, or has no weights here, is left alone and said so.
"""
import os
import sys

import torch

from sparsecs import config as C
from sparsecs import data as D
from sparsecs import distributed as dist_
from sparsecs import fileio
from sparsecs import final_eval
from sparsecs import modelfile
from sparsecs import paths
from sparsecs import runindex
from sparsecs import summaries


def backfill(out, device="cpu"):
    """The measured train_acc_final of run folder `out` (written to its summary and the
    index), or None with the reason printed when the run is left alone."""
    summary = summaries.finished_summary(out)
    if summary is None:
        print(f"{out}: no finished run with its weights here: left alone")
        return None
    if "train_acc_final" in summary:
        print(f"{out}: has train_acc_final already ({summary['train_acc_final']:.2f}): left alone")
        return None
    cfg = C.resolve(C.load_yaml(paths.path(out, paths.CONFIG)))
    dev = torch.device(device)
    data = D.load(cfg["dataset"], cfg["data_dir"], device=dev, download=False, workers=cfg["workers"])
    if cfg["train_subset"]:
        data.subset(cfg["train_subset"])
    model = modelfile.load_model(out, dev)
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    acc = final_eval.final_train_accuracy(cfg, model, data, dev, dist_.Dist())
    fixed = {**summary, "train_acc_final": acc}   # every other field as it was
    results = os.path.dirname(os.path.dirname(os.path.abspath(out)))
    runindex.upsert_row(os.path.join(results, paths.INDEX), fixed)
    fileio.save_json(fixed, paths.path(out, paths.SUMMARY))
    print(f"{out}: train_acc_final {acc:.2f} (last epoch's average {summary['train_acc']:.2f})")
    return acc


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(__doc__.strip().split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    try:
        for out in args:
            backfill(out.rstrip("/"))
    except (paths.RunFolderError, D.DataError, C.ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

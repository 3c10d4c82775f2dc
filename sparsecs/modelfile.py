"""model.pt: what it holds (enough to rebuild the model without the config) and loading it,
checked against the size and sha256 its run recorded.
"""
import os

import torch

from sparsecs import paths
from sparsecs import summaries


def model_file(cfg, num_classes, state_dict):
    """What model.pt holds: enough to rebuild the model without the config."""
    return {"model": cfg["model"], "width": cfg["width"], "num_classes": num_classes,
            "dataset": cfg["dataset"], "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}


def _in_run_folder(p):
    """Whether file `p` lies in a run folder (so that deleting it to retrain is advice to give)."""
    d = os.path.dirname(os.path.abspath(p))
    return os.path.basename(p) == paths.MODEL and any(
        os.path.exists(paths.path(d, n)) for n in (paths.MARKER, paths.CONFIG, paths.SUMMARY))


MODEL_KEYS = ("model", "width", "num_classes", "dataset", "state_dict")


def load_model_file(run_or_file, verify=True):
    """What model.pt holds (model_file), read with weights_only. A model.pt next to a
    summary.json is checked against the size and sha256 the run recorded (verify); a file
    that is not a model.pt of this repository: RunFolderError, one line."""
    p = paths.model_path(run_or_file)
    if not os.path.exists(p):
        raise paths.RunFolderError(f"{p} not found (is the run finished?)")
    ours = _in_run_folder(p)
    what = "delete it to retrain the run" if ours else "not a model.pt written by train.py"
    if verify and os.path.exists(paths.path(os.path.dirname(os.path.abspath(p)), paths.SUMMARY)):
        folder = os.path.dirname(os.path.abspath(p))
        problem = summaries.model_problem(folder, summaries.read_summary(folder))
        if problem:
            raise paths.RunFolderError(f"{problem}; retrain the run (delete {p}) or restore the file")
    try:
        saved = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise paths.RunFolderError(f"{p}: unreadable ({type(e).__name__}); {what}") from None
    missing = [k for k in MODEL_KEYS if not isinstance(saved, dict) or k not in saved]
    if missing or not isinstance(saved["state_dict"], dict):
        raise paths.RunFolderError(f"{p}: not a model file of this version (no {', '.join(missing) or 'state_dict'}"
                             f"); {what}")
    return saved


def load_model(run_or_file, device="cpu"):
    """A finished run's model (a run folder or its model.pt) with its trained sparse weights,
    in eval mode. The forward pass is the one training evaluated (thresholds applied)."""
    from sparsecs import models

    saved = load_model_file(run_or_file)
    p = paths.model_path(run_or_file)
    try:
        model = models.from_saved(saved)
        model.load_state_dict(saved["state_dict"])
    except (ValueError, TypeError, KeyError, RuntimeError) as e:
        raise paths.RunFolderError(f"{p}: does not fit model {saved['model']!r} of this version "
                             f"({' '.join(str(e).split())[:160]})") from None
    return model.to(device).eval()

"""torch.hub entry points: a trained sparse model in one line.

    model = torch.hub.load("path/to/this/repo", "sparse_model", run="RUN_DIR", source="local")
    from hubconf import sparse_model; model = sparse_model("RUN_DIR")

`run` is a finished run folder (or its model.pt), or a csr export of one (export.py --format
csr, e.g. the committed results/fashion/weights/<run>/model.csr.pt, checked against the
sha256 beside it), relative to the caller's working directory. A committed run folder
(results/runs/<run>: its model.pt is not in git) loads from its committed export
(results/<profile>/weights/<run>/model.csr.pt), checked, with one line on stderr saying so. The model comes back with the
run's trained weights (exact zeros included) in eval mode.
"""
import os

# imported now: torch.hub puts this folder on sys.path only while it imports this file, and the
# package's own name keeps the caller's `models` or `paths` modules apart from ours
from sparsecs import modelfile, paths, summaries
from sparsecs.exporting import csr

dependencies = ["torch"]


def sparse_model(run, device="cpu"):
    """The trained model of a finished run folder, a model.pt or a csr export, sparse weights,
    eval mode. A missing or unfinished run, or an altered export, raises paths.RunFolderError
    with a one-line message."""
    path = os.path.abspath(os.fspath(run))
    if not os.path.exists(path):
        raise paths.RunFolderError(f"{run}: no such run folder or model file")
    try:
        if csr.is_csr_export(path):
            return csr.load_csr(path, device)
    except csr.ExportError as e:     # one error type for every kind of `run`
        raise paths.RunFolderError(str(e)) from None
    try:
        committed = csr.load_committed(path, device)
    except csr.ExportError as e:
        raise paths.RunFolderError(str(e)) from None
    if committed is not None:
        return committed[1]
    notes = []
    if os.path.isdir(path) and summaries.finished_summary(path, warn=notes.append) is None:
        missing = [f for f in (paths.SUMMARY, paths.MODEL) if not os.path.exists(os.path.join(path, f))]
        if notes and not missing:   # damaged or altered (a checksum mismatch): say which
            raise paths.RunFolderError(f"{notes[0].removesuffix(': rerunning it')}; retrain "
                                      f"the run or restore the file")
        raise paths.RunFolderError(f"{run}: run not finished (no {' or '.join(missing)}); "
                                  f"finish it with train.py first")
    return modelfile.load_model(path, device)   # checks model.pt against its summary.json

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
import contextlib
import importlib
import os
import sys

dependencies = ["torch"]

_REPO = os.path.dirname(os.path.abspath(__file__))
# the repository's top-level modules and packages: the names sparse_model's imports may use
_OURS = tuple(sorted({n.removesuffix(".py") for n in os.listdir(_REPO)
                      if n.endswith(".py") or os.path.isfile(os.path.join(_REPO, n, "__init__.py"))}))


@contextlib.contextmanager
def _repo_modules():
    """Import this repository's modules even when the caller runs elsewhere or already
    imported other modules of those names (a `models` or `paths` module is common): those are
    set aside while the model is built and put back afterwards."""
    def ours(mod):
        f = getattr(mod, "__file__", None) or ""
        return os.path.abspath(f).startswith(_REPO + os.sep)

    before = {k: v for k, v in sys.modules.items() if k.split(".")[0] in _OURS}
    hidden = {k: v for k, v in before.items() if not ours(v)}
    for k in hidden:
        del sys.modules[k]
    sys.path.insert(0, _REPO)
    try:
        yield
    finally:
        sys.path.remove(_REPO)
        if hidden:      # put sys.modules back exactly as the caller had it
            for k in [k for k in sys.modules if k.split(".")[0] in _OURS]:
                del sys.modules[k]
            sys.modules.update(before)


def sparse_model(run, device="cpu"):
    """The trained model of a finished run folder, a model.pt or a csr export, sparse weights,
    eval mode. A missing or unfinished run, or an altered export, raises paths.RunFolderError
    with a one-line message."""
    path = os.path.abspath(os.fspath(run))
    with _repo_modules():
        paths = importlib.import_module("paths")
        summaries = importlib.import_module("summaries")
        modelfile = importlib.import_module("modelfile")
        if not os.path.exists(path):
            raise paths.RunFolderError(f"{run}: no such run folder or model file")
        csr = importlib.import_module("exporting.csr")
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

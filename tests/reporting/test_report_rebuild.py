"""A rebuild of a report gives the same bytes wherever it runs (issue 38 item 5): REPORT.md
says nothing about the machine building it, such as which runs' weights it holds."""
import glob
import os

from sparsecs import paths
import report
from tests.reporting.test_report import make


def _build(prof, results, out):
    report.build(prof, results, str(out))
    return (out / "REPORT.md").read_bytes()


def test_report_md_does_not_depend_on_the_weights_this_machine_holds(tmp_path):
    prof, results = make(tmp_path, seeds="[0]", sparse=False)
    folders = sorted(glob.glob(os.path.join(results, "runs", "*")))
    assert folders
    for f in folders:                       # a fresh clone: committed results, no weights
        for name in (paths.MODEL, paths.CHECKPOINT):
            if os.path.exists(paths.path(f, name)):
                os.remove(paths.path(f, name))
    bare = _build(prof, results, tmp_path / "a")
    for f in folders:                       # the machine that trained them: every model.pt
        with open(paths.path(f, paths.MODEL), "wb") as fh:
            fh.write(b"weights")
    assert _build(prof, results, tmp_path / "b") == bare
    assert b"this machine" not in bare

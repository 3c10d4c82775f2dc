"""Issue 37, item 5: the quick profile (a pipeline check) writes where the evidence is not.
Its runs, runs.csv, logs, report and figures go under the git-ignored scratch/, so that
`bash reproduce.sh --quick` leaves results/ and the tracked results/runs.csv as committed."""
import os
import shutil
import subprocess
import uuid

import pytest

import report
import sweep
from sparsecs.sweeping.profile import profile_results
from tests import synthetic
from tests.conftest import StandInLauncher

REPO = sweep.REPO
SGD = os.path.join(REPO, "configs", "quick", "sgd.yaml")


def tree(folder):
    """{relative path: bytes} of every file under folder (nothing if it does not exist)."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, folder)] = open(p, "rb").read()
    return out


def test_quick_defaults_to_scratch_results_which_git_ignores():
    assert profile_results("quick") == os.path.join(REPO, "scratch", "results")
    assert profile_results("fashion") == "results"        # the evidence stays where it is
    if shutil.which("git") is None or not os.path.exists(os.path.join(REPO, ".git")):
        pytest.skip("not a git checkout")
    for p in ("scratch/results/runs.csv", "scratch/results/runs/x-1234abcd/summary.json",
              "scratch/results/quick/REPORT.md", "scratch/figures/quick/tradeoff_col.pdf"):
        assert subprocess.run(["git", "check-ignore", "-q", p], cwd=REPO).returncode == 0, p


def test_a_profile_with_results_sweeps_and_reports_there_leaving_results_alone(tmp_path, monkeypatch, capsys):
    folder = f"scratch/test-{uuid.uuid4().hex[:8]}/results"     # repository-relative, as quick's
    prof = tmp_path / "p.yaml"
    prof.write_text(f"evidence: none\nresults: {folder}\nseeds: [0]\n"
                    f"overrides: [epochs=1, model=resnet20, width=0.125]\n"
                    f"runs:\n  - name: sgd\n    config: {SGD}\n")
    where = os.path.join(REPO, folder)
    before = tree(os.path.join(REPO, "results"))
    started = []

    def make(results, *a):
        launcher = StandInLauncher(results, lambda r, s: synthetic.write_run(r, s.name, s.cfg))
        launcher.started = started
        return launcher
    monkeypatch.setattr(sweep, "LocalLauncher", make)
    try:
        assert sweep.main([str(prof)]) == 0                   # no --results
        assert len(started) == 1
        assert os.listdir(os.path.join(where, "runs")) == started
        assert started[0] in open(os.path.join(where, "runs.csv")).read()
        capsys.readouterr()
        assert report.main([str(prof)]) == 0                  # no --results: the same folder
        assert os.path.exists(os.path.join(where, "p", "REPORT.md"))
        assert os.path.isdir(os.path.join(os.path.dirname(where), "figures", "p"))
        assert os.path.join(where, "p", "REPORT.md") in capsys.readouterr().out
        assert tree(os.path.join(REPO, "results")) == before  # nothing added, nothing changed
    finally:
        shutil.rmtree(os.path.dirname(where), ignore_errors=True)


@pytest.mark.parametrize("value", ["/tmp/abs", "3", "''", "[a]"])
def test_a_bad_results_key_is_one_line_and_exit_2(value, tmp_path, capsys):
    prof = tmp_path / "p.yaml"
    prof.write_text(f"results: {value}\nruns:\n  - name: sgd\n    config: {SGD}\n")
    assert sweep.main([str(prof), "--dry-run", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: p.yaml: results must be a folder relative to the repository") and \
        len(err.strip().splitlines()) == 1

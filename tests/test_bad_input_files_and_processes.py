"""Hostile input, part three (issue 36): the cases a new probe broke, each in its smallest
reproduction. As tests/test_bad_input.py: one line on stderr (no traceback), the documented
exit status, and every file that existed before byte-identical after."""
import errno
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile

import pytest
import torch

from sparsecs import cli
from sparsecs import config as C
from sparsecs import fileio
from sparsecs import paths
from sparsecs import summaries
import train
from tests.test_bad_input import (SGD, TINY, _one_thread, one_line,  # noqa: F401 (fixtures)
                                profile_of_the_run, run, snapshot, train_args, trained)

from tests import REPO


# ----------------------------------------------------------------------------- 1-2: export --out

@pytest.mark.parametrize("name", [paths.MODEL, paths.CHECKPOINT])
def test_export_never_replaces_another_runs_files(run, capsys, name):
    import export

    results, folder = run
    other = os.path.join(results, "runs", "another-run")
    shutil.copytree(folder, other)
    if not os.path.exists(os.path.join(other, name)):
        open(os.path.join(other, name), "wb").write(b"a checkpoint\n")
    before = snapshot(results)
    for force in ([], ["--force"]):   # not even with --force: a run's files are never an export's
        assert export.main([folder, "--format", "csr", "--out", os.path.join(other, name), *force]) == 2
        line = one_line(capsys)
        assert f"{name} of the run folder" in line and "nothing written" in line
    assert snapshot(results) == before


def test_export_never_replaces_a_users_file_without_force(run, tmp_path, capsys):
    import export

    results, folder = run
    mine, record = tmp_path / "mine.pt", tmp_path / "mine.pt.sha256"
    mine.write_text("precious\n")
    record.write_text("my notes\n")
    alone = tmp_path / "alone.pt.sha256"          # a record without the file: not ours either
    alone.write_text("keep\n")
    before = snapshot(tmp_path)
    for out in (mine, tmp_path / "alone.pt"):
        assert export.main([folder, "--format", "csr", "--out", str(out)]) == 2
        line = one_line(capsys)
        assert "did not write" in line and "--force" in line
    assert snapshot(tmp_path) == before
    # an earlier export of ours is replaced (exporting again); --force replaces the user's file
    new = tmp_path / "new.pt"
    assert export.main([folder, "--format", "csr", "--out", str(new)]) == 0
    assert export.main([folder, "--format", "dense", "--out", str(new)]) == 0
    assert export.main([folder, "--format", "csr", "--out", str(mine), "--force"]) == 0
    assert mine.read_bytes() != b"precious\n" and export.verify(str(mine))[0] == "csr"


# ----------------------------------------------------------------------------- 3, 7: report --out

def test_report_never_overwrites_a_report_it_did_not_write(run, tmp_path, capsys):
    import report

    results, folder = run
    prof = profile_of_the_run(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "REPORT.md").write_text("# my thesis notes\n")
    (b / "tables").mkdir(parents=True)
    (b / "tables" / "points.md").write_text("my table\n")
    before = snapshot(tmp_path)
    for out in (a, b):
        assert report.main([prof, "--results", results, "--out", str(out)]) == 2
        line = one_line(capsys)
        assert str(out) in line and "--force" in line and "nothing written" in line
    assert snapshot(tmp_path) == before
    # a new folder is ours: written, then written again (its own REPORT.md); --force overwrites
    for out, extra in ((tmp_path / "c", []), (tmp_path / "c", []), (a, ["--force"])):
        assert report.main([prof, "--results", results, "--out", str(out), *extra]) == 0
        assert (out / "REPORT.md").read_text().startswith("# Results: profile `p`")


def test_two_results_folders_never_share_figures():
    import report

    # beside a folder named results (the repository's layout) as before; else inside RESULTS
    assert report.figures_dir("results", "fashion") == os.path.join("figures", "fashion")
    assert report.figures_dir("/d/results", "P") == "/d/figures/P"
    assert report.figures_dir("/d/a", "P") == "/d/a/figures/P"
    assert report.figures_dir("/d/b/", "P") == "/d/b/figures/P"


# ----------------------------------------------------------------------------- 4: export checksum

def flip_a_tensor_byte(path):
    """Flip one bit inside the first tensor record of a torch zip file (not its padding)."""
    b = bytearray(open(path, "rb").read())
    info = next(i for i in zipfile.ZipFile(path).infolist() if "/data/" in i.filename)
    n, e = struct.unpack("<HH", b[info.header_offset + 26:info.header_offset + 30])
    b[info.header_offset + 30 + n + e + 3] ^= 0x40
    open(path, "wb").write(b)


@pytest.mark.parametrize("fmt", ["csr", "dense"])
def test_an_export_without_its_sha256_is_checked_inside(run, tmp_path, capsys, fmt):
    import eval as E
    import export
    import hubconf

    results, folder = run
    export.export(folder, fmt, out=str(tmp_path / "x.pt"), batch=16)
    copy = tmp_path / "copy" / f"model.{fmt}.pt"      # copied alone: no .sha256, no export.json
    copy.parent.mkdir()
    shutil.copy(tmp_path / "x.pt", copy)
    load = export.load_csr if fmt == "csr" else export.load_dense
    assert export.verify(str(copy))[0] == fmt and not load(str(copy)).training
    flip_a_tensor_byte(copy)
    with pytest.raises(export.ExportError, match="checksum stored inside it"):
        load(str(copy))
    assert export.main(["--check", str(copy)]) == 1
    assert "altered or damaged" in one_line(capsys)
    if fmt == "csr":
        assert E.main([str(copy)]) == 1
        assert "altered or damaged" in one_line(capsys)
        with pytest.raises(paths.RunFolderError, match="altered or damaged"):
            hubconf.sparse_model(str(copy))


# ----------------------------------------------------------------------------- 5: init_from key

def test_init_from_a_file_is_keyed_by_its_content(run, tmp_path):
    results, folder = run
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "x" / "w.pt").write_bytes(b"weights one")
    (tmp_path / "y" / "w.pt").write_bytes(b"weights two")
    (tmp_path / "y" / "renamed.pt").write_bytes(b"weights one")
    import hashlib
    key = {p: C.init_key(str(tmp_path / p)) for p in ("x/w.pt", "y/w.pt", "y/renamed.pt")}
    assert key["x/w.pt"] == "sha256:" + hashlib.sha256(b"weights one").hexdigest()
    assert key["x/w.pt"] != key["y/w.pt"] and key["x/w.pt"] == key["y/renamed.pt"]
    # a run folder and its model.pt keep the folder's name (every committed run's hash)
    name = os.path.basename(folder)
    assert C.init_key(folder) == C.init_key(os.path.join(folder, paths.MODEL)) == name
    assert C.init_key(os.path.join(results, "runs", "not-there-yet")) == "not-there-yet"
    cfgs = [C.build(SGD, TINY + [f"init_from={tmp_path / p}"]) for p in ("x/w.pt", "y/w.pt")]
    assert C.config_hash(cfgs[0]) != C.config_hash(cfgs[1])


# ----------------------------------------------------------------------------- 6: one rule

def test_a_metrics_csv_with_a_row_too_many_is_neither_finished_nor_complete(run, tmp_path, capsys):
    import sweep
    import train
    from sparsecs.reporting import load

    results, folder = run
    p = os.path.join(folder, paths.METRICS)
    good = open(p, "rb").read()
    open(p, "ab").write(good.splitlines(keepends=True)[-1])
    notes = []
    assert summaries.finished_summary(folder, warn=notes.append) is None
    assert notes == [f"{p}: more than 1 rows for the 1 epochs the run trained: rerunning it"]
    assert summaries.complete_summary(folder) is None
    assert load.incomplete(results, [os.path.basename(folder)]) == [
        f"{os.path.basename(folder)}: {p}: more than 1 rows for the 1 epochs the run trained"]
    capsys.readouterr()
    assert sweep.main([profile_of_the_run(tmp_path), "--results", results, "--dry-run"]) == 0
    assert "todo" in capsys.readouterr().out
    assert train.main(train_args("--results", results)) == 0            # train repairs it
    assert open(p, "rb").read() == good and summaries.finished_summary(folder) is not None


def test_a_huge_metrics_csv_is_counted_without_reading_it_all(run):
    results, folder = run
    p = os.path.join(folder, paths.METRICS)
    row = open(p).read().splitlines()[-1] + "\n"
    with open(p, "a") as f:
        f.write(row * 300_000)
    t = time.time()
    assert summaries.complete_summary(folder) is None
    assert summaries.metrics_rows(folder, most=2) == 2 and time.time() - t < 2


# ----------------------------------------------------------------------------- 8-9: sweep

@pytest.mark.parametrize("where", ["--set", "overrides", "grid"])
def test_a_seed_the_profile_would_replace_is_refused(tmp_path, capsys, where):
    import sweep

    p = tmp_path / "p.yaml"
    extra = {"overrides": "    overrides: [seed=7]\n", "grid": "    grid: {seed: [7]}\n"}.get(where, "")
    p.write_text(f"runs:\n  - name: sgd\n    config: {SGD}\n{extra}")
    argv = [str(p), "--results", str(tmp_path / "res"), "--dry-run"]
    assert sweep.main(argv + (["--set", "seed=7"] if where == "--set" else [])) == 2
    line = one_line(capsys)
    assert "seed" in line and "seeds" in line
    assert not (tmp_path / "res").exists()


def test_a_profile_over_the_size_limit_needs_the_flag(tmp_path, capsys):
    import sweep

    p = tmp_path / "big.yaml"
    axis = ", ".join(str(i) for i in range(1, 1001))
    p.write_text(f"runs:\n  - name: sgd\n    config: {SGD}\n    grid: {{train_subset: [{axis}], "
                 f"bn_recal: [{axis}]}}\n")
    t = time.time()
    assert sweep.main([str(p), "--results", str(tmp_path / "res"), "--dry-run"]) == 2
    line = one_line(capsys)
    assert "more than 2,000 runs" in line and "--max-runs 1000000" in line
    assert time.time() - t < 20 and not (tmp_path / "res").exists()
    p.write_text(f"runs:\n  - name: sgd\n    config: {SGD}\n    grid: {{train_subset: [1, 2, 3]}}\n")
    assert sweep.main([str(p), "--results", str(tmp_path / "res"), "--dry-run", "--max-runs", "2"]) == 2
    assert "--max-runs 3" in one_line(capsys)
    assert sweep.main([str(p), "--results", str(tmp_path / "res"), "--dry-run", "--max-runs", "3"]) == 0


# ----------------------------------------------------------------------------- 10: identity values

@pytest.mark.parametrize("value", ["identity.calibration_round=abc", "identity.calibration_round=.inf",
                                   "identity.calibration_round=-1", "identity.calibration_target=abc",
                                   "identity.calibration_target=[1,2]", "identity.calibration_target=2"])
def test_a_bad_identity_number_is_one_line_exit_2(tmp_path, capsys, value):
    import train

    assert train.main([SGD, *TINY, value, "--quiet", "--results", str(tmp_path)]) == 2
    line = one_line(capsys)
    assert line.startswith("config error: ") and value.split("=")[0] in line
    assert os.listdir(tmp_path) == []


def test_good_identity_numbers_are_kept():
    cfg = C.build(SGD, TINY + ["identity.calibration_round=3", "identity.calibration_target=0.9"])
    assert cfg["identity"]["calibration_round"] == 3 and cfg["identity"]["calibration_target"] == 0.9


# ----------------------------------------------------------------------------- 11-12: signals, pipes

@pytest.fixture
def keep_sigterm():
    old = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, old)


@pytest.mark.parametrize("tool,target", [("eval", "evaluate_file"), ("export", "export"),
                                         ("report", "build"), ("sweep", "expand")])
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_every_tool_ends_an_interrupt_in_one_line_130(run, tmp_path, monkeypatch, capsys, keep_sigterm,
                                                      tool, target, how):
    import importlib

    mod = importlib.import_module(tool)
    results, folder = run

    def interrupted(*a, **k):
        os.kill(os.getpid(), getattr(signal, how))
        time.sleep(5)     # the signal arrives first
        raise AssertionError("not interrupted")
    monkeypatch.setattr(mod, target, interrupted)
    argv = {"eval": [folder], "export": [folder, "--format", "csr"],
            "report": [profile_of_the_run(tmp_path), "--results", results, "--out", str(tmp_path / "rep")],
            "sweep": [profile_of_the_run(tmp_path), "--results", results]}[tool]
    before = snapshot(results)
    # a shell's background job starts with SIGINT ignored: Ctrl-C's own handler here
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert cli.run(lambda: mod.main(argv), f"{tool}.py") == 130
    finally:
        signal.signal(signal.SIGINT, old_int)
    assert "interrupted" in one_line(capsys)
    assert snapshot(results) == before


def test_a_closed_pipe_ends_the_dry_run_quietly(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(f"seeds: [{', '.join(map(str, range(1500)))}]\nruns:\n  - name: sgd\n    config: {SGD}\n")
    proc = subprocess.Popen([sys.executable, "sweep.py", str(p), "--dry-run", "--results", str(tmp_path / "r")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip()   # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == "", err   # 1500 lines do not fit after the reader left


def test_sweep_results_that_is_a_file_is_exit_2(tmp_path, capsys):
    import sweep

    f = tmp_path / "afile"
    f.write_text("mine\n")
    for extra in ([], ["--dry-run"], ["--reindex"]):
        assert sweep.main(["quick", "--results", str(f), *extra]) == 2
        assert "is a file, not a results folder" in one_line(capsys)
    assert f.read_text() == "mine\n" and os.listdir(tmp_path) == ["afile"]


# ----------------------------------------------------------------------------- 54: a full disk names the file

NO_SPACE = os.strerror(errno.ENOSPC)


def full_disk(monkeypatch, name, where):
    """ENOSPC when file `name` (a basename, or a predicate on it) is written: at fsync, where
    write(2)'s error names no file (the temporary atomic_write writes, `.tmp-NAME` + 8 random
    characters, is matched), or at os.replace, where the error names the temporary file and the
    target. Returns the list the path of the file that failed is appended to."""
    hit, matches = [], name if callable(name) else (lambda b: b == name)
    if where == "fsync":
        real = os.fsync

        def fsync(fd):
            p = os.readlink(f"/proc/self/fd/{fd}")
            b = os.path.basename(p)
            if b.startswith(".tmp-") and matches(b[5:-8]):
                hit.append(os.path.join(os.path.dirname(p), b[5:-8]))
                raise OSError(errno.ENOSPC, NO_SPACE)
            return real(fd)
        monkeypatch.setattr(os, "fsync", fsync)
    else:
        real = os.replace

        def replace(src, dst, **kw):
            if matches(os.path.basename(dst)):
                hit.append(os.fspath(dst))
                raise OSError(errno.ENOSPC, NO_SPACE, src, dst)
            return real(src, dst, **kw)
        monkeypatch.setattr(os, "replace", replace)
    return hit


def names_the_file(line, hit, prefix="error: "):
    """The line is PREFIX 'could not write FILE: No space left on device', FILE the one that failed."""
    assert len(hit) == 1, hit
    m = re.match(re.escape(prefix) + r"could not write (.+?): " + re.escape(NO_SPACE), line)
    assert m and os.path.realpath(m.group(1)) == os.path.realpath(hit[0]), line


@pytest.mark.parametrize("name,where", [(paths.METRICS, "fsync"), (paths.INDEX, "replace")])
def test_train_on_a_full_disk_names_the_file(tmp_path, monkeypatch, capsys, name, where):
    results = tmp_path / "res"
    hit = full_disk(monkeypatch, name, where)
    assert train.main(train_args("--results", str(results))) == 1
    line = one_line(capsys)
    names_the_file(line, hit)
    assert line.endswith("(nothing written is half-written; fix it and rerun)")
    assert not [f for f in snapshot(results) if ".tmp-" in f]   # no temporary file left


def test_sweep_reindex_on_a_full_disk_names_the_file(run, monkeypatch, capsys):
    import sweep

    results, _ = run
    before = snapshot(results)
    hit = full_disk(monkeypatch, paths.INDEX, "fsync")
    assert sweep.main(["--reindex", "--results", results]) == 1
    names_the_file(one_line(capsys), hit)
    after = snapshot(results)
    after.pop(os.path.join(results, paths.INDEX + ".lock"), None)   # the lock's side file
    before.pop(os.path.join(results, paths.INDEX + ".lock"), None)
    assert after == before   # the index is whole: the old one


@pytest.mark.parametrize("name,where", [("out.pt", "fsync"), ("out.pt.sha256", "fsync"),
                                        ("export.json", "replace")])
def test_export_on_a_full_disk_names_the_file(run, tmp_path, monkeypatch, capsys, name, where):
    import export

    _, folder = run
    hit = full_disk(monkeypatch, name, where)
    assert export.main([folder, "--format", "csr", "--out", str(tmp_path / "out.pt")]) == 1
    names_the_file(one_line(capsys), hit, prefix="export.py: error: ")


@pytest.mark.parametrize("name,where", [("REPORT.md", "fsync"), (lambda b: b.endswith(".csv"), "replace")],
                         ids=["REPORT.md", "a-table"])
def test_report_on_a_full_disk_names_the_file(run, tmp_path, monkeypatch, capsys, name, where):
    import report

    results, _ = run
    hit = full_disk(monkeypatch, name, where)
    assert report.main([profile_of_the_run(tmp_path), "--results", results, "--out", str(tmp_path / "rep")]) == 1
    names_the_file(one_line(capsys), hit)


def test_a_figure_on_a_full_disk_names_the_file_and_is_written_as_before(tmp_path, monkeypatch):
    """Figures go through atomic_write now (a profile of one run draws none: called directly);
    the bytes are savefig's own to a path, so the committed figures do not change."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sparsecs.reporting import figures

    fig = plt.figure(figsize=(2, 2))
    fig.gca().plot([0, 1], [1, 0])
    kw = {"png": {"metadata": {"Software": None}}, "pdf": {"metadata": {"CreationDate": None, "Producer": None}}}
    for ext in ("png", "pdf"):
        fig.savefig(tmp_path / f"direct.{ext}", dpi=figures.DPI, **kw[ext])
        fileio.save_figure(fig, str(tmp_path / f"atomic.{ext}"), dpi=figures.DPI, **kw[ext])
        assert (tmp_path / f"direct.{ext}").read_bytes() == (tmp_path / f"atomic.{ext}").read_bytes()
    hit = full_disk(monkeypatch, "fig.png", "fsync")
    with pytest.raises(OSError) as e:
        figures._save(fig, str(tmp_path / "figs"), "fig")
    names_the_file(f"error: {fileio.os_error_text(e.value)}", hit)
    assert os.listdir(tmp_path / "figs") == []   # no half figure, no temporary file


# ----------------------------------------------------------------------------- 55: two sweeps, a killed sweep

def test_a_run_another_process_holds_is_held_not_failed(tmp_path, capsys):
    """A second sweep of the profile meets the run the first trains: train.py exits 4, the
    sweep says who holds it and counts it apart, not as a failure (exit 0)."""
    import sweep

    results = tmp_path / "res"
    prof = profile_of_the_run(tmp_path)
    name = C.run_name(C.build(SGD, TINY))
    folder = paths.run_dir(str(results), name)
    with fileio.run_lock(folder):   # this process is the first sweep's train.py
        assert sweep.main([prof, "--results", str(results), "--jobs", "1", "--threads", "1"]) == 0
    out = capsys.readouterr()
    why = f"held by another process (PID {os.getpid()}), skipped"
    assert f"held {name} (" in out.out and out.out.count(why) == 2, out.out   # progress line, table
    assert f"  held: {name}: {why}" in out.out
    assert "| held     |    1 |" in out.out and "| failed   |    0 |" in out.out
    assert "FAILED" not in out.out and out.err == ""
    assert not os.path.exists(paths.path(folder, paths.SUMMARY))


KILLED_SWEEP = """
import sys
from sparsecs import cli
from sparsecs.sweeping import launch as L
L.train_argv = lambda spec, results: [sys.executable, "-c", {child!r}, {rec!r}, spec.name, "120"]
import sweep
sys.exit(cli.run(sweep.main, "sweep.py"))
"""


def test_a_sweep_killed_by_sigkill_leaves_no_child_running(tmp_path):
    """PR_SET_PDEATHSIG: the kernel sends the child SIGTERM when the sweep dies, SIGKILL too."""
    from tests.test_bad_input import CHILD, alive, two_seeds

    rec = tmp_path / "rec"
    rec.mkdir()
    driver = KILLED_SWEEP.format(repo=REPO, child=CHILD, rec=str(rec))
    proc = subprocess.Popen([sys.executable, "-c", driver, two_seeds(tmp_path), "--results",
                             str(tmp_path / "res"), "--jobs", "1", "--threads", "1"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not any(rec.glob("*.pid")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        pid = int(next(rec.glob("*.pid")).read_text())
        with open(f"/proc/{pid}/stat") as f:   # the sweep's own child
            assert int(f.read().rsplit(")", 1)[1].split()[1]) == proc.pid
    finally:
        proc.kill()   # SIGKILL
        proc.wait()
    deadline = time.time() + 10
    while alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    orphan = alive(pid)
    if orphan:
        os.kill(pid, signal.SIGKILL)   # never leave it behind
    assert not orphan

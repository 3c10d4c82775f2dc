"""Issue 37 item 7 and issue 36's leftovers, each in its smallest reproduction: run.lock does
not stay in a finished run folder (and a live holder's lock is never removed); a full disk
under sparse_infer.py --json, or under the log train.py's own output goes to, ends in one line
naming the file."""
import errno
import fcntl
import os
import subprocess
import sys

import pytest

from sparsecs import fileio
from sparsecs import paths
from sparsecs import sparse_infer as S
import train
from tests.test_bad_input import SGD, TINY, _one_thread, run, trained  # noqa: F401 (fixtures)
from tests.test_bad_input_files_and_processes import NO_SPACE, full_disk, names_the_file


# ----------------------------------------------------------------------------- run.lock

def test_a_finished_run_leaves_no_lock(trained):
    _, folder = trained
    assert os.path.exists(os.path.join(folder, paths.SUMMARY))
    assert not os.path.exists(os.path.join(folder, paths.LOCK))


def test_the_lock_stays_while_the_run_is_unfinished_and_goes_once_it_is(tmp_path):
    out = str(tmp_path / "r")
    with fileio.run_lock(out):
        pass
    assert os.path.exists(os.path.join(out, paths.LOCK))     # no summary: a resumable run's lock
    with fileio.run_lock(out):
        open(os.path.join(out, paths.SUMMARY), "w").write("{}")
    assert not os.path.exists(os.path.join(out, paths.LOCK))


def test_another_live_processs_lock_is_never_removed(run):
    """A finished folder whose lock another process holds (a second train.py, pid in it): our
    attempt is refused and its lock file stays, with its pid."""
    _, folder = run
    lock = os.path.join(folder, paths.LOCK)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"f = open({lock!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX); f.write(str(os.getpid())); f.flush()\n"
        "print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(fileio.LockedError, match=f"pid {holder.pid}"):
            with fileio.run_lock(folder):
                pass
        assert open(lock).read() == str(holder.pid)
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_removed_as_it_was_taken_is_taken_again_at_its_path(tmp_path, monkeypatch):
    """The holder unlinks run.lock between our open and our flock: we must lock the file now at
    the path (else a third process could lock a new run.lock beside us)."""
    out = tmp_path / "r"
    out.mkdir()
    real_flock, calls = fcntl.flock, []

    def flock(f, op):
        calls.append(op)
        if len(calls) == 1:      # the first file we opened disappears before we lock it
            os.unlink(out / paths.LOCK)
        return real_flock(f, op)
    monkeypatch.setattr(fcntl, "flock", flock)
    with fileio.run_lock(str(out)):
        # (the old code held the unlinked file: no run.lock at the path for others to meet)
        assert (out / paths.LOCK).read_text() == str(os.getpid())
    assert len(calls) == 2


# ----------------------------------------------------------------------------- full disks

def test_sparse_infer_json_on_a_full_disk_is_one_line_naming_the_file(run, tmp_path, monkeypatch, capsys):
    _, folder = run
    hit = full_disk(monkeypatch, "plan.json", "fsync")
    assert S.main([folder, "--batch", "2", "--repeats", "1", "--json", str(tmp_path / "plan.json")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "kernel unavailable" not in ln]
    assert len(lines) == 1, err
    names_the_file(lines[0], hit, prefix="sparse_infer.py: error: ")
    assert not os.path.exists(tmp_path / "plan.json")


class FullLog:
    """train.py's stderr redirected to a log on a disk that fills up: every write fails with
    ENOSPC (as write(2) reports it: no file name) but the last line, which the test reads."""

    def __init__(self, path):
        self.name, self.f, self.last = str(path), open(path, "w"), False

    def write(self, text):
        self.last = self.last or text.startswith("error:")     # (print writes "\n" apart)
        if not self.last:
            raise OSError(errno.ENOSPC, NO_SPACE)
        return self.f.write(text)

    def flush(self):
        self.f.flush()

    def isatty(self):
        return False

    def fileno(self):
        return self.f.fileno()


def test_train_output_on_a_full_disk_names_the_log(tmp_path, monkeypatch):
    log = FullLog(tmp_path / "train.log")
    monkeypatch.setattr(sys, "stderr", log)
    assert train.main([SGD, *TINY, "--results", str(tmp_path / "res")]) == 1
    log.f.close()
    text = (tmp_path / "train.log").read_text()
    assert text.startswith(f"error: could not write {log.name}: {NO_SPACE}"), text
    assert text.count("\n") == 1

"""Nothing lost, nothing silent: damaged run files, a second process on one run folder,
an index row that could not be written, file modes."""
import os
import stat
import subprocess
import sys
import time

import pytest
import torch

from sparsecs import config as C
from sparsecs import fileio
from sparsecs import paths
from sparsecs import runindex
from sparsecs import summaries
import train
from tests import REPO


def cfg_for(epochs=2, *extra):
    return C.build(None, ["model=resnet20", "width=0.125", f"epochs={epochs}", "device=cpu",
                          "train_subset=256", *extra])


def weights(folder):
    return torch.load(os.path.join(folder, paths.MODEL), weights_only=True)["state_dict"]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, train_then_crash):
    cfg = cfg_for(3)
    straight = str(tmp_path / "straight")
    train.train(cfg, out=straight, results=str(tmp_path), quiet=True)
    out = str(tmp_path / "crashed")
    train_then_crash(cfg_for(3), out, str(tmp_path))       # epoch 0 checkpointed
    # as if a later epoch's write was cut short: the newest checkpoint damaged, the one
    # before it intact
    ck = os.path.join(out, paths.CHECKPOINT)
    prev = os.path.join(out, paths.CHECKPOINT_PREV)
    good = open(ck, "rb").read()
    open(prev, "wb").write(good)
    open(ck, "wb").write(good[: len(good) // 3])           # newest one truncated
    s = train.train(cfg, out=out, results=str(tmp_path), quiet=True)
    assert s["epochs"] == 3 and same(weights(straight), weights(out))


def test_both_checkpoints_damaged_is_one_line_naming_them(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / paths.MARKER).write_text("")                     # a run folder (train.py made it)
    (out / paths.CHECKPOINT).write_bytes(b"garbage")
    (out / paths.CHECKPOINT_PREV).write_bytes(b"\x00" * 10)
    with pytest.raises(train.RunError, match="unreadable \\(damaged\\); delete them") as e:
        train.train(cfg_for(), out=str(out), quiet=True)
    assert str(out / paths.CHECKPOINT) in str(e.value) and "\n" not in str(e.value)


def test_truncated_model_or_damaged_summary_is_not_finished_and_reruns(tmp_path):
    cfg = cfg_for()
    s = train.train(cfg, results=str(tmp_path), quiet=True)
    folder = paths.run_dir(str(tmp_path), s["run"])
    full = weights(folder)
    m = os.path.join(folder, paths.MODEL)
    open(m, "r+b").truncate(100)
    assert summaries.finished_summary(folder, warn=lambda _: None) is None
    train.train(cfg, results=str(tmp_path), quiet=True)       # resumes at the end, rewrites
    assert same(full, weights(folder))
    open(os.path.join(folder, paths.SUMMARY), "w").write("{not json")
    notes = []
    assert summaries.finished_summary(folder, warn=notes.append) is None and "summary.json" in notes[0]
    again = train.train(cfg, results=str(tmp_path), quiet=True)
    assert again["test_acc"] == s["test_acc"] and summaries.finished_summary(folder) is not None


def test_a_row_that_could_not_be_written_is_retried(tmp_path):
    cfg = cfg_for()
    results = tmp_path / "res"
    (results / paths.INDEX).mkdir(parents=True)           # runs.csv cannot be written
    with pytest.raises(OSError):
        train.train(cfg, results=str(results), quiet=True)
    folder = paths.run_dir(str(results), C.run_name(cfg))
    assert summaries.finished_summary(folder) is None            # not "finished, skipped" next time
    (results / paths.INDEX).rmdir()
    s = train.train(cfg, results=str(results), quiet=True)
    assert s["run"] in (results / paths.INDEX).read_text()


def test_a_second_process_on_the_same_run_exits_at_once(tmp_path):
    args = [sys.executable, "train.py", "configs/quick/sgd.yaml", "model=resnet20", "width=0.25",
            "epochs=500", "train_subset=512", "--quiet", "--out", str(tmp_path / "run"),
            "--results", str(tmp_path)]
    first = subprocess.Popen(args, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "run" / paths.LOCK).exists() or not (tmp_path / "run" / paths.LOCK).read_text():
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.05)
        second = subprocess.run(args, capture_output=True, text=True, timeout=600)
        # it did not wait for the first to finish (a wall-clock bound here failed on a loaded machine)
        assert first.poll() is None
        assert second.returncode == 4 and f"pid {first.pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.terminate()
        _, err = first.communicate(timeout=60)
    # SIGTERM stops at a clean point with one line, and the run resumes later
    assert first.returncode == 130 and err.decode().strip().splitlines()[-1].startswith("interrupted")


def test_written_files_follow_the_umask(tmp_path):
    fileio.atomic_write(str(tmp_path / "a.txt"), "x")
    mode = stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode)
    assert mode == 0o666 & ~fileio._UMASK       # not mkstemp's 0600


def test_stale_temp_files_are_removed_when_the_run_starts(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".tmp-checkpoint.ptabc").write_bytes(b"half a checkpoint")
    train.train(cfg_for(1), out=str(out), quiet=True)
    assert not any(p.name.startswith(".tmp-") for p in out.iterdir())


def test_a_killed_sweep_takes_its_runs_with_it(tmp_path):
    prof = tmp_path / "p.yaml"
    import sweep

    prof.write_text(f"runs:\n  - name: sgd\n    config: {sweep.REPO}/configs/quick/sgd.yaml\n"
                    f"    overrides: [model=resnet20, width=0.25, epochs=50, train_subset=512]\n")
    results = tmp_path / "res"
    p = subprocess.Popen([sys.executable, os.path.join(sweep.REPO, "sweep.py"), str(prof), "--jobs", "1",
                          "--results", str(results)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    lock = None
    while lock is None or not lock.read_text().strip():
        assert p.poll() is None and time.time() < deadline
        found = list(results.glob(f"runs/*/{paths.LOCK}"))
        lock = found[0] if found else None
        time.sleep(0.1)
    child = int(lock.read_text())
    p.kill()
    p.wait()
    deadline = time.time() + 60
    while os.path.exists(f"/proc/{child}") and time.time() < deadline:
        if open(f"/proc/{child}/stat").read().split()[2] == "Z":
            break
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z"


def _sweep(prof, results, *extra):
    import sweep
    return [sys.executable, os.path.join(sweep.REPO, "sweep.py"), str(prof), "--jobs", "1",
            "--results", str(results), *extra]


def test_a_sweep_killed_with_sigkill_and_rerun_finishes_every_run_exactly_once(tmp_path):
    import sweep

    prof = tmp_path / "p.yaml"
    prof.write_text(f"seeds: [0, 1, 2]\nruns:\n  - name: sgd\n    config: {sweep.REPO}/configs/quick/sgd.yaml\n"
                    f"    overrides: [model=resnet20, width=0.125, epochs=6, train_subset=256]\n")
    results = tmp_path / "res"
    p = subprocess.Popen(_sweep(prof, results), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill it once one run has finished and the next one has checkpointed an epoch
    deadline = time.time() + 240
    while True:
        assert p.poll() is None and time.time() < deadline
        done = list(results.glob(f"runs/*/{paths.SUMMARY}"))
        started = [c for c in results.glob(f"runs/*/{paths.CHECKPOINT}")
                   if not (c.parent / paths.SUMMARY).exists()]
        if done and started:
            break
        time.sleep(0.05)
    p.kill()
    p.wait()
    first = done[0].parent
    first_summary = (first / paths.SUMMARY).read_bytes()
    deadline = time.time() + 60    # its child stops at a checkpoint (SIGTERM from the kernel)
    while any((f / paths.LOCK).exists() and (f / paths.LOCK).read_text().strip()
              and os.path.exists(f"/proc/{(f / paths.LOCK).read_text().strip()}")
              for f in results.glob("runs/*")) and time.time() < deadline:
        time.sleep(0.1)
    rerun = subprocess.run(_sweep(prof, results), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    folders = sorted(results.glob("runs/*"))
    assert len(folders) == 3
    for f in folders:   # every epoch trained once: no epoch twice, none missing
        epochs = [int(line.split(",")[0]) for line in (f / paths.METRICS).read_text().splitlines()[1:]]
        assert epochs == [1, 2, 3, 4, 5, 6], (f.name, epochs)
    assert (first / paths.SUMMARY).read_bytes() == first_summary       # not retrained
    index = (results / paths.INDEX).read_text().splitlines()[1:]
    assert sorted(line.split(",")[0] for line in index) == sorted(f.name for f in folders)
    resumed = [f for f in folders if "resuming after epoch" in
               (results / "logs" / f"{f.name}.log").read_text()]
    assert len(resumed) == 1                                            # the killed one


def test_a_missing_damaged_or_behind_index_is_rebuilt_by_the_next_sweep(tmp_path):
    import csv
    import io

    import sweep

    def table(text):   # the rows as sets of (column, value): column order is not the point
        return sorted(sorted(r.items()) for r in csv.DictReader(io.StringIO(text)))

    prof = tmp_path / "p.yaml"
    prof.write_text(f"seeds: [0, 1]\nruns:\n  - name: sgd\n    config: {sweep.REPO}/configs/quick/sgd.yaml\n"
                    f"    overrides: [model=resnet20, width=0.125, epochs=1, train_subset=128]\n")
    results = tmp_path / "res"
    assert sweep.main([str(prof), "--jobs", "1", "--results", str(results)]) == 0
    index = results / paths.INDEX
    original = index.read_text()
    header, *rows = original.splitlines()
    damages = {"missing": None, "damaged": "\x00\x01 not a csv\n", "behind": "\n".join([header, rows[0]]) + "\n",
               "stale": original + rows[0].replace(rows[0].split(",")[0], "gone-run", 1) + "\n"}
    for what, text in damages.items():
        index.unlink()
        if text is not None:
            index.write_text(text)
        assert runindex.index_problem(str(results)) is not None, what
        assert sweep.main([str(prof), "--jobs", "1", "--results", str(results), "--dry-run"]) == 0
        assert sweep.main([str(prof), "--jobs", "1", "--results", str(results)]) == 0
        assert table(index.read_text()) == table(original), what
    assert runindex.index_problem(str(results)) is None


def _cli(tmp_path, *extra):
    return [os.path.join(REPO, "configs/quick/sgd.yaml"), "model=resnet20",
            "width=0.125", "epochs=3", "train_subset=128", "device=cpu", "--results", str(tmp_path),
            "--quiet", *extra]


def test_disk_full_while_checkpointing_is_one_line_and_loses_nothing(tmp_path, monkeypatch, capsys):
    """ENOSPC as the kernel reports it (at fsync) while epoch 2's checkpoint is written. Tests
    run as root here, and a full file system cannot be made without privileges, so the error
    is injected where the real one surfaces."""
    import errno

    out = tmp_path / "run"
    real_fsync, calls = os.fsync, {"ckpt": 0}

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".tmp-" + paths.CHECKPOINT):
            calls["ckpt"] += 1
            if calls["ckpt"] == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert train.main(_cli(tmp_path, "--out", str(out))) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0]
    ckpt = torch.load(out / paths.CHECKPOINT, weights_only=True)
    assert ckpt["epoch"] == 0                                      # epoch 1's, intact
    assert not any(p.name.startswith(".tmp-") for p in out.iterdir())
    monkeypatch.setattr(os, "fsync", real_fsync)                   # space again: resume, finish
    assert train.main(_cli(tmp_path, "--out", str(out))) == 0
    assert summaries.finished_summary(str(out))["epochs"] == 3


def test_out_that_is_a_file_or_an_unwritable_folder_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    f = tmp_path / "a-file"
    f.write_text("not a folder")
    assert train.main(_cli(tmp_path, "--out", str(f))) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(f) in err[0] and f.read_text() == "not a folder"
    # a read-only file system (root ignores permission bits, so EROFS is injected at mkstemp)
    real = fileio.tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)
    monkeypatch.setattr(fileio.tempfile, "mkstemp", mkstemp)
    assert train.main(_cli(tmp_path, "--out", str(tmp_path / "ro"))) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Read-only file system" in err[0] and str(tmp_path / "ro") in err[0]
    monkeypatch.setattr(fileio.tempfile, "mkstemp", real)

"""sweep.py's launchers without training: the local launcher's GPU slots (--runs-per-gpu) with
a stand-in child for train.py, the SLURM job script (torchrun, signals) and its requeueing
callable through submitit's own signal handler; and a smoke test of benchmarks/bench_epoch.py."""
import csv
import json
import os
import pickle
import random
import shlex
import signal
import subprocess
import sys
import time

import pytest

import sweep
from sparsecs.sweeping import launch
from sparsecs.sweeping import slurm

from tests import REPO

SGD = os.path.join(REPO, "configs", "quick", "sgd.yaml")
TINY = "[epochs=1, train_subset=128, model=resnet20, width=0.125, device=cpu]"

# Stands in for train.py: records its GPU and its start and end, sleeps, exits 0.
CHILD = """
import json, os, sys, time
t0 = time.time()
time.sleep(float(sys.argv[3]))
rec = dict(gpu=os.environ.get("CUDA_VISIBLE_DEVICES"), start=t0, end=time.time())
with open(os.path.join(sys.argv[1], sys.argv[2] + ".json"), "w") as f:
    json.dump(rec, f)
"""


def profile(tmp_path, seeds):
    p = tmp_path / "p.yaml"
    p.write_text(f"seeds: {list(seeds)}\noverrides: {TINY}\nruns:\n  - name: ok\n    config: {SGD}\n")
    return str(p)


def stand_in(monkeypatch, rec, sleep=0.3):
    os.makedirs(rec, exist_ok=True)
    monkeypatch.setattr(launch, "train_argv",
                        lambda spec, results: [sys.executable, "-c", CHILD, str(rec), spec.name, str(sleep)])


def most_at_once(intervals):
    """The largest number of (start, end) intervals that overlap."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    now = most = 0
    for _, d in events:   # at equal times an end (-1) sorts first
        now += d
        most = max(most, now)
    return most


def records(rec):
    return [json.loads(p.read_text()) for p in rec.iterdir()]


def test_runs_per_gpu_caps_each_device(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep, "_visible_gpus", lambda: [0, 1])
    stand_in(monkeypatch, tmp_path / "rec")
    args = [profile(tmp_path, range(8)), "--results", str(tmp_path / "results"), "--threads", "1"]
    assert sweep.main(args + ["--runs-per-gpu", "2"]) == 0
    out = capsys.readouterr().out
    assert "local: 4 at once, GPUs 0,1 (at most 2 per GPU), 1 thread(s) each" in out
    assert "| finished |    8 |" in out
    recs = records(tmp_path / "rec")
    assert len(recs) == 8 and {r["gpu"] for r in recs} == {"0", "1"}   # every device used
    for gpu in ("0", "1"):
        assert most_at_once([(r["start"], r["end"]) for r in recs if r["gpu"] == gpu]) <= 2
    assert 2 <= most_at_once([(r["start"], r["end"]) for r in recs]) <= 4


def test_jobs_above_runs_per_gpu_are_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep, "_visible_gpus", lambda: [0, 1])
    monkeypatch.setattr(launch, "train_argv", lambda *a: pytest.fail("nothing may start"))
    args = [profile(tmp_path, [0]), "--results", str(tmp_path / "results")]
    assert sweep.main(args + ["--jobs", "5", "--runs-per-gpu", "2"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: --jobs 5 is more than --runs-per-gpu 2 x 2 GPU(s) = 4; raise "
                   "--runs-per-gpu to share a GPU\n")
    assert sweep.main(args + ["--jobs", "3"]) == 2          # the default: one run per GPU
    assert sweep.main(args + ["--runs-per-gpu", "0"]) == 2
    assert "--runs-per-gpu must be >= 1" in capsys.readouterr().err
    with pytest.raises(ValueError):
        sweep.LocalLauncher(str(tmp_path), 3, 1, [0], per_gpu=2)


def test_runs_per_gpu_is_ignored_without_gpus(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep, "_visible_gpus", lambda: [])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    stand_in(monkeypatch, tmp_path / "rec", sleep=0.0)
    args = [profile(tmp_path, [0, 1]), "--results", str(tmp_path / "results"), "--jobs", "2",
            "--threads", "1", "--runs-per-gpu", "3"]
    assert sweep.main(args) == 0
    assert "local: 2 at once, CPU, 1 thread(s) each" in capsys.readouterr().out
    assert [r["gpu"] for r in records(tmp_path / "rec")] == [None, None]


# ----------------------------------------------------------------------------- SLURM

def a_spec(tmp_path):
    spec = sweep.expand(profile(tmp_path, [0]))[0]
    return sweep.materialize(spec, str(tmp_path / "results"))


def test_single_gpu_job_runs_train_py_itself(tmp_path):
    spec, results = a_spec(tmp_path), str(tmp_path / "results")
    script = sweep.slurm_script(spec, results, gpus=1, nodes=1, cpus=8)
    assert "torch.distributed" not in script and "scontrol" not in script
    assert f"{shlex.join(sweep.train_argv(spec, results))} >> " in script
    assert "export OMP_NUM_THREADS=8 MKL_NUM_THREADS=8" in script


def test_multi_gpu_job_is_a_torchrun_command(tmp_path):
    spec, results = a_spec(tmp_path), str(tmp_path / "results")
    script = sweep.slurm_script(spec, results, gpus=4, nodes=2, cpus=16)
    argv = sweep.train_argv(spec, results)
    assert 'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)' in script
    assert (f'{argv[0]} -m torch.distributed.run --nnodes "$SLURM_NNODES" --nproc_per_node 4 '
            f'--rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$head:$port" '
            f'{shlex.join(argv[1:])} >> ') in script
    assert "export OMP_NUM_THREADS=4 MKL_NUM_THREADS=4" in script      # 16 cores / 4 processes
    assert "torch.distributed.run --nnodes \"$SLURM_NNODES\" --nproc_per_node 1 " in \
        sweep.slurm_script(spec, results, gpus=1, nodes=2)            # one GPU on each of 2 nodes


FAKE_TRAIN = """
import json, os, sys
keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMP_NUM_THREADS")
with open(os.path.join(sys.argv[1], "rank" + os.environ["RANK"] + ".json"), "w") as f:
    json.dump({k: os.environ.get(k) for k in keys}, f)
"""


def test_torchrun_job_starts_every_rank_on_the_cpu(tmp_path, monkeypatch):
    """The 2-GPU script run as one SLURM node would run it: torchrun with 2 processes (the
    stand-in train.py needs no GPU), a fake scontrol naming this host."""
    pytest.importorskip("torch.distributed.run")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "scontrol").write_text("#!/bin/sh\necho localhost\n")
    os.chmod(tmp_path / "bin" / "scontrol", 0o755)
    (tmp_path / "fake_train.py").write_text(FAKE_TRAIN)
    out = tmp_path / "ranks"
    out.mkdir()
    monkeypatch.setattr(launch, "train_argv", lambda spec, results: [sys.executable, str(tmp_path / "fake_train.py"),
                                                                    str(out)])
    spec, results = a_spec(tmp_path), str(tmp_path / "results")
    os.makedirs(os.path.join(results, "logs"))
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}", SLURM_NNODES="1", SLURM_NODEID="0",
               SLURM_JOB_NODELIST="node1", SLURM_JOB_ID=str(random.randrange(10**6)))
    code = subprocess.run(["bash", "-c", sweep.slurm_script(spec, results, gpus=2, nodes=1, cpus=2)],
                          env=env, timeout=120).returncode
    log = open(sweep.log_path(results, spec.name)).read()
    assert code == 0, log
    ranks = sorted(json.loads(p.read_text())["RANK"] for p in out.iterdir())
    assert ranks == ["0", "1"]
    assert json.loads((out / "rank1.json").read_text()) == {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
                                                            "OMP_NUM_THREADS": "1"}
    assert log.count(sweep.MARK) == 1   # one header per attempt


SIGNALED = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(130))   # as train.py: stop, exit 130
open(sys.argv[1], "w").close()
time.sleep(1.0)
open(sys.argv[1] + ".done", "w").close()
"""


@pytest.mark.parametrize("sig, code", [(signal.SIGUSR2, 0), (signal.SIGTERM, 130)])
def test_job_script_signals(tmp_path, monkeypatch, sig, code):
    """USR2 (submitit's time-out / preemption signal, sent to every process of the job) does
    not stop the run; SIGTERM stops it with 130, and the script then waits for SLURM (here
    PREEMPT_WAIT_S shortened) before it reports that."""
    started = tmp_path / "started"
    monkeypatch.setattr(launch, "train_argv", lambda spec, results: [sys.executable, "-c", SIGNALED, str(started)])
    monkeypatch.setattr(slurm, "PREEMPT_WAIT_S", 0.5)
    spec, results = a_spec(tmp_path), str(tmp_path / "results")
    os.makedirs(os.path.join(results, "logs"))
    proc = subprocess.Popen(["bash", "-c", sweep.slurm_script(spec, results, gpus=1, cpus=1)],
                            start_new_session=True)
    deadline = time.time() + 30
    while not started.exists() and time.time() < deadline:
        time.sleep(0.02)
    t0 = time.time()
    os.killpg(proc.pid, sig)   # the whole job step, as SLURM signals it
    assert proc.wait(timeout=30) == code
    assert (tmp_path / "started.done").exists() == (code == 0)
    if code:
        assert time.time() - t0 >= 0.5


def test_checkpoint_requeues_the_same_command(tmp_path):
    """Through submitit's own signal handler: a preempted or timed-out job of
    _requeueing_call dumps the same command and requeues; plain subprocess.call would not be
    requeued at a time-out. The pickle loads in a fresh interpreter outside the repository."""
    submitit = pytest.importorskip("submitit")
    from submitit.core import job_environment, utils

    call = sweep._requeueing_call()
    cmd = ["bash", "-c", "exit 0"]
    again = call.checkpoint(cmd)
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.function is call and again.args == (cmd,) and not again.kwargs

    class Env:   # a job's environment, as submitit's SlurmJobEnvironment, without a cluster
        global_rank = 0

        def __init__(self):
            self.requeued = []

        def _requeue(self, countdown):
            self.requeued.append(countdown)

    for timed_out, left in ((False, 3), (True, 2)):
        paths = utils.JobPaths(tmp_path / f"job{left}", job_id="7")
        paths.folder.mkdir()
        delayed = utils.DelayedSubmission(call, cmd)
        delayed.set_timeout(60, 3)
        env = Env()
        handler = job_environment.SignalHandler(env, paths, delayed)
        if timed_out:
            handler._start_time -= 59 * 60
        with pytest.raises(SystemExit):
            handler.checkpoint_and_try_requeue(signal.SIGUSR2)
        assert env.requeued == [left]
        resumed = utils.DelayedSubmission.load(paths.submitted_pickle)
        assert resumed.args == (cmd,) and resumed._timeout_countdown == left
        assert resumed.result() == 0
    plain = utils.DelayedSubmission(subprocess.call, cmd)
    plain.set_timeout(60, 3)
    handler = job_environment.SignalHandler(Env(), utils.JobPaths(tmp_path, job_id="8"), plain)
    handler._start_time -= 59 * 60
    with pytest.raises(utils.UncompletedJobError, match="not checkpointable"):
        handler.checkpoint_and_try_requeue(signal.SIGUSR2)

    pkl = tmp_path / "job.pkl"
    utils.DelayedSubmission(call, ["echo", "resumed"]).dump(pkl)
    assert b"sweep" not in pkl.read_bytes()
    load = ("import pickle, sys; d = pickle.load(open(sys.argv[1], 'rb')); "
            "sys.exit(d.function.checkpoint(*d.args).result())")
    out = subprocess.run([sys.executable, "-I", "-c", load, str(pkl)], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "resumed\n", out.stderr
    copy = pickle.loads(pickle.dumps(call))
    assert copy.checkpoint.args[0] is copy


# ----------------------------------------------------------------------------- bench_epoch

def _bench_epoch():
    from benchmarks import bench_epoch
    return bench_epoch


def test_bench_epoch_smoke(tmp_path, capsys, one_thread):
    bench_epoch = _bench_epoch()
    out = tmp_path / "epoch.csv"
    assert bench_epoch.main(["--profiles", "ablation", "--models", "resnet20", "--methods", "sgd", "xrda",
                             "--device", "cpu", "--warmup", "1", "--steps", "1", "--eval-images", "8",
                             "--width", "0.125", "--batch", "16", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert [(r["model"], r["width"], r["method"], r["mode"], r["classes"], r["batch"]) for r in rows] == [
        ("resnet20", "0.125", "sgd", "dense", "10", "16"), ("resnet20", "0.125", "xrda", "elementwise", "10", "16")]
    for r in rows:
        assert float(r["ms_per_step"]) > 0 and float(r["eval_s"]) > 0 and r["steps_per_epoch"] == "3125"
        assert float(r["s_per_epoch"]) >= float(r["ms_per_step"]) * 3125 / 1000
        assert f"| resnet20 | 0.125 | {r['method']} | {r['mode']} | 10 | 16 |" in text
    # ablation: 32 runs; the vgg16 ones and resnet20's other methods are not measured here
    line = next(ln for ln in text.splitlines() if ln.startswith("| ablation |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "32" and float(cells[3].replace(",", "")) > 0 and 0 < int(cells[6]) < 32


def test_bench_epoch_imagenet_profile_at_224(tmp_path, capsys, one_thread):
    import csv

    bench_epoch = _bench_epoch()

    out = tmp_path / "t.csv"
    assert bench_epoch.main(["--profiles", "imagenet", "--models", "mobilenet_v1_str", "--methods", "sgd",
                             "--quick", "--eval-images", "4", "--out", str(out)]) == 0
    (row,) = list(csv.DictReader(open(out)))
    # an ImageNet epoch: 1,281,167 images at batch 8
    assert (row["model"], row["classes"], row["steps_per_epoch"]) == ("mobilenet_v1_str", "1000", "160146")
    assert float(row["s_per_epoch"]) > float(row["ms_per_step"]) * 160146 / 1000 > 0
    text = capsys.readouterr().out
    assert "| imagenet | 18 | 1,800 |" in text   # 6 entries x 3 seeds (configs/profiles/imagenet.yaml)

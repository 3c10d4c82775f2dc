"""The local launcher: one train.py process per run, with its log."""
import concurrent.futures as cf
import contextlib
import functools
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

from sparsecs import fileio

from .profile import REPO


def train_argv(spec, results):
    config = [spec.config] if spec.config else []
    return [sys.executable, os.path.join(REPO, "train.py"), *config, *spec.overrides,
            "--results", results]


def log_path(results, name):
    return os.path.join(results, "logs", name + ".log")


MARK = "=== sweep.py: "


def _header(spec, results):
    return f"{MARK}{time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(train_argv(spec, results)[1:])}"


def _last_line(path):
    """The last error line of a run's latest attempt (its log keeps every attempt)."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return ""
    text = text[text.rfind(MARK):] if MARK in text else text
    lines = [ln.strip() for ln in text.splitlines()[1 if MARK in text else 0:] if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("error:", "config error:"))]
    return (errors or lines or [""])[-1][:300]


# ----------------------------------------------------------------------------- launchers

def _die_with_parent(parent):
    """In the child, before exec: SIGTERM it when the sweep dies, however it dies (SIGKILL
    included), so a killed sweep leaves no train.py racing a rerun (Linux; elsewhere a no-op).
    train.py stops at its last checkpoint on SIGTERM. The kernel sends it when the *thread*
    that forked the child ends: here a pool worker, which waits for its child before it takes
    other work and lives until the pool shuts down, so only the sweep's death ends it early.
    A sweep killed between fork and prctl sends nothing: the child checks its parent itself."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:   # adopted already: the sweep died before prctl took effect
        os._exit(128 + signal.SIGTERM)


class LocalLauncher:
    """Each run its own train.py process, `jobs` at a time: on visible GPUs at most `per_gpu`
    runs per GPU (each run on the least busy one, CUDA_VISIBLE_DEVICES set per run; jobs <=
    per_gpu x GPUs), otherwise CPU processes with `threads` threads each."""

    def __init__(self, results, jobs, threads, gpus, per_gpu=1):
        if gpus and jobs > per_gpu * len(gpus):
            raise ValueError(f"{jobs} runs at once on {len(gpus)} GPU(s) is more than {per_gpu} per GPU")
        self.results, self.threads, self.jobs = results, threads, jobs
        self.pool = cf.ThreadPoolExecutor(max_workers=jobs)
        self.gpus, self.per_gpu = list(gpus), per_gpu
        self.load = {g: 0 for g in self.gpus}     # runs on each GPU now
        self.lock = threading.Lock()
        self.procs, self.stopping = set(), False  # the train.py children running now

    def _take_gpu(self):
        if not self.gpus:
            return None
        with self.lock:   # at most `jobs` runs hold one, so a GPU below per_gpu is always there
            gpu = min(self.gpus, key=lambda g: self.load[g])
            assert self.load[gpu] < self.per_gpu
            self.load[gpu] += 1
            return gpu

    def _give_gpu(self, gpu):
        if gpu is not None:
            with self.lock:
                self.load[gpu] -= 1

    def _run(self, spec):
        gpu = self._take_gpu()
        try:
            env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = str(gpu)
            log = log_path(self.results, spec.name)
            with fileio.writing(log):   # full disk, read-only folder: the sweep stops (one line)
                f = open(log, "a")
                print(_header(spec, self.results), file=f, flush=True)
            with f:
                if self.stopping:
                    return 130, "not started: the sweep was stopped"
                proc = subprocess.Popen(train_argv(spec, self.results), stdout=f, stderr=subprocess.STDOUT,
                                        env=env, cwd=REPO,
                                        preexec_fn=functools.partial(_die_with_parent, os.getpid()))
                with self.lock:
                    self.procs.add(proc)
                    if self.stopping:   # stopped while it started
                        proc.terminate()
                try:
                    code = proc.wait()
                finally:
                    with self.lock:
                        self.procs.discard(proc)
            return code, "" if code == 0 else f"exit {code}: {_last_line(log)} (log: {log})"
        finally:
            self._give_gpu(gpu)

    def free(self, running):
        return max(0, self.jobs - running)

    def submit(self, specs):
        return {self.pool.submit(self._run, s): s for s in specs}

    def wait(self, handles):
        done, _ = cf.wait(list(handles), return_when=cf.FIRST_COMPLETED)
        return [(handles[h], *h.result()) for h in done]

    def close(self, cancel=False, handles=()):
        if cancel:   # SIGTERM: each train.py stops at its last finished epoch's checkpoint
            with self.lock:
                self.stopping = True
                for proc in self.procs:
                    with contextlib.suppress(OSError):
                        proc.terminate()
        self.pool.shutdown(wait=not cancel, cancel_futures=cancel)


# What a SLURM job runs (bash -c): train.py, under torchrun when a run spans several GPUs
# or nodes, appending to the run's log; the header once per attempt (by the first node).
# Time limits and preemption: SLURM signals every process of the job (USR2, submitit's
# signal, slurm_signal_delay_s = 90 s before the limit; at preemption only where the cluster
# sets SlurmctldParameters=preempt_send_user_signal). It is ignored here: submitit's process
# catches it, calls the job's `checkpoint` (same command again: _requeueing_call) and
# requeues the job with `scontrol requeue`; SLURM then stops the job with SIGTERM, train.py
# stops at its last finished epoch (exit 130), and the requeued job resumes from there.
# A SIGTERM without USR2 (preemption on other clusters, scancel) also gives 130: the script
# then waits for SLURM to end or requeue the job instead of reporting 130 as the run's result.

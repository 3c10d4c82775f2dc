"""The SLURM launcher (submitit): job arrays, torchrun for several GPUs or nodes, requeue."""
import functools
import os
import shlex
import subprocess
import time

import yaml

from . import launch
from .profile import REPO


PREEMPT_WAIT_S = 300
RDZV_PORT = (20000, 10000)   # rendezvous port 20000 + job id mod 10000 (below Linux's ephemeral range)


def slurm_script(spec, results, gpus=1, nodes=1, cpus=8, signal_name="USR2"):
    """The bash script of one run's SLURM job (one task per node). gpus x nodes > 1: torchrun
    (python -m torch.distributed.run) on every node, `gpus` processes each (at least 1),
    c10d rendezvous at the job's first host; CPU threads per process = cpus / processes."""
    log = shlex.quote(launch.log_path(results, spec.name))
    argv = launch.train_argv(spec, results)
    procs = max(1, gpus)
    dist = procs * nodes > 1
    threads = max(1, cpus // procs) if dist else cpus
    header = f'echo "{launch.MARK}$(date "+%Y-%m-%d %H:%M:%S")" {shlex.quote(shlex.join(argv[1:]))}'   # as _header
    lines = [f'if [ "${{SLURM_NODEID:-0}}" = 0 ]; then {header} >> {log}; fi',   # each attempt's own time
             f"cd {shlex.quote(REPO)} || exit 1",
             f"trap '' {signal_name}",   # ignored dispositions survive exec: train.py, torchrun, its workers
             "trap : TERM",             # bash outlives train.py's SIGTERM stop (waited for below)
             f"export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}"]
    if dist:
        lines += ['head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)',
                  f"port=$(({RDZV_PORT[0]} + ${{SLURM_JOB_ID:-0}} % {RDZV_PORT[1]}))"]
        run = (f"{shlex.quote(argv[0])} -m torch.distributed.run --nnodes \"$SLURM_NNODES\" "
               f"--nproc_per_node {procs} --rdzv_id \"$SLURM_JOB_ID\" --rdzv_backend c10d "
               f"--rdzv_endpoint \"$head:$port\" {shlex.join(argv[1:])}")
    else:
        run = shlex.join(argv)
    lines += [f"{run} >> {log} 2>&1",
              "code=$?",
              f"if [ $code = 130 ]; then sleep {PREEMPT_WAIT_S}; fi",
              "exit $code"]
    return "\n".join(lines)


def _requeueing_call():
    """subprocess.call with a submitit `checkpoint`: a job of it that is preempted or times
    out is requeued with the same command (train.py resumes from its checkpoint). Built from
    functools.partial, subprocess.call and submitit's DelayedSubmission alone, so the pickle
    submitit sends to the node holds nothing of this repository (any node can load it)."""
    from submitit.helpers import DelayedSubmission

    call = functools.partial(subprocess.call)
    call.checkpoint = functools.partial(DelayedSubmission, call)   # checkpoint(cmd): call(cmd) again
    return call


class SlurmLauncher:
    """One job per run through submitit, each wave of ready runs as one job array. The sweep
    waits for each wave (polling); if it is stopped, running jobs go on, and a rerun skips
    what has finished (a run still running would be started a second time: wait for it).
    --gpus is per node; with --nodes or --gpus above 1 a run is one torchrun job (one task
    per node). Preempted and timed-out jobs requeue themselves (see slurm_script)."""

    def __init__(self, results, args):
        import submitit

        self.results, self.cpus, self.gpus, self.nodes = results, args.cpus, args.gpus, args.nodes
        self.signal = submitit.JobEnvironment.USR_SIG
        folder = os.path.abspath(args.slurm_folder or os.path.join(results, "slurm"))
        self.executor = submitit.AutoExecutor(folder=os.path.join(folder, "%j"), cluster=args.cluster,
                                              slurm_max_num_timeout=args.max_timeouts)
        params = dict(timeout_min=_minutes(args.time), gpus_per_node=args.gpus,
                      cpus_per_task=args.cpus, tasks_per_node=1, nodes=args.nodes, name="sweep",
                      slurm_array_parallelism=args.array_parallelism)
        if args.partition:
            params["slurm_partition"] = args.partition
        if args.mem_gb:
            params["mem_gb"] = args.mem_gb
        for item in args.slurm_opt or []:
            k, _, v = item.partition("=")
            params[f"slurm_{k}"] = yaml.safe_load(v) if v else True
        self.executor.update_parameters(**params)
        self.poll = args.poll
        self.jobs = args.array_parallelism   # runs at once, for the sweep's ETA

    def free(self, running):
        return 0 if running else 1 << 30   # waves: everything ready, once the last wave is done

    def command(self, spec):
        return ["bash", "-c", slurm_script(spec, self.results, self.gpus, self.nodes, self.cpus, self.signal)]

    def submit(self, specs):
        jobs = self.executor.map_array(_requeueing_call(), [self.command(s) for s in specs])
        for j, s in zip(jobs, specs):
            print(f"  submitted {s.name} (job {j.job_id})", flush=True)
        return dict(zip(jobs, specs))

    def wait(self, handles):
        while not all(j.done() for j in handles):
            time.sleep(self.poll)
        out = []
        for j, s in handles.items():
            log = launch.log_path(self.results, s.name)
            try:
                codes = j.results()   # one per task (node); the first that failed counts
                code = next((c for c in codes if c != 0), 0)
                note = "" if code == 0 else f"exit {code}: {launch._last_line(log)} (log: {log})"
            except Exception as e:  # killed, timed out, node failure: submitit's own error
                why = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
                code, note = 1, f"job {j.job_id} failed: {why} (log: {log})"
            out.append((s, code, note))
        return out

    def close(self, cancel=False, handles=()):
        for j in handles:
            if not j.done():
                j.cancel(check=False)


def _minutes(text):
    """'90' (minutes) or 'H:MM:SS' / 'D-HH:MM:SS' -> minutes."""
    text = str(text)
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 1:
        return days * 1440 + parts[0]
    while len(parts) < 3:
        parts.append(0)
    h, m, s = parts
    return days * 1440 + h * 60 + m + (1 if s else 0)

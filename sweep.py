"""Expand a profile into runs and launch them, locally or on SLURM.

    python sweep.py PROFILE [PROFILE ...] [--dry-run] [--jobs N] [--threads T] [--runs-per-gpu K]
                            [--results DIR] [--only ENTRY,...] [--seeds S,...] [--levels L,...]
                            [--retrain] [--set KEY=VALUE ...] [--max-runs N] [--until HH:MM]
    python sweep.py PROFILE --launcher slurm --partition gpu --time 24:00:00 --gpus 1 \\
                            [--nodes 1] --array-parallelism 32

PROFILE is a YAML file or a name under configs/profiles/. The format:

    defs: {...}                   # free-form: a place for YAML anchors (&name), ignored
    seeds: [0, 1]                 # every run once per seed (an entry may set its own)
    overrides: [epochs=6]         # KEY=VALUE applied to every run
    inherit: paper.yaml           # optional: take the other profile's keys, override some
    row_keys: [dataset, model]    # what `at:` takes from a row (default: ROW_KEYS below;
                                  # dotted keys such as optim.lr reach into the optimizer)
    epochs_scale: 0.1             # optional: multiply epochs and epoch-valued keys, >= 1
    epoch_keys: [optim.milestones]  # the epoch-valued keys it scales (default: the run's
                                  # method's keys of role "epochs", schema.py; negative indices
                                  # count from the end)
    runs:
      - name: xrda                # entries are referred to by name (default: entry<i>)
        config: configs/quick/xrda.yaml   # a path, a glob, or a list of them
        overrides: [optim.mode=elementwise]
        grid:                     # cartesian product of the axes
          arch:                   # an axis whose values are mappings sets several keys
            - {model: vgg16, width: 0.125}
            - {model: resnet20, width: 0.25}
          optim.lam: [1.0e-4, 1.0e-3]     # a plain axis
        # grid may also be a list of such mappings: the union of their products
      - name: gmp
        config: configs/quick/gmp.yaml
        target_from: xrda         # the method's target key (optim.target) = that run's sparsity
        grid: {arch: [...]}
      - name: filters
        config: configs/quick/filter_prune.yaml
        target_from: xrda_channel
        target_metric: filter_sparsity    # or kernel_sparsity: from the run's layers.csv
      - name: finetune
        config: configs/quick/magnitude_finetune.yaml
        init_from: sgd            # init_from = that run's folder
        target_from: xrda
      - name: dense
        at: configs/paper/c10-*.yaml      # one run per row: the row's ROW_KEYS on top of
        overrides: [method=sgd]           # this entry's config (none here: defaults)

      - name: soft_threshold      # a λ search per target sparsity (see Calibration)
        config: configs/quick/soft_threshold.yaml
        target_sparsity: [0.9, 0.99]      # or target_from: xrda (match each xRDA point)
        calibrate: {key: optim.lam, start: 1.0e-2, tolerance: 0.3, rounds: 6}

Other entry keys: `role` (dense, reference, baseline or ablation; default: the method's,
optim/), `epochs_scale` (this entry's epochs and epoch keys times this, on top of the
profile's: a prune-and-fine-tune entry at 0.5 after a dense entry at 0.5 spends the row's
budget). Profile keys: `evidence: none | small-scale | paper-scale` says what the report
may conclude from the profile's runs (none: a pipeline check, tables and figures only);
`claims: [A, B]` which papers' claims its report speaks to (reporting/papers.py; default [A]);
`compare_budget: PROFILE` the same entries at another training budget, whose verdicts the
report sets beside this profile's ("Verdicts against the budget", reporting/budget.py).

Identity. Every run is told what it is (config key `identity`, copied into summary.json):
the profile, its entry, its role, the row it belongs to (the `at:`/config row, else
dataset-model-width), the key its entry sweeps and its value. The report reads these.

Calibration. Penalty methods cannot be asked for a sparsity; `calibrate` searches the key
(λ or D) with full runs of the first seed: round 1 at `start`; then it brackets the target
(steps of up to ×10 along the secant of log λ against log(1 − sparsity)) and interpolates
between the closest points on both sides, until a round's nonzero fraction is within
`tolerance` of the target's (0.3: ±30% nonzeros, 0.3 pp at 99%) or `rounds` runs were made.
Every round's run is kept; the closest is the calibrated point, and the other seeds run at
its λ (also when the rounds ran out before the tolerance was met: the sweep says so). A target no λ reaches (sparsity stuck, or a round fails) ends the search with a
message and blocks those seeds.
`calibrate: {..., start_from: {profile: fashion, entry: xrda}}` (entry: default this entry's
name): round 1 of each target at the value that profile's search for the same target reached
(its calibrated round, or its closest healthy round if it missed; replayed from RESULTS/runs)
times the method's budget factor for this run's steps and Σ lr (docs/methods.md §7.1; 1 for
xRDA, ~0.41 for LATS at 4x fashion's epochs); with chain, a later target takes the factor the
previous target's search measured. The dry run prints one line per search saying which. No
round of that entry in that profile: one line, exit 2; a target it never searched: `start`.

Runs of an entry are its grid points times its seeds, in that order. The order of the
overrides of one run: row keys, profile overrides, entry overrides, grid values, epoch
scaling, seed, then what its dependencies give (optim.target, init_from).

Dependencies. `target_from: NAME` and `init_from: NAME` name an earlier entry. A run
depends on that entry's runs whose grid point agrees with its own on every axis the two
entries share (`row` is the axis of `at:` and of a `config:` that lists several files);
it is repeated once per matching point of the other entry where that entry has more axes
(a gmp entry with only `arch` gets one run per xRDA λ, each matched to it).
`target_from` sets `optim.target` to the mean final `sparsity` (summary.json; with
`target_metric`, the fraction of conv filters or kernels entirely zero, from layers.csv)
over all seeds of the matched point, rounded to 6 decimals: baselines are matched to xRDA
by construction, and all their seeds share one target. `init_from` uses the matched run of
the same seed. Such a run starts only when its dependencies have finished (the local
launcher starts it as soon as they have; SLURM submits in waves) and is reported as blocked
if one of them failed. Until then its name (which holds the target and a hash) is unknown:
--dry-run lists it as waiting. An entry naming a run another entry names already (the same
resolved config) gets that run, trained once.

Several profiles, one sweep: `python sweep.py fashion32 fashion_vgg16 --jobs 2` runs the runs of
all of them in the one results folder they share, a profile's ready runs before the next
profile's, so that a later profile only fills a slot the earlier leave free (a λ search's
round still to finish, the last runs of a profile). --only, --seeds and --levels name one
profile's entries and levels, so they take one profile.

Finishing a profile in parts. `--only ENTRY,...`, `--seeds 0,1` (each one of the profile's
seeds) and `--levels 0.9,0.95` (a calibrated entry's target_sparsity, a grid's optim.target;
a run with neither, e.g. dense sgd, is kept) each narrow the runs, and together keep those
passing all three, plus every run these need to run to the end: their init_from and
target_from runs, round 1 of the λ search a follower seed takes its value from, and for a
chained search round 1 of the previous target's search, which it starts from (not that
search's followers). So `--seeds 0 --levels 0.9` is every entry's 90% point on seed 0, and a
later `--seeds 1,2 --levels 0.9` its other seeds. `--until 16:20` starts only the runs whose
estimate (the epochs they have left x the epoch time complete runs measured on this machine,
+10% and a minute) ends by then, cheaper runs of a later profile filling slots the earlier
cannot use, and stops: a machine given back at a set time cuts no run mid-way, whose
checkpoint would be lost with the machine. The filters only select: names, hashes and
`identity.profile` are those of the whole profile, and --dry-run lists the selection. A
value the profile does not have is one line and exit 2.

Finished runs (summary.json and model.pt present) are skipped, unfinished ones resume from their
checkpoint (train.py does both). Complete runs without weights (results committed to git) count
as done too; `--retrain` trains them again into the same folders, writing over them (a dense run
one still to train starts from, init_from, is trained again regardless: --dry-run says which). Each run is its own process with its log in
RESULTS/logs/<run>.log (appended to on each attempt); one failing does not stop the others; at the end a table of
finished, skipped, held, failed and blocked runs, and exit status 1 if any failed or was blocked. A run
another process trains now (a second sweep of the profile: train.py's exit 4) is `held`, skipped and
not a failure; the runs that depend on it are blocked.
"""
import argparse
import os
import sys
import time

from sparsecs import cli
from sparsecs import config as C
from sparsecs import fileio
from sparsecs import paths
from sparsecs import runindex
from sparsecs.sweeping import plan, startfrom
from sparsecs.sweeping.launch import MARK, LocalLauncher, _header, log_path, train_argv  # noqa: F401
from sparsecs.sweeping.plan import dependency_overrides, is_finished, known, materialize  # noqa: F401
from sparsecs.sweeping.selection import only, select  # noqa: F401
from sparsecs.sweeping.expansion import MAX_RUNS, expand
from sparsecs.sweeping.profile import REPO, ProfileError, find_profile, load_profile, profile_results  # noqa: F401
from sparsecs.sweeping.dryrun import committed_line, dry_run
from sparsecs.sweeping.schedule import print_table, run_all
from sparsecs.sweeping.search import Search  # noqa: F401
from sparsecs.sweeping.slurm import SlurmLauncher, _requeueing_call, slurm_script  # noqa: F401

# The machinery lives in sweeping/ (one job per module, see its __init__); the names above are
# what this CLI uses and what a script or test may call as sweep.<name>.


def main(argv=None):
    p = _parser()
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        print(f"error: --threads must be >= 1 (CPU threads per run), got {args.threads}", file=sys.stderr)
        return 2
    if args.results is None:
        homes = {profile_results(p) for p in args.profile}
        if len(homes) > 1:
            print(f"error: these profiles keep their runs in different folders ({', '.join(sorted(homes))}); "
                  f"sweep them one at a time, or give --results", file=sys.stderr)
            return 2
        args.results = homes.pop() if homes else "results"
    results = os.path.abspath(args.results)
    rc = _check_flags(args, results)
    if rc is not None:
        return rc
    plan.REUSE_COMPLETE = not args.retrain
    if args.reindex:
        return _reindex(args, results)
    if not args.profile:
        p.error("a profile is needed (or --reindex)")
    rc = _check_counts(args)
    if rc is not None:
        return rc
    try:
        specs, notes = _plan(args, results)
    except C.ConfigError as e:   # the same line train.py prints
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        return _dry_run(args, specs, results)
    return _launch(args, specs, notes, results)


def _parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile", nargs="*", help="a profile YAML or a name under configs/profiles/; several: one "
                                              "sweep over their runs, an earlier profile's ready runs first")
    p.add_argument("--reindex", action="store_true",
                   help="rebuild RESULTS/runs.csv from the run folders, then exit (no profile needed)")
    p.add_argument("--results", help="where runs.csv, runs/ and logs/ live (default: the profile's "
                                     "`results:` folder, else results; quick: scratch/results)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs, what is done, their epochs and the cost left (run-epochs; "
                        "hours where complete runs measured an epoch: this machine's in the same "
                        "setting first, others' said so); run nothing")
    p.add_argument("--retrain", action="store_true",
                   help="train again the complete runs without weights (committed results whose config "
                        "hash matches), writing over them; by default they count as done")
    p.add_argument("--reuse-complete", action="store_true",
                   help="the default now (committed complete runs count as done); kept for old commands")
    p.add_argument("--launcher", choices=("local", "slurm"), default="local")
    p.add_argument("--only", metavar="ENTRY[,ENTRY]",
                   help="only these entries of the profile (and the runs they depend on)")
    p.add_argument("--seeds", metavar="SEED[,SEED]",
                   help="only the runs of these seeds, each one of the profile's (and the runs they "
                        "need: a follower seed's λ search, init_from, ...); composes with --only")
    p.add_argument("--levels", metavar="LEVEL[,LEVEL]",
                   help="only the runs at these target levels (target_sparsity or optim.target, e.g. "
                        "0.9,0.95; runs with neither, such as dense, are kept) and the runs they need: "
                        "a chained search's previous target, ...; composes with --only and --seeds")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="an override for every run, after the profile's (repeatable; e.g. a smoke "
                        "test with --set epochs=1 --set train_subset=128: other run names); not seed, "
                        "which the profile's seeds: set (--seeds chooses among them)")
    p.add_argument("--max-runs", type=int, default=MAX_RUNS, metavar="N",
                   help=f"refuse a profile of more than N runs before expanding it (default {MAX_RUNS}: "
                        f"a larger grid must be confirmed with a larger N)")
    _add_local_args(p.add_argument_group("local launcher"))
    _add_slurm_args(p.add_argument_group("slurm launcher (submitit)"))
    return p


def _add_local_args(g):
    g.add_argument("--until", metavar="HH:MM", type=_until,
                   help="start only the runs whose estimate (epochs left x the epoch time measured "
                        "here, +10%% and a minute) ends before this local time (its next "
                        "occurrence; or YYYY-MM-DDTHH:MM), then stop: no run is cut mid-way when "
                        "the machine must be given back")
    g.add_argument("--jobs", type=int, default=0,
                   help="runs at once (default: --runs-per-gpu per visible GPU, else CPU cores / --threads)")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads per run, >= 1 (default: CPU cores / jobs)")
    g.add_argument("--runs-per-gpu", type=int, default=1, metavar="K",
                   help="with visible GPUs: at most K runs share a GPU (default 1); --jobs defaults "
                        "to K x GPUs and may not exceed it. Ignored on the CPU")


def _add_slurm_args(g):
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--time", default="24:00:00", help="time limit per run: minutes or H:MM:SS")
    g.add_argument("--gpus", type=int, default=1, help="GPUs per node of a run (above 1: torchrun)")
    g.add_argument("--nodes", type=int, default=1, help="nodes per run (above 1: torchrun, one task per node)")
    g.add_argument("--cpus", type=int, default=8, help="CPU cores per node of a run")
    g.add_argument("--mem-gb", type=float, default=0, help="memory per node (default: the cluster's)")
    g.add_argument("--max-timeouts", type=int, default=3,
                   help="times a run that hits --time is requeued to resume (default 3; "
                        "preemptions do not count)")
    g.add_argument("--array-parallelism", type=int, default=64, help="runs of one array at once")
    g.add_argument("--slurm-opt", action="append", metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. account=abc or qos=high (repeatable)")
    g.add_argument("--slurm-folder", help="submitit's logs and pickles (default: RESULTS/slurm)")
    g.add_argument("--cluster", default="slurm", choices=("slurm", "local", "debug"),
                   help=argparse.SUPPRESS)  # 'local': submitit's local executor (tests)
    g.add_argument("--poll", type=float, default=10.0, help=argparse.SUPPRESS)


def _check_flags(args, results):
    """--results and --retrain against the others: exit status 2, or None when they agree."""
    if os.path.exists(results) and not os.path.isdir(results):   # a path given on the command line: 2
        print(f"error: --results {args.results} is a file, not a results folder; nothing was run",
              file=sys.stderr)
        return 2
    if args.until is not None and args.launcher != "local":
        print("error: --until is for the local launcher (a SLURM job has --time)", file=sys.stderr)
        return 2
    if args.retrain and args.reuse_complete:
        print("error: --retrain and --reuse-complete contradict each other (reuse is the default)",
              file=sys.stderr)
        return 2
    return None


def _until(text):
    """--until's value as seconds since the epoch: HH:MM (its next occurrence, local time) or
    YYYY-MM-DDTHH:MM (not in the past)."""
    import datetime as dt
    now = dt.datetime.now()
    try:
        if "T" in text:
            when = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M")
        else:
            t = dt.datetime.strptime(text, "%H:%M")
            when = now.replace(hour=t.hour, minute=t.minute, second=0, microsecond=0)
            if when <= now:
                when += dt.timedelta(days=1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not HH:MM or YYYY-MM-DDTHH:MM") from None
    if when <= now:
        raise argparse.ArgumentTypeError(f"{text} is in the past")
    return when.timestamp()


def _check_counts(args):
    """The launchers' counts against their lower bounds: exit status 2, or None."""
    for flag, value, low in (("--runs-per-gpu", args.runs_per_gpu, 1), ("--nodes", args.nodes, 1),
                             ("--gpus", args.gpus, 0), ("--max-timeouts", args.max_timeouts, 0)):
        if value < low:
            print(f"error: {flag} must be >= {low}", file=sys.stderr)
            return 2
    return None


def _reindex(args, results):
    """--reindex: rebuild RESULTS/runs.csv from the run folders."""
    try:
        n, skipped = runindex.reindex(results, warn=lambda m: print(m, file=sys.stderr))
    except OSError as e:
        print(f"error: {fileio.os_error_text(e)}", file=sys.stderr)
        return 1
    print(f"{os.path.join(args.results, paths.INDEX)}: {n} runs from the run folders"
          + (f"; {len(skipped)} incomplete folder(s) left out" if skipped else ""))
    return 0


def _plan(args, results):
    """The profile's runs narrowed by --only/--seeds/--levels, with what is known resolved, and
    the notes a real sweep prints first. Raises ConfigError or ProfileError."""
    specs = []
    for rank, name in enumerate(args.profile):
        mine = expand(find_profile(name), args.set or (), args.max_runs)
        for s in mine:   # the scheduler takes an earlier profile's ready runs first
            s.rank = rank
        specs += mine
    if (args.only, args.seeds, args.levels) != (None, None, None):   # each narrows; then what they need
        if len(args.profile) > 1:
            raise ProfileError("--only, --seeds and --levels narrow one profile; give one")
        specs = select(specs, None if args.only is None else args.only.split(","),
                       None if args.seeds is None else _values(args.seeds, int, "--seeds", "seed"),
                       None if args.levels is None else _values(args.levels, float, "--levels", "level"))
    for s in specs:  # resolve what is known now: catches config errors before launching
        if not s.deps and s.after is None and not s.waiting_on_search():
            materialize(s, results)
    notes = [] if args.dry_run else startfrom.start_notes(specs, results)
    return specs, notes


def _dry_run(args, specs, results):
    problem = runindex.index_problem(results)
    if problem:
        print(f"note: {os.path.join(args.results, paths.INDEX)} is {problem}; a real run "
              f"rebuilds it from the run folders")
    return dry_run(specs, results)


def _launch(args, specs, notes, results):
    """Run the specs with the chosen launcher; the table at the end (also on Ctrl-C or an OSError)."""
    state, t0 = {}, time.time()
    try:
        rebuilt = runindex.ensure_index(results)   # a lost or damaged row is never lost for good
        if rebuilt:
            print(rebuilt, flush=True)
        for line in notes:
            print(line, flush=True)
        n_done = sum(1 for s in specs if s.cfg is not None and is_finished(s.cfg, results))
        if args.launcher == "local":
            local = _local_setting(args)
            if isinstance(local, int):
                return local
        _print_counts(specs, results, n_done)
        launcher = (_local_launcher(args, results, *local) if args.launcher == "local"
                    else _slurm_launcher(args, results))
        if launcher is None:
            return 2
        os.makedirs(os.path.join(results, "logs"), exist_ok=True)
        t0 = time.time()
        run_all(specs, results, launcher, state, until=args.until)
    except KeyboardInterrupt:   # Ctrl-C: what was settled, then one line
        print_table(specs, state, time.time() - t0)
        print("interrupted: running runs stopped at their last finished epoch's checkpoint; "
              "run the same command to resume", file=sys.stderr)
        return 130
    except OSError as e:        # a full disk, a read-only results folder
        print_table(specs, state, time.time() - t0)
        print(f"error: {fileio.os_error_text(e)} (finished runs are kept; fix it and rerun the same "
              f"command)", file=sys.stderr)
        return 1
    counts = print_table(specs, state, time.time() - t0)
    return 1 if counts["failed"] or counts["blocked"] else 0


def _local_setting(args):
    """(jobs, threads, gpus) for the local launcher, or exit status 2 after one line."""
    if args.jobs < 0:
        print("error: --jobs must be >= 1 (0: one per GPU or CPU core)", file=sys.stderr)
        return 2
    gpus = _visible_gpus()
    cores = os.cpu_count() or 1
    if gpus:   # never more than --runs-per-gpu on one device
        most = args.runs_per_gpu * len(gpus)
        if args.jobs > most:
            print(f"error: --jobs {args.jobs} is more than --runs-per-gpu {args.runs_per_gpu} x "
                  f"{len(gpus)} GPU(s) = {most}; raise --runs-per-gpu to share a GPU", file=sys.stderr)
            return 2
        jobs = args.jobs or most
    else:
        jobs = args.jobs or max(1, cores // max(1, args.threads or 1))
    threads = args.threads or max(1, cores // jobs)
    return jobs, threads, gpus


def _print_counts(specs, results, n_done):
    n_committed = sum(1 for s in specs if s.cfg is not None and plan.is_committed(s.name, results))
    print(f"{len(specs)} runs: {n_done} finished already, {len(specs) - n_done} to run or check", flush=True)
    line = committed_line(*((n_committed, 0) if plan.REUSE_COMPLETE else (0, n_committed)))
    if line:
        print(line, flush=True)


def _local_launcher(args, results, jobs, threads, gpus):
    where = (f"GPUs {','.join(map(str, gpus))} (at most {args.runs_per_gpu} per GPU)" if gpus else "CPU")
    print(f"local: {jobs} at once, {where}, {threads} thread(s) each", flush=True)
    return LocalLauncher(results, jobs, threads, gpus, args.runs_per_gpu)


def _slurm_launcher(args, results):
    """The SLURM launcher, or None after one line (no sbatch, a bad parameter)."""
    try:
        return SlurmLauncher(results, args)
    except Exception as e:
        print(f"error: slurm launcher: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return None


def _values(text, kind, flag, what):
    """'0,1' -> [0, 1] (kind int or float); anything else a ProfileError (one line, exit 2)."""
    out = []
    for item in text.split(","):
        try:
            out.append(kind(item.strip()))
        except ValueError:
            raise ProfileError(f"{flag}: '{item.strip()}' is not a {what} (a comma-separated list, "
                               f"e.g. {flag} {'0,1' if kind is int else '0.9,0.95'})") from None
    return out


def _visible_gpus():
    """GPU ids to put in CUDA_VISIBLE_DEVICES (one per run, --runs-per-gpu runs each)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch
        n = torch.cuda.device_count()
    except Exception:
        n = 0
    if not n:
        return []
    if env:
        ids = [x.strip() for x in env.split(",") if x.strip()]
        return ids[:n]
    return list(range(n))


if __name__ == "__main__":
    sys.exit(cli.run(main, "sweep.py"))

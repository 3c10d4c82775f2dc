"""Expand a profile into runs and launch them.

    python sweep.py PROFILE [--jobs N] [--dry-run] [--results DIR]

A profile (configs/profiles/<name>.yaml) lists base configs, grids of overrides and seeds:

    seeds: [0, 1]
    overrides: [epochs=6]                 # applied to every run
    runs:
      - config: configs/quick/xrda.yaml
        grid:
          arch: [{model: vgg16, width: 0.125}, {model: resnet20, width: 0.25}]   # a bundle axis
          optim.lam: [1.0e-4, 1.0e-3]     # a plain axis
Each run is the cartesian product of its grid axes (an axis whose values are mappings sets
several keys at once) times the seeds. Finished runs are skipped; unfinished ones resume.
"""
import argparse
import itertools
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import yaml

import config as C


class ProfileError(ValueError):
    pass


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _fmt(v):
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...").strip()


def expand(profile_path):
    """[(config path, [KEY=VALUE ...])] for every run of the profile, in order."""
    try:
        with open(profile_path) as f:
            prof = yaml.safe_load(f) or {}
    except OSError as e:
        raise ProfileError(f"cannot read profile {profile_path}: {e.strerror}") from None
    if not isinstance(prof, dict) or not isinstance(prof.get("runs"), list):
        raise ProfileError(f"{profile_path}: expected a mapping with a 'runs' list")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(profile_path))))
    seeds = prof.get("seeds", [0])
    common = [str(o) for o in prof.get("overrides", [])]
    runs = []
    for entry in prof["runs"]:
        path = entry["config"]
        path = path if os.path.isabs(path) else os.path.join(root, path)
        grid = entry.get("grid") or {}
        axes = [[_flatten(v) if isinstance(v, dict) else {k: v} for v in vals] for k, vals in grid.items()]
        extra = [str(o) for o in entry.get("overrides", [])]
        for combo in itertools.product(*axes):
            point = {k: v for d in combo for k, v in d.items()}
            for seed in entry.get("seeds", seeds):
                runs.append((path, common + extra + [f"{k}={_fmt(v)}" for k, v in point.items()] + [f"seed={seed}"]))
    return runs


def is_finished(cfg, results):
    return os.path.exists(os.path.join(results, "runs", C.run_name(cfg), "summary.json"))


def launch_local(runs, results, jobs, threads):
    """Run each as its own train.py process, `jobs` at a time; returns {name: returncode}."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    logs = os.path.join(results, "logs")
    os.makedirs(logs, exist_ok=True)

    def one(item):
        name, (path, overrides) = item
        with open(os.path.join(logs, name + ".log"), "w") as log:
            code = subprocess.run([sys.executable, "train.py", path, *overrides, "--results", results],
                                  stdout=log, stderr=subprocess.STDOUT, env=env,
                                  cwd=os.path.dirname(os.path.abspath(__file__))).returncode
        print(f"{'done ' if code == 0 else 'FAILED'} {name}" + (f" (exit {code}, see {logs}/{name}.log)" if code else ""),
              flush=True)
        return name, code

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(pool.map(one, runs.items()))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profile", help="a profile YAML or a name under configs/profiles/")
    p.add_argument("--results", default="results")
    p.add_argument("--jobs", type=int, default=0, help="runs at once (default: GPUs, or CPU cores / threads)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    p.add_argument("--dry-run", action="store_true", help="list the runs and what is done; run nothing")
    args = p.parse_args(argv)
    path = args.profile
    if not os.path.exists(path):
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "profiles", args.profile + ".yaml")
    try:
        runs = {}
        for cfg_path, overrides in expand(path):
            cfg = C.build(cfg_path, overrides)
            runs[C.run_name(cfg)] = (cfg_path, overrides, is_finished(cfg, args.results))
    except (ProfileError, C.ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done = [n for n, r in runs.items() if r[2]]
    todo = {n: r[:2] for n, r in runs.items() if not r[2]}
    print(f"{len(runs)} runs: {len(done)} finished, {len(todo)} to run")
    if args.dry_run:
        for n, r in runs.items():
            print(f"  {'done' if r[2] else 'todo'}  {n}")
        return 0
    import torch
    jobs = args.jobs or max(1, torch.cuda.device_count() or (os.cpu_count() or 1) // args.threads)
    t0 = time.time()
    codes = launch_local(todo, args.results, jobs, args.threads)
    failed = sorted(n for n, c in codes.items() if c)
    print(f"finished {len(codes) - len(failed)}, skipped {len(done)}, failed {len(failed)} "
          f"in {time.time() - t0:.0f}s")
    for n in failed:
        print(f"  failed: {n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

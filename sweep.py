"""Expand a profile into runs and launch them, locally or on SLURM.

    python sweep.py PROFILE [--dry-run] [--jobs N] [--threads T] [--runs-per-gpu K]
                            [--results DIR] [--only ENTRY,...] [--set KEY=VALUE ...]
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
    epoch_keys: [optim.milestones]  # the epoch-valued keys it scales (default: EPOCH_KEYS,
                                  # where a run has them; negative indices count from the end)
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
        target_from: xrda         # optim.target = that run's final sparsity
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
may conclude from the profile's runs (none: a pipeline check, tables and figures only).

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

Finished runs (summary.json and model.pt present) are skipped, unfinished ones resume from their
checkpoint (train.py does both). Each run is its own process with its log in
RESULTS/logs/<run>.log (appended to on each attempt); one failing does not stop the others; at the end a table of
finished, skipped, failed and blocked runs, and exit status 1 if any failed or was blocked.
"""
import argparse
import concurrent.futures as cf
import contextlib
import functools
import glob
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import math
import threading
import time

import yaml

import config as C
import runs
from optim import get_method

REPO = os.path.dirname(os.path.abspath(__file__))
# What `at: ROW` takes from the row's resolved config: the data, the model and the budget.
ROW_KEYS = ["dataset", "model", "width", "epochs", "batch_size", "eval_batch_size", "augment",
            "crop_padding", "flip", "erase", "lr_scale", "warmup_epochs", "label_smoothing", "sync_bn",
            "precision", "channels_last", "compile", "device"]
ENTRY_KEYS = {"name", "config", "at", "grid", "overrides", "seeds", "target_from", "init_from",
              "row_keys", "target_metric", "role", "epochs_scale", "target_sparsity", "calibrate"}
CALIBRATE_KEYS = {"key": None, "start": None, "tolerance": 0.3, "rounds": 6}
EVIDENCE = ("none", "small-scale", "paper-scale")
# What `target_from` reads from a finished run: its sparsity (summary.json), or the fraction of
# its conv filters / kernels that are entirely zero (layers.csv), for structured baselines.
TARGET_METRICS = ("sparsity", "filter_sparsity", "kernel_sparsity")
PROFILE_KEYS = {"seeds", "overrides", "runs", "row_keys", "epochs_scale", "epoch_keys", "defs", "inherit",
                "evidence"}
# Config keys that count epochs, scaled with them by `epochs_scale` (the short profile).
EPOCH_KEYS = ["optim.milestones", "optim.prune_start", "optim.prune_end"]
TERMINAL = ("finished", "skipped", "failed", "blocked")


class ProfileError(ValueError):
    pass


# ----------------------------------------------------------------------------- expansion

class Spec:
    """One run of a profile. Its config is known once its dependencies have finished."""

    def __init__(self, entry, config, overrides, point, seed, target_from=(), init_from=None,
                 target_metric="sparsity", identity=None, search=None, after=None):
        self.entry, self.config, self.overrides = entry, config, list(overrides)
        self.target_metric = target_metric
        self.point, self.seed = point, seed
        self.target_from, self.init_from = list(target_from), init_from
        self.identity = dict(identity or {})   # profile, entry, role, swept key (row: at build)
        self.search = search    # the Search this run is a round of
        self.after = after      # the Search whose calibrated value this run takes
        self.name = self.cfg = None
        self.dependents = 0

    @property
    def deps(self):
        return self.target_from + ([self.init_from] if self.init_from else [])

    def deps_searching(self):
        """A dependency that is round 1 of a λ search still running: its calibrated round, the
        one this run takes its target from, is not known yet."""
        return any(d.search is not None and not d.search.done for d in self.deps)

    def waiting_on_search(self):
        return self.after is not None and not self.after.done

    def label(self):
        """Readable identity before the name is known: entry and grid point."""
        pt = ", ".join(f"{k}={_short(v)}" for k, v in self.point.items())
        return f"{self.entry}[{pt}{', ' if pt else ''}seed={self.seed}]"


def _short(v):
    if isinstance(v, dict):
        return "/".join(_short(x) for x in v.values())
    if isinstance(v, str) and v.endswith(".yaml"):
        return os.path.basename(v)[:-5]
    return _fmt(v)


def _fmt(v):
    return yaml.safe_dump(v, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def _paths(value, where):
    """A path, a glob or a list of them -> sorted absolute paths (repo-relative input)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ProfileError(f"{where}: expected a path or a glob, got {item!r}")
        pat = item if os.path.isabs(item) else os.path.join(REPO, item)
        hits = sorted(glob.glob(pat)) if any(c in item for c in "*?[") else [pat]
        if not hits:
            raise ProfileError(f"{where}: '{item}' matches no file")
        for h in hits:
            if not os.path.isfile(h):
                raise ProfileError(f"{where}: config file '{item}' not found")
        out += hits
    return out


def _rel(path):
    return os.path.relpath(path, REPO) if path.startswith(REPO + os.sep) else path


def _row_overrides(row, keys):
    try:
        cfg = C.build(row)
    except C.ConfigError as e:
        raise ProfileError(f"row {_rel(row)}: {e}") from None
    out = []
    for key in keys:  # dotted keys reach into optim: (optim.lr)
        node = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ProfileError(f"row {_rel(row)} has no key '{key}'")
            node = node[part]
        out.append(f"{key}={_fmt(node)}")
    return out


def _scaled(config, overrides, scale, keys):
    """Overrides that multiply epochs and the epoch-valued keys by `scale` (at least 1)."""
    try:
        cfg = C.build(config, overrides)
    except C.ConfigError as e:
        raise ProfileError(f"{_rel(config) if config else 'run'}: {e}") from None
    epochs = max(1, round(cfg["epochs"] * scale))
    out = [f"epochs={epochs}"]
    for key in keys:
        node = cfg
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, list):
            vals = sorted({max(1, round(v * scale)) for v in node})
            out.append(f"{key}={_fmt([v for v in vals if v < epochs])}")
        elif isinstance(node, int) and not isinstance(node, bool):  # negative: counted from the end
            v = min(epochs - 1, round(node * scale)) if node >= 0 else -min(epochs, max(1, round(-node * scale)))
            out.append(f"{key}={v}")
    return out


def _agrees(a, b):
    return all(a[k] == b[k] for k in a.keys() & b.keys())


def load_profile(path, _seen=()):
    """The profile as a dict; `inherit: other.yaml` (next to it) supplies the keys it lacks."""
    if os.path.abspath(path) in _seen:
        raise ProfileError(f"{path}: inherit cycle")
    try:
        with open(path, encoding="utf-8") as f:
            prof = yaml.load(f, Loader=C._UniqueKeyLoader) or {}
    except OSError as e:
        raise ProfileError(f"cannot read profile {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not a text file (expected a YAML profile)") from None
    except (yaml.YAMLError, TypeError, ValueError, AttributeError) as e:
        raise ProfileError(f"{path}: not valid YAML ({' '.join(str(e).split())[:160]})") from None
    except RecursionError:
        raise ProfileError(f"{path}: YAML nested too deeply") from None
    if isinstance(prof, dict) and prof.get("inherit"):
        parent = load_profile(os.path.join(os.path.dirname(os.path.abspath(path)), prof["inherit"]),
                              _seen + (os.path.abspath(path),))
        prof = {**parent, **{k: v for k, v in prof.items() if k != "inherit"}}
    if not isinstance(prof, dict) or not isinstance(prof.get("runs"), list):
        raise ProfileError(f"{path}: expected a mapping with a 'runs' list")
    bad = set(prof) - PROFILE_KEYS
    if bad:
        raise ProfileError(f"{path}: unknown profile key(s) {', '.join(sorted(bad))}; "
                           f"known: {', '.join(sorted(PROFILE_KEYS))}")
    if not _seen:   # the merged profile, once: its values
        _check_profile(prof, path)
    return prof


def _positive(v):
    """A finite number > 0 (not a boolean, not a string)."""
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0)


def _check_seeds(seeds, where):
    if not (isinstance(seeds, list) and seeds and all(
            isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2 ** 32 for x in seeds)):
        raise ProfileError(f"{where}: seeds must be a non-empty list of whole numbers in [0, 2**32), "
                           f"got {_fmt(seeds)[:80]}")


def _check_profile(prof, path):
    """The profile's own values (entries are checked by expand): one line each."""
    where = os.path.basename(path)
    try:
        C.check_size(prof, where)
    except C.ConfigError as e:
        raise ProfileError(str(e)) from None
    if "evidence" in prof and prof["evidence"] not in EVIDENCE:
        raise ProfileError(f"{where}: evidence must be one of {', '.join(EVIDENCE)}, got "
                           f"{_fmt(prof['evidence'])[:80]}")
    if "seeds" in prof:
        _check_seeds(prof["seeds"], where)
    if prof.get("epochs_scale") is not None and not _positive(prof["epochs_scale"]):
        raise ProfileError(f"{where}: epochs_scale must be a positive number, got "
                           f"{_fmt(prof['epochs_scale'])[:80]}")
    for key in ("overrides", "row_keys", "epoch_keys"):
        v = prof.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise ProfileError(f"{where}: {key} must be a list of strings, got {_fmt(v)[:80]}")


def expand(profile_path, extra=()):
    """[Spec] for every run of the profile, in profile order (dependencies reference Specs);
    `extra` KEY=VALUE overrides come after the profile's own (sweep.py --set)."""
    prof = load_profile(profile_path)
    pname = profile_name(profile_path)
    extra = [str(o) for o in extra]
    seeds = prof.get("seeds", [0])
    common = [str(o) for o in prof.get("overrides") or []]
    scale = prof.get("epochs_scale")
    epoch_keys = prof.get("epoch_keys", EPOCH_KEYS)
    by_entry, specs = {}, []
    for i, entry in enumerate(prof["runs"]):
        ename = str(entry.get("name", f"entry{i}")) if isinstance(entry, dict) else f"entry{i}"
        where = f"{os.path.basename(profile_path)}: runs[{i}] ({ename})"
        if not isinstance(entry, dict):
            raise ProfileError(f"{where}: expected a mapping")
        bad = set(entry) - ENTRY_KEYS
        if bad:
            raise ProfileError(f"{where}: unknown key(s) {', '.join(sorted(bad))}; "
                               f"known: {', '.join(sorted(ENTRY_KEYS))}")
        if ename in by_entry:
            raise ProfileError(f"{where}: duplicate entry name '{ename}'")
        configs = _paths(entry.get("config"), where)
        rows = _paths(entry.get("at"), where)
        if len(configs) > 1 and rows:
            raise ProfileError(f"{where}: give several configs or 'at' rows, not both")
        if not configs and not rows and not entry.get("overrides"):
            raise ProfileError(f"{where}: needs a 'config', an 'at' or 'overrides'")
        row_keys = entry.get("row_keys", prof.get("row_keys", ROW_KEYS))
        grids = entry.get("grid") or {}
        grids = grids if isinstance(grids, list) else [grids]
        axes_list = []
        for grid in grids:
            if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
                raise ProfileError(f"{where}: 'grid' must map each axis to a non-empty list "
                                   f"(or be a list of such mappings)")
            axes = {k: list(v) for k, v in grid.items()}
            if len(configs) > 1:
                axes = {"row": [_rel(c) for c in configs], **axes}
            elif rows:
                axes = {"row": [_rel(r) for r in rows], **axes}
            axes_list.append(axes)
        deps = {}
        for kind in ("target_from", "init_from"):
            if entry.get(kind) is not None:
                if entry[kind] not in by_entry:
                    raise ProfileError(f"{where}: {kind}: '{entry[kind]}' is not an earlier entry")
                deps[kind] = by_entry[entry[kind]]
        metric = entry.get("target_metric", "sparsity")
        if metric not in TARGET_METRICS:
            raise ProfileError(f"{where}: target_metric must be one of {', '.join(TARGET_METRICS)}")
        role = entry.get("role")
        if role is not None and role not in C.ROLES:
            raise ProfileError(f"{where}: role must be one of {', '.join(C.ROLES)}")
        calib = _calibration(entry, where)
        if calib and "target_sparsity" not in entry and "target_from" not in deps:
            raise ProfileError(f"{where}: calibrate needs target_sparsity or target_from")
        if entry.get("target_sparsity") is not None and not calib:
            raise ProfileError(f"{where}: target_sparsity needs calibrate: {{key: optim.lam, start: ...}}")
        targets = entry.get("target_sparsity")
        if targets is not None and not (isinstance(targets, list) and targets and all(
                _positive(t) and t < 1 for t in targets)):
            raise ProfileError(f"{where}: target_sparsity must be a non-empty list of fractions in (0, 1)")
        targets = targets or [None]
        if "seeds" in entry:
            _check_seeds(entry["seeds"], where)
        escale = entry.get("epochs_scale")
        if escale is not None and not _positive(escale):
            raise ProfileError(f"{where}: epochs_scale must be a positive number")
        total_scale = (scale or 1.0) * (escale or 1.0) if (scale or escale) else None
        own = [str(o) for o in entry.get("overrides") or []]
        mine = []
        for axes, combo in ((a, c) for a in axes_list for c in itertools.product(*a.values())):
            point = dict(zip(axes, combo))
            row = point.get("row")
            config = os.path.join(REPO, row) if row and len(configs) > 1 else (configs[0] if configs else None)
            base = _row_overrides(os.path.join(REPO, row), row_keys) if rows else []
            sets = [f"{k}={_fmt(v)}" for key, val in point.items() if key != "row"
                    for k, v in (C.flatten(val) if isinstance(val, dict) else {key: val}).items()]
            static = base + common + own + sets
            if total_scale:  # (init_from is only known later; some methods refuse a config without it)
                pending = ["init_from=pending"] if "init_from" in deps else []
                static += _scaled(config, static + extra + pending, float(total_scale), epoch_keys)
            static += extra
            swept = {k: v for k, v in point.items() if k != "row" and not isinstance(v, dict)}
            ident = {"profile": pname, "entry": ename, "role": role,
                     "swept_key": ",".join(swept), "swept_value": ",".join(_fmt(v) for v in swept.values())}
            ent_seeds = entry.get("seeds", seeds)
            for target in targets:
                if calib:
                    mine += _searches(ename, where, config, static, point, ent_seeds, deps, metric,
                                      ident, calib, target)
                    continue
                for seed in ent_seeds:
                    mine += _with_deps(ename, where, config, static, point, seed, deps, metric, ident)
        by_entry[ename] = mine
        specs += mine
    return specs


def _with_deps(ename, where, config, static, point, seed, deps, metric, ident=None, search=None,
               after=None):
    """The runs of one grid point and seed: one per matching point of each dependency."""
    choices = []
    for kind, dep_specs in deps.items():
        groups = {}
        for d in dep_specs:
            if _agrees(point, d.point):
                groups.setdefault(json.dumps(d.point, sort_keys=True, default=str), []).append(d)
        if kind == "init_from":
            groups = {k: [d for d in g if d.seed == seed] for k, g in groups.items()}
            if any(not g for g in groups.values()):
                raise ProfileError(f"{where}: init_from has no run with seed {seed}")
        if not groups:
            raise ProfileError(f"{where}: {kind} matches no run of '{dep_specs[0].entry if dep_specs else '?'}'"
                               f" at {point}")
        choices.append([(kind, g) for g in groups.values()])
    out = []
    for combo in itertools.product(*choices):
        pt, tf, init = dict(point), [], None
        for kind, group in combo:
            pt = {**group[0].point, **pt}
            if kind == "target_from":
                tf = group
            else:
                init = group[0]
        spec = Spec(ename, config, static + [f"seed={seed}"], pt, seed, tf, init, metric, ident,
                    search, after)
        for d in spec.deps:
            d.dependents += 1
        out.append(spec)
    return out


def _calibration(entry, where):
    c = entry.get("calibrate")
    if c is None:
        return None
    if not isinstance(c, dict) or set(c) - set(CALIBRATE_KEYS):
        raise ProfileError(f"{where}: calibrate must map {', '.join(CALIBRATE_KEYS)}")
    c = {**CALIBRATE_KEYS, **c}
    if not isinstance(c["key"], str) or not c["key"]:
        raise ProfileError(f"{where}: calibrate.key must name the swept key, e.g. optim.lam")
    if not _positive(c["start"]):
        raise ProfileError(f"{where}: calibrate.start must be a positive number")
    if not (_positive(c["tolerance"]) and c["tolerance"] < 1):
        raise ProfileError(f"{where}: calibrate.tolerance must be in (0, 1)")
    if not (isinstance(c["rounds"], int) and not isinstance(c["rounds"], bool) and c["rounds"] >= 1):
        raise ProfileError(f"{where}: calibrate.rounds must be a positive integer")
    return c


class Search:
    """A λ search for one target sparsity (a profile's `calibrate`). next_value() is a pure
    function of the rounds so far, so a rerun replays the same rounds (and skips them)."""

    MAX_STEP = 10.0   # at most ×10 (or ÷10) per round while bracketing

    def __init__(self, key, start, tolerance, rounds, target=None, label=""):
        self.key, self.start, self.tolerance, self.rounds = key, float(start), tolerance, rounds
        self.target, self.label = target, label
        self.history = []          # [(value, sparsity)] in round order
        self.done = False
        self.failed = ""           # why no calibrated value exists
        self.note = ""             # round limit hit: the closest round stands, outside the tolerance
        self.specs = []            # the round runs made so far

    def _y(self, sparsity):
        return math.log(max(1.0 - sparsity, 1e-9))

    def within(self, sparsity):
        return abs((1.0 - sparsity) / (1.0 - self.target) - 1.0) <= self.tolerance

    def best(self):
        """The round closest to the target in log nonzeros: the calibrated point."""
        yt = self._y(self.target)
        return min(self.history, key=lambda h: abs(self._y(h[1]) - yt))

    def record(self, value, sparsity):
        """Add a finished round; returns the next value to run, or None when done."""
        self.history.append((float(value), float(sparsity)))
        if self.within(sparsity):
            self.done = True
            return None
        if len(self.history) >= self.rounds:
            self.done = True
            b = self.best()
            if not self.within(b[1]):
                self.note = (f"target sparsity {self.target:g} not reached within {self.rounds} rounds "
                               f"(closest: {b[1]:.4f} at {self.key}={b[0]:g})")
            return None
        nxt = self.next_value()
        if nxt is None:
            self.done = True
        return nxt

    def next_value(self):
        yt = self._y(self.target)
        pts = sorted((math.log(v), self._y(sp)) for v, sp in self.history)
        below = [p for p in pts if p[1] > yt]   # not sparse enough: more penalty needed
        above = [p for p in pts if p[1] < yt]   # too sparse
        if below and above:                     # bracketed: interpolate between the closest
            (x0, y0), (x1, y1) = max(below), min(above)
            x = x0 + (yt - y0) * (x1 - x0) / (y1 - y0) if y1 != y0 else (x0 + x1) / 2
            return math.exp(x)
        side = below if below else above
        direction = 1.0 if below else -1.0
        last = self.history[-1]
        if len(side) >= 2:
            (x0, y0), (x1, y1) = side[-2], side[-1]
            if below and abs(y1 - y0) < 1e-3 and last[0] == math.exp(x1):
                # ×10 more penalty changed nothing: sparsity is stuck below the target
                self.failed = (f"target sparsity {self.target:g} is not reachable: sparsity stays at "
                               f"{1 - math.exp(y1):.4f} for {self.key} from {math.exp(x0):g} to {math.exp(x1):g}")
                return None
            slope = (y1 - y0) / (x1 - x0) if x1 != x0 else 0.0
        else:
            slope = -1.0   # guess: nonzeros shrink in proportion to λ
        x_last = math.log(last[0])
        step = (yt - self._y(last[1])) / slope if slope < 0 else direction * math.log(self.MAX_STEP)
        step = direction * min(max(abs(step), math.log(1.5)), math.log(self.MAX_STEP))
        return math.exp(x_last + step)


def _searches(ename, where, config, static, point, seeds, deps, metric, ident, calib, target):
    """Round 1 of a λ search (first seed) and the other seeds' runs waiting for its result;
    with target_from, one search per matched point of that entry (its mean sparsity)."""
    if target is not None:   # one point per target, so that dependents match each one
        point = {**point, "target_sparsity": target}
    first = _with_deps(ename, where, config, static, point, seeds[0], deps, metric, ident)
    out = []
    for r1 in first:
        search = Search(calib["key"], calib["start"], calib["tolerance"], calib["rounds"], target,
                        label=r1.label())
        r1.search = search
        r1.overrides.append(f"{calib['key']}={search.start!r}")
        r1.identity.update(swept_key=calib["key"], calibration_round=1)
        search.specs.append(r1)
        out.append(r1)
        for seed in seeds[1:]:
            follower = Spec(ename, config, static + [f"seed={seed}"], r1.point, seed, r1.target_from,
                            None, metric, {**ident, "swept_key": calib["key"]}, after=search)
            if deps.get("init_from"):
                raise ProfileError(f"{where}: calibrate with init_from is not supported")
            out.append(follower)
    return out


def next_round(spec, results):
    """After round `spec` of a search finished: the next round's Spec, or None (search done)."""
    search = spec.search
    value = _override_value(spec.overrides, search.key)
    nxt = search.record(value, target_value(results, spec, "sparsity"))
    if nxt is None:
        return None
    ov = [o for o in spec.overrides if not o.startswith(search.key + "=")] + [f"{search.key}={nxt!r}"]
    new = Spec(spec.entry, spec.config, ov, spec.point, spec.seed, spec.target_from, spec.init_from,
               spec.target_metric, {**spec.identity, "calibration_round": len(search.history) + 1},
               search=search)
    new.cfg = None
    search.specs.append(new)
    return new


def _override_value(overrides, key):
    for o in reversed(overrides):
        k, _, v = o.partition("=")
        if k == key:
            return float(v)
    raise KeyError(key)


# ----------------------------------------------------------------------------- run state

def only(specs, names):
    """The runs of the named entries and, transitively, the runs they depend on."""
    known = {s.entry for s in specs}
    bad = [n for n in names if n not in known]
    if bad:
        entries = ", ".join(dict.fromkeys(s.entry for s in specs))
        raise ProfileError(f"--only: no entry {', '.join(bad)}; entries: {entries}")
    keep = set()
    todo = [s for s in specs if s.entry in names]
    while todo:
        s = todo.pop()
        if id(s) not in keep:
            keep.add(id(s))
            todo += s.deps
    return [s for s in specs if id(s) in keep]


def run_dir(results, name):
    return runs.run_dir(results, name)


def is_finished(cfg, results):
    return runs.is_finished(results, C.run_name(cfg))


def target_value(results, spec, metric="sparsity"):
    """A finished run's sparsity, or the fraction of its conv filters or kernels all zero."""
    folder = run_dir(results, spec.name)
    if metric == "sparsity":
        return float(runs.read_summary(folder)["sparsity"])
    v = runs.zero_fraction(folder, "filters" if metric == "filter_sparsity" else "kernels")
    return 0.0 if v is None else v


def dependency_overrides(spec, results):
    """What finished dependencies give: optim.target (mean sparsity over the matched point's
    seeds, 6 decimals; a search's target instead, for a calibrated entry), the calibrated
    value for the seeds after a search, and init_from (the run folder, repo-relative when
    inside the repo)."""
    ov = []
    search = spec.search or spec.after
    if spec.target_from:
        vals = [target_value(results, calibrated(d), spec.target_metric) for d in spec.target_from]
        target = round(sum(vals) / len(vals), 6)
        if search is None:
            ov.append(f"optim.target={target!r}")
        elif search.target is None or not search.history:
            search.target = target
    if spec.after is not None:
        ov.append(f"{spec.after.key}={spec.after.best()[0]!r}")
    if spec.init_from:
        ov.append(f"init_from={_rel(os.path.abspath(run_dir(results, spec.init_from.name)))}")
    return ov


def calibrated(spec):
    """The run that stands for `spec` as a dependency: for round 1 of a λ search, the
    search's calibrated round (the closest to its target); otherwise spec itself."""
    if spec.search is None or not spec.search.history:
        return spec
    return spec.search.specs[spec.search.history.index(spec.search.best())]


def materialize(spec, results):
    """Fill in what the dependencies give and resolve the config; sets spec.cfg and spec.name.
    The run's identity goes in as `identity.*` overrides (not hashed: names do not change)."""
    ov = spec.overrides + dependency_overrides(spec, results)
    cfg = C.build(spec.config, ov)
    ident = dict(spec.identity)
    ident["role"] = ident.get("role") or get_method(cfg["method"]).role
    ident["row"] = row_label(spec.point, cfg)
    search = spec.search or spec.after
    if search is not None:
        ident["calibration_target"] = search.target
        ident["swept_value"] = _fmt(_override_value(ov, search.key))
    elif spec.target_from and not ident.get("swept_key"):
        ident.update(swept_key="optim.target", swept_value=_fmt(cfg["optim"]["target"]))
    ov = ov + [f"identity.{k}={_fmt(v)}" for k, v in ident.items() if v not in (None, "")]
    spec.cfg = C.build(spec.config, ov)
    spec.overrides = ov
    spec.name = C.run_name(spec.cfg)
    return spec


def row_label(point, cfg):
    """The comparison a run belongs to: its paper row (the `at:`/config file), else
    dataset-model-width."""
    if point.get("row"):
        return os.path.basename(point["row"]).removesuffix(".yaml")
    w = f"-w{cfg['width']:g}" if cfg["width"] != 1.0 else ""
    return f"{cfg['dataset']}-{cfg['model']}{w}"


def profile_name(path):
    return os.path.basename(path).removesuffix(".yaml")


def _known_now(spec, results, done=None):
    """Materialize a run whose dependencies are finished on disk already (for --dry-run)."""
    done = done or is_finished
    if spec.name or spec.cfg:
        return True
    if spec.deps_searching():
        return False
    for d in spec.deps:
        if not _known_now(d, results, done) or not done(d.cfg, results):
            return False
    materialize(spec, results)
    return True


def known(specs, results, done=None):
    """The runs whose names the run folders on disk determine, in profile order, with the λ
    searches replayed from their finished rounds; and the runs still waiting (on a dependency
    or a search). For --dry-run and the report: the same rules as run_all, nothing trained."""
    specs, out, waiting = list(specs), [], []
    i = 0
    while i < len(specs):
        s = specs[i]
        i += 1
        if s.waiting_on_search() or (s.after is not None and s.after.failed) or not _known_now(s, results, done):
            waiting.append(s)
            continue
        out.append(s)
        if s.search is not None and not s.search.done and (done or is_finished)(s.cfg, results):
            nxt = next_round(s, results)
            if nxt is not None:
                specs.insert(i, nxt)
    return out, waiting


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

def _die_with_parent():
    """In the child, before exec: SIGTERM it when the sweep dies, however it dies (SIGKILL
    included), so a killed sweep leaves no train.py racing a rerun (Linux; elsewhere a no-op).
    train.py stops at its last checkpoint on SIGTERM."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


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
            try:
                f = open(log, "a")
                print(_header(spec, self.results), file=f, flush=True)
            except OSError as e:   # full disk, read-only folder: the sweep stops (one line)
                e.filename = e.filename or log
                raise
            with f:
                if self.stopping:
                    return 130, "not started: the sweep was stopped"
                proc = subprocess.Popen(train_argv(spec, self.results), stdout=f, stderr=subprocess.STDOUT,
                                        env=env, cwd=REPO, preexec_fn=_die_with_parent)
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
PREEMPT_WAIT_S = 300
RDZV_PORT = (20000, 10000)   # rendezvous port 20000 + job id mod 10000 (below Linux's ephemeral range)


def slurm_script(spec, results, gpus=1, nodes=1, cpus=8, signal_name="USR2"):
    """The bash script of one run's SLURM job (one task per node). gpus x nodes > 1: torchrun
    (python -m torch.distributed.run) on every node, `gpus` processes each (at least 1),
    c10d rendezvous at the job's first host; CPU threads per process = cpus / processes."""
    log = shlex.quote(log_path(results, spec.name))
    argv = train_argv(spec, results)
    procs = max(1, gpus)
    dist = procs * nodes > 1
    threads = max(1, cpus // procs) if dist else cpus
    header = f'echo "{MARK}$(date "+%Y-%m-%d %H:%M:%S")" {shlex.quote(shlex.join(argv[1:]))}'   # as _header
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
            log = log_path(self.results, s.name)
            try:
                codes = j.results()   # one per task (node); the first that failed counts
                code = next((c for c in codes if c != 0), 0)
                note = "" if code == 0 else f"exit {code}: {_last_line(log)} (log: {log})"
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


# ----------------------------------------------------------------------------- scheduling

def run_all(specs, results, launcher, state=None):
    """Launch every run whose dependencies are done; returns {id(spec): (status, note)}
    (`state`: fill this dict instead, so that a caller still has it after an exception).

    Ready runs wait in one queue, runs that others depend on first, then in profile order
    (profiles list their expensive runs first); the local launcher takes from it whenever a
    slot is free, the SLURM launcher takes all of it (one job array per wave). A finished
    round of a λ search adds the next round to `specs` (and to the queue's inputs)."""
    state = {} if state is None else state
    claimed, running, queue = {}, {}, []
    order = {id(s): i for i, s in enumerate(specs)}
    pending, born = list(specs), []

    def settle(s, status, note=""):
        state[id(s)] = (status, note)
        if s.search is None or status not in ("finished", "skipped"):
            if s.search is not None:
                s.search.done, s.search.failed = True, f"round {s.name or s.label()} {status}"
            return
        try:
            nxt = next_round(s, results)
        except (OSError, KeyError, ValueError, runs.RunFolderError) as e:
            s.search.done, s.search.failed = True, f"cannot read round {s.name}: {e}"
            nxt = None
        if nxt is not None:
            order[id(nxt)] = order[id(s)]
            specs.insert(specs.index(s) + 1, nxt)
            born.append(nxt)
        elif s.search.failed or s.search.note:
            print(f"calibration {s.search.label}: {s.search.failed or s.search.note}"
                  + ("" if s.search.failed else "; the other seeds run at the closest round's value"), flush=True)

    try:
        while pending or running or queue or born:
            pending, born[:] = pending + born, []
            still, settled = [], len(state)
            for s in pending:
                dep_states = [state.get(id(d), ("",))[0] for d in s.deps]
                bad = [d for d, st in zip(s.deps, dep_states) if st in ("failed", "blocked")]
                failed = [d.search.failed for d in s.deps if d.search is not None and d.search.failed]
                if not bad and s.after is not None and s.after.done and s.after.failed:
                    failed.append(s.after.failed)
                if not bad and failed:
                    state[id(s)] = ("blocked", f"calibration: {failed[0]}")
                    print(f"blocked {s.label()}: {state[id(s)][1]}", flush=True)
                    continue
                if bad:
                    state[id(s)] = ("blocked", f"{bad[0].name or bad[0].label()} {state[id(bad[0])][0]}")
                    print(f"blocked {s.label()}: {state[id(s)][1]}", flush=True)
                    continue
                if (not all(st in ("finished", "skipped") for st in dep_states) or s.waiting_on_search()
                        or s.deps_searching()):
                    still.append(s)
                    continue
                if s.cfg is None:
                    try:
                        materialize(s, results)
                    except (C.ConfigError, OSError, KeyError, ValueError, runs.RunFolderError) as e:
                        settle(s, "failed", f"config: {e}")
                        print(f"FAILED {s.label()}: {e}", flush=True)
                        continue
                other = claimed.get(s.name)
                if other is not None and other is not s:   # the same run twice in a profile
                    if id(other) in state:
                        st = state[id(other)]
                        settle(s, *(("skipped", "") if st[0] in ("finished", "skipped") else st))
                    else:
                        still.append(s)
                    continue
                claimed[s.name] = s
                if is_finished(s.cfg, results):
                    settle(s, "skipped")
                else:
                    queue.append(s)
            pending = still
            queue.sort(key=lambda s: (not s.dependents and s.search is None, order[id(s)]))
            n = launcher.free(len(running))
            if n and queue:
                running.update(launcher.submit(queue[:n]))
                queue = queue[n:]
            if not running:
                if pending and not queue and not born and len(state) == settled:  # a bug
                    for s in pending:
                        state[id(s)] = ("blocked", "dependency never finished")
                    pending = []
                continue
            for s, code, note in launcher.wait(running):
                for h in [h for h, v in running.items() if v is s]:
                    del running[h]
                print(f"{'done  ' if code == 0 else 'FAILED'} {s.name}" + (f" ({note})" if note else ""),
                      flush=True)
                settle(s, *(("finished", "") if code == 0 else ("failed", note)))
    except BaseException:   # Ctrl-C, a full disk: the running children stop at a checkpoint
        launcher.close(cancel=True, handles=running)
        raise
    launcher.close()
    return state


def print_table(specs, state, seconds=None):
    """The status table (runs a stopped sweep never settled count as `not run`)."""
    counts = {k: 0 for k in TERMINAL + ("not run",)}
    for s in specs:
        counts[state.get(id(s), ("not run",))[0]] += 1
    print("\n| status   | runs |\n|----------|-----:|")
    for k in TERMINAL + (("not run",) if counts["not run"] else ()):
        print(f"| {k:<8} | {counts[k]:>4} |")
    if seconds is not None:
        print(f"\n{len(specs)} runs in {seconds:.0f}s")
    for kind in ("failed", "blocked"):
        for s in specs:
            st, note = state.get(id(s), ("not run", ""))
            if st == kind:
                print(f"  {kind}: {s.name or s.label()}: {note}")
    return counts


def dry_run(specs, results):
    done = todo = dup = 0
    seen = set()
    try:
        ready, waiting = known(specs, results)
    except (C.ConfigError, runs.RunFolderError) as e:
        print(f"  error: {e}")
        return 2
    for s in ready:
        if s.name in seen:
            dup += 1
            print(f"  same  {s.name}  ({s.entry}: the same run as above, run once)")
        elif is_finished(s.cfg, results):
            done += 1
            print(f"  done  {s.name}")
        else:
            todo += 1
            print(f"  todo  {s.name}")
        seen.add(s.name)
    for s in waiting:
        if s.after is not None:
            why = f"calibration: {s.after.failed}" if s.after.failed else f"the λ search of {s.after.label}"
        else:
            what = ", ".join(sorted({d.name or d.label() for d in s.deps}))
            kinds = "/".join(k for k in ("target_from", "init_from")
                             if (s.target_from if k == "target_from" else s.init_from))
            why = f"{kinds} {what}"
        print(f"  wait  {s.label()}  ({why})")
    print(f"{len(ready) - dup + len(waiting)} runs: {done} finished, {todo} to run, {len(waiting)} waiting "
          f"on a dependency or a λ search" + (f" ({dup} entries name a run listed already)" if dup else ""))
    return 0


def find_profile(name):
    if os.path.exists(name):
        return name
    path = os.path.join(REPO, "configs", "profiles", name + ".yaml")
    if not os.path.exists(path):
        folder = os.path.join(REPO, "configs", "profiles")
        known = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))
        raise ProfileError(f"no profile '{name}'; known: {', '.join(known)}")
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile", nargs="?", help="a profile YAML or a name under configs/profiles/")
    p.add_argument("--reindex", action="store_true",
                   help="rebuild RESULTS/runs.csv from the run folders, then exit (no profile needed)")
    p.add_argument("--results", default="results", help="where runs.csv, runs/ and logs/ live")
    p.add_argument("--dry-run", action="store_true", help="list the runs and what is done; run nothing")
    p.add_argument("--launcher", choices=("local", "slurm"), default="local")
    p.add_argument("--only", metavar="ENTRY[,ENTRY]",
                   help="only these entries of the profile (and the runs they depend on)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="an override for every run, after the profile's (repeatable; e.g. a smoke "
                        "test with --set epochs=1 --set train_subset=128: other run names)")
    g = p.add_argument_group("local launcher")
    g.add_argument("--jobs", type=int, default=0,
                   help="runs at once (default: --runs-per-gpu per visible GPU, else CPU cores / --threads)")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads per run, >= 1 (default: CPU cores / jobs)")
    g.add_argument("--runs-per-gpu", type=int, default=1, metavar="K",
                   help="with visible GPUs: at most K runs share a GPU (default 1); --jobs defaults "
                        "to K x GPUs and may not exceed it. Ignored on the CPU")
    g = p.add_argument_group("slurm launcher (submitit)")
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
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        print(f"error: --threads must be >= 1 (CPU threads per run), got {args.threads}", file=sys.stderr)
        return 2
    results = os.path.abspath(args.results)
    if args.reindex:
        try:
            n, skipped = runs.reindex(results, warn=lambda m: print(m, file=sys.stderr))
        except OSError as e:
            print(f"error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
            return 1
        print(f"{os.path.join(args.results, runs.INDEX)}: {n} runs from the run folders"
              + (f"; {len(skipped)} incomplete folder(s) left out" if skipped else ""))
        return 0
    if not args.profile:
        p.error("a profile is needed (or --reindex)")
    for flag, value, low in (("--runs-per-gpu", args.runs_per_gpu, 1), ("--nodes", args.nodes, 1),
                             ("--gpus", args.gpus, 0), ("--max-timeouts", args.max_timeouts, 0)):
        if value < low:
            print(f"error: {flag} must be >= {low}", file=sys.stderr)
            return 2
    try:
        specs = expand(find_profile(args.profile), args.set or ())
        if args.only:
            specs = only(specs, args.only.split(","))
        for s in specs:  # resolve what is known now: catches config errors before launching
            if not s.deps and s.after is None:
                materialize(s, results)
    except (ProfileError, C.ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        problem = runs.index_problem(results)
        if problem:
            print(f"note: {os.path.join(args.results, runs.INDEX)} is {problem}; a real run "
                  f"rebuilds it from the run folders")
        return dry_run(specs, results)
    state, t0 = {}, time.time()
    try:
        rebuilt = runs.ensure_index(results)   # a lost or damaged row is never lost for good
        if rebuilt:
            print(rebuilt, flush=True)
        n_done = sum(1 for s in specs if s.cfg is not None and is_finished(s.cfg, results))
        if args.launcher == "local" and args.jobs < 0:
            print("error: --jobs must be >= 1 (0: one per GPU or CPU core)", file=sys.stderr)
            return 2
        if args.launcher == "local":
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
        print(f"{len(specs)} runs: {n_done} finished already, {len(specs) - n_done} to run or check", flush=True)
        if args.launcher == "local":
            where = (f"GPUs {','.join(map(str, gpus))} (at most {args.runs_per_gpu} per GPU)" if gpus else "CPU")
            print(f"local: {jobs} at once, {where}, {threads} thread(s) each", flush=True)
            launcher = LocalLauncher(results, jobs, threads, gpus, args.runs_per_gpu)
        else:
            try:
                launcher = SlurmLauncher(results, args)
            except Exception as e:  # no sbatch, bad parameter: one line
                print(f"error: slurm launcher: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                      file=sys.stderr)
                return 2
        os.makedirs(os.path.join(results, "logs"), exist_ok=True)
        t0 = time.time()
        run_all(specs, results, launcher, state)
    except KeyboardInterrupt:   # Ctrl-C: what was settled, then one line
        print_table(specs, state, time.time() - t0)
        print("interrupted: running runs stopped at their last finished epoch's checkpoint; "
              "run the same command to resume", file=sys.stderr)
        return 130
    except OSError as e:        # a full disk, a read-only results folder
        print_table(specs, state, time.time() - t0)
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e} (finished runs are kept; fix it and rerun the same "
              f"command)", file=sys.stderr)
        return 1
    counts = print_table(specs, state, time.time() - t0)
    return 1 if counts["failed"] or counts["blocked"] else 0


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
    sys.exit(main())

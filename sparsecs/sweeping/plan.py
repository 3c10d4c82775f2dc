"""Run state: what a run's dependencies give it, its name, whether it is done, the next round
of a λ search, and which runs the folders on disk determine (for --dry-run and the report)."""
import copy
import math
import os

from sparsecs import config as C
from sparsecs import criteria
from sparsecs import paths
from sparsecs import schema
from sparsecs import summaries
from sparsecs.optim import get_method

from .profile import TARGET_POINT, ProfileError, Spec, _fmt, _rel
from .search import internal


def next_round(spec, results):
    """After round `spec` of a search finished: the next round's Spec, or None (search done)."""
    search = spec.search
    value = _override_value(spec.overrides, search.key)
    summary = summaries.read_summary(run_dir(results, spec.name))
    measured = internal(target_value(results, spec, search.metric), search.metric)
    nxt = search.record(value, measured, criteria.collapsed(summary))
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
    return select(specs, entries=names)


def level(spec):
    """A run's target level: its calibrated entry's target (target_sparsity, or a MACs level:
    profile.TARGET_POINT) or its grid's optim.target (a run matched to another entry's point
    carries that point's); None for neither (dense)."""
    for key in (*TARGET_POINT.values(), "optim.target"):
        v = spec.point.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def needs(spec):
    """The runs `spec` cannot run without: its dependencies (target_from, init_from), round 1 of
    the λ search it takes its value from (a follower seed), and for round 1 of a chained search,
    round 1 of the previous target's search (its later rounds are born from round 1 as it runs)."""
    out = list(spec.deps)
    if spec.after is not None and spec.after.specs:
        out.append(spec.after.specs[0])
    search = spec.search
    if search is not None and search.chain is not None and search.specs and search.specs[0] is spec \
            and search.chain.specs:
        out.append(search.chain.specs[0])
    return out


def select(specs, entries=None, seeds=None, levels=None):
    """The runs that --only (entry names), --seeds (ints) and --levels (floats) all keep (None:
    no such filter; a run without a level passes --levels) and, transitively, every run they
    need (needs()), so that the kept set runs to the end. Names and configs are untouched: this
    only selects. A value the profile does not have is a ProfileError (one line)."""
    if entries is not None:
        known = {s.entry for s in specs}
        bad = [n for n in entries if n not in known]
        if bad:
            names = ", ".join(dict.fromkeys(s.entry for s in specs))
            raise ProfileError(f"--only: no entry {', '.join(bad)}; entries: {names}")
    if seeds is not None:
        have = sorted({s.seed for s in specs})
        bad = [x for x in seeds if x not in have]
        if bad:
            raise ProfileError(f"--seeds: {', '.join(map(str, bad))} is not a seed of the profile; "
                               f"its seeds: {', '.join(map(str, have))}")
    if levels is not None:
        have = sorted({v for v in map(level, specs) if v is not None})
        bad = [x for x in levels if not any(math.isclose(x, v, rel_tol=0, abs_tol=1e-9) for v in have)]
        if bad:
            raise ProfileError(f"--levels: no entry has level {', '.join(_fmt(x) for x in bad)}; "
                               f"the profile's levels: {', '.join(_fmt(v) for v in have) or 'none'}")

    def picked(s):
        lv = level(s)
        return ((entries is None or s.entry in entries) and (seeds is None or s.seed in seeds)
                and (levels is None or lv is None
                     or any(math.isclose(lv, x, rel_tol=0, abs_tol=1e-9) for x in levels)))

    keep = set()
    todo = [s for s in specs if picked(s)]
    if not todo:
        raise ProfileError("no run of the profile passes " + " and ".join(
            f"{flag} {','.join(map(_fmt, v))}" for flag, v in
            (("--only", entries), ("--seeds", seeds), ("--levels", levels)) if v is not None))
    while todo:
        s = todo.pop()
        if id(s) not in keep:
            keep.add(id(s))
            todo += needs(s)
    return [s for s in specs if id(s) in keep]


def run_dir(results, name):
    return paths.run_dir(results, name)


# A complete run without weights (results committed to git, made by an earlier session or
# another machine) counts as done: training it again would write over committed evidence, so
# only `sweep.py --retrain` does (it sets this False).
REUSE_COMPLETE = True


def is_finished(cfg, results):
    name = C.run_name(cfg)
    if summaries.is_finished(results, name):
        return True
    return REUSE_COMPLETE and is_committed(name, results)


def is_committed(name, results):
    """A complete run without its weights (model.pt): committed results, reused unless --retrain.
    A damaged summary.json is not one: that run is trained again (summaries.finished_summary says so)."""
    folder = run_dir(results, name)
    if os.path.exists(os.path.join(folder, paths.MODEL)):
        return False
    try:
        return summaries.complete_summary(folder) is not None
    except (OSError, ValueError, paths.RunFolderError):
        return False


def weight_users(specs):
    """{id(run): the runs that start from its weights (init_from)}."""
    out = {}
    for s in specs:
        if s.init_from is not None:
            out.setdefault(id(s.init_from), []).append(s)
    return out


def weights_wanted(spec, users, results):
    """True for a run --reuse-complete would reuse without its weights while a run still to
    train starts from them (init_from): that run is trained again here (train.py retrains a
    folder with no model.pt), or every run after it would fail. A user counts as done when
    its config is known from what is on disk and it is complete itself."""
    if not users or summaries.is_finished(results, spec.name):
        return False
    for d in users:
        others = [x for x in d.deps if x is not spec]
        if any(x.cfg is None or not is_finished(x.cfg, results) for x in others):
            return True
        t = d
        if d.cfg is None:
            t = copy.copy(d)            # a copy: the scheduler materializes d itself later
            t.overrides = list(d.overrides)
            try:
                materialize(t, results)
            except (C.ConfigError, OSError, KeyError, ValueError, paths.RunFolderError):
                return True
        if not is_finished(t.cfg, results):
            return True
    return False


def target_value(results, spec, metric="sparsity"):
    """A finished run's sparsity, the fraction of its conv filters or kernels all zero, or the
    fraction of its dense multiply-adds the slim export keeps (macs_structural / flops_dense;
    a run whose slim export failed, NaN there: ValueError, one line)."""
    folder = run_dir(results, spec.name)
    if metric == "sparsity":
        return float(summaries.read_summary(folder)["sparsity"])
    if metric == "macs_structural_fraction":
        s = summaries.read_summary(folder)
        v = float(s["macs_structural"]) / float(s["flops_dense"])
        if not 0 <= v <= 1:       # NaN too
            raise ValueError(f"{spec.name}: macs_structural is {s['macs_structural']} of "
                             f"{s['flops_dense']} dense: no MACs fraction to calibrate on")
        return v
    v = summaries.zero_fraction(folder, "filters" if metric == "filter_sparsity" else "kernels")
    return 0.0 if v is None else v


def dependency_overrides(spec, results):
    """What finished dependencies give: optim.target (mean sparsity over the matched point's
    seeds, 6 decimals; a search's target instead, for a calibrated entry), the calibrated
    value for the seeds after a search, and init_from (the run folder, repo-relative when
    inside the repo)."""
    ov = []
    search = spec.search or spec.after
    if spec.search is not None and (spec.search.chain is not None or spec.search.start_from) \
            and spec is spec.search.specs[0]:
        resolve_start(spec.search, results)
        ov.append(f"{spec.search.key}={spec.search.first_value()!r}")
    if spec.target_from:
        vals = [target_value(results, calibrated(d), spec.target_metric) for d in spec.target_from]
        target = round(sum(vals) / len(vals), 6)
        if search is None:
            ov.append(f"optim.{target_key(spec)}={target!r}")
        elif search.target is None or not search.history:
            search.target = internal(target, search.metric)
    if spec.after is not None:
        ov.append(f"{spec.after.key}={spec.after.follower_value()!r}")
    if spec.init_from:
        ov.append(f"init_from={_rel(os.path.abspath(run_dir(results, spec.init_from.name)))}")
    return ov


# ----------------------------------------------------------------------------- start_from

_SOURCES = {}   # (source profile path, results, folders) -> {entry: [its searches, replayed from disk]}


def _complete(cfg, results):
    """Finished (weights there) or complete without weights (committed results)."""
    name = C.run_name(cfg)
    return summaries.is_finished(results, name) or summaries.complete_summary(run_dir(results, name)) is not None


def source_searches(profile, results):
    """{entry: [Search]} of another profile, its searches replayed from the complete runs in
    RESULTS/runs (weights not needed), as the sweep would replay them; cached per process
    while the number of run folders stays the same."""
    from .expansion import expand
    from .profile import find_profile
    path = os.path.abspath(find_profile(profile))
    root = os.path.join(results, "runs")
    # a new run folder (a source still running, a test) replays again
    key = (path, os.path.abspath(results), len(os.listdir(root)) if os.path.isdir(root) else 0)
    if key not in _SOURCES:
        specs = expand(path)
        ready, waiting = known(specs, results, done=_complete)
        out = {}
        for s in ready + waiting:
            if s.search is not None and s.search.specs and s.search.specs[0] is s:
                out.setdefault(s.entry, []).append(s.search)
        _SOURCES[key] = out
    return _SOURCES[key]


def budget(cfg):
    """{"hp", "steps", "lr_sum"} of a resolved run config: the optimizer steps it takes and the
    sum of its learning rates over them (its method's schedule), for Method.budget_factor."""
    from sparsecs import data
    from sparsecs.optim.schedules import Schedule, warmup_steps
    hp = dict(cfg["optim"])
    if "lr" in hp:
        hp["lr"] = hp["lr"] * cfg["lr_scale"]
    n = data.get(cfg["dataset"]).n_train
    if cfg["train_subset"]:
        n = min(n, int(cfg["train_subset"])) if n else int(cfg["train_subset"])
    if not n:
        raise ProfileError(f"start_from: the training set size of {cfg['dataset']} is unknown: "
                           f"cannot scale a λ to its budget")
    spe = math.ceil(n / int(cfg["batch_size"]))
    steps = spe * int(cfg["epochs"])
    lr = float(hp.get("lr", 0.0))
    if "schedule" not in hp or not lr:
        return {"hp": hp, "steps": steps, "lr_sum": lr * steps}

    class _Groups:   # the schedule reads only its optimizer's param groups
        param_groups = [{"lr": lr}]
    hp_w = {**hp, "warmup_epochs": cfg["warmup_epochs"]}
    sched = Schedule(_Groups(), hp["schedule"], steps, spe, hp.get("milestones") or (),
                     hp.get("gamma", 0.1), warmup_steps=warmup_steps(hp_w, spe))
    return {"hp": hp, "steps": steps, "lr_sum": sum(lr * sched.factor(t) for t in range(1, steps + 1))}


def resolve_start(search, results):
    """Set a start_from search's source value, budget factor and note (once; the chain's
    searches first). The source value: the source profile's search for the same target (and
    grid point), its calibrated round, or when it missed its closest healthy round. A source
    entry with no search rounds in `results` (a fresh results folder) and a target it did not
    search start at `start` (or from the chain), with a note."""
    if search.chain is not None:
        resolve_start(search.chain, results)
    sf = search.start_from
    if not sf or search.start_note:
        return
    from .profile import find_profile, profile_name
    prof, entry = sf["profile"], sf["entry"]
    prof_label = profile_name(find_profile(prof))
    theirs = [x for x in source_searches(prof, results).get(entry, []) if x.history]
    if not theirs:   # a fresh results folder: search as without start_from, and say so
        search.start_note = (f"start_from {prof_label}/{entry}: no λ search rounds of entry '{entry}' in "
                             f"{os.path.join(results, 'runs')}; round 1 "
                             + ("from the previous target's rounds" if search.chain is not None and
                                search.chain.history else f"at start {search.key}={search.start:g}"))
        return
    mine = search.specs[0]
    point = {k: v for k, v in mine.point.items() if k not in TARGET_POINT.values()}
    match = [x for x in theirs if x.target is not None and search.target is not None
             and x.metric == search.metric
             and math.isclose(x.target, search.target, rel_tol=0, abs_tol=1e-9)
             and all(x.specs[0].point.get(k, v) == v for k, v in point.items() if k != "row")]
    where = f"start_from {prof_label}/{entry} at {_fmt(search.level)}"
    if not match or match[0].best() is None:
        why = "has no search for this target" if not match else "has only collapsed rounds"
        search.start_note = (f"{where}: {prof_label} {why}; round 1 "
                             + ("from the previous target's rounds" if search.chain else
                                f"at start {search.key}={search.start:g}"))
        return
    src = match[0]
    value, sparsity, _ = src.best()
    how = ("calibrated" if src.status == "reached" else
           f"missed ({src.why}): its closest healthy round" if src.done else "still searching: its closest round so far")
    if search.key != src.key:
        raise ProfileError(f"start_from: {prof}/{entry} searched {src.key}, this entry {search.key}")
    old_cfg, new_cfg = src.specs[0].cfg, spec_cfg(mine)
    method = get_method(new_cfg["method"])
    if old_cfg is None or get_method(old_cfg["method"]) is not method:
        raise ProfileError(f"start_from: {prof}/{entry} is not the same method as {search.label}")
    factor, why = method.budget_factor(search.key.removeprefix("optim."), budget(old_cfg), budget(new_cfg))
    search.source, search.factor = value, factor
    search.start_note = (f"{where}: {search.key}={value:g} ({how}, sparsity {sparsity:.4f}) x {factor:.4g} "
                         f"({method.name}: {why}) = {value * factor:g}")


def start_notes(specs, results):
    """One line per start_from search of these runs: where its round 1 comes from."""
    out, seen = [], set()
    for sp in specs:
        x = sp.search
        if x is None or not x.start_from or id(x) in seen or not x.specs or x.specs[0] is not sp:
            continue
        seen.add(id(x))
        resolve_start(x, results)
        line = x.start_note
        if x.source is not None:
            prev = x.chain
            near = prev._first_near() if prev is not None and prev.source is not None else None
            if near is not None:
                line += f"; round 1 at {x.first_value():g} (x {prev.history[near][0] / prev.source:.4g}, " \
                        f"the factor the previous target's search measured)"
            elif prev is not None and prev.source is not None and not prev.done:
                line += " (or the factor the previous target's search measures, once it is near its target)"
        out.append(line)
    return out


def target_key(spec):
    """The optim.* key a target sparsity goes into for this run's method (role "target", schema.py)."""
    extra = ["init_from=pending"] if spec.init_from else []
    method = get_method(C.build(spec.config, spec.overrides + extra)["method"])
    key = schema.target_key(method)
    if key is None:
        raise ProfileError(f"{spec.entry}: target_from needs a method that takes a target sparsity; "
                           f"'{method.name}' has none (calibrate it instead)")
    return key


def calibrated(spec):
    """The run that stands for `spec` as a dependency: for round 1 of a λ search, the round
    its followers run at (search.value(): the calibrated round, or the closest with on_miss:
    closest); otherwise spec itself. None for a search that missed and runs no followers."""
    if spec.search is None or not spec.search.history:
        return spec
    v = spec.search.value()
    if v is None:
        return None
    return spec.search.specs[[h[0] for h in spec.search.history].index(v)]


def missed(spec):
    """A dependency whose λ search ended without a value to match: the reason, else ''."""
    s = spec.search
    return s.note if s is not None and s.done and s.value() is None and not s.failed else ""


def never_runs(spec):
    """Why a waiting run will never run: it follows, or depends on, a λ search that ended
    without reaching its target (a fact the report shows, not work still to do); '' while it
    can still run. A search that failed (an error) is not settled: a rerun may finish it."""
    a = spec.after
    if a is not None and a.done and not a.failed and a.follower_value() is None:
        return f"its λ search did not reach its target ({a.note})"
    for d in spec.deps:
        if missed(d) or never_runs(d):
            return f"it depends on {d.name or d.label()}, whose λ search did not reach its target"
    return ""


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
        ident["calibration_target"] = search.level     # in the metric's units (a MACs level)
        ident["swept_value"] = _fmt(_override_value(ov, search.key))
        if spec.after is not None and spec.after.status == "not reached":
            ident["calibration_status"] = "not reached"
    elif spec.target_from and not ident.get("swept_key"):
        key = schema.target_key(get_method(cfg["method"]))
        ident.update(swept_key=f"optim.{key}", swept_value=_fmt(cfg["optim"][key]))
    ov = ov + [f"identity.{k}={_fmt(v)}" for k, v in ident.items() if v not in (None, "")]
    spec.cfg = C.build(spec.config, ov)
    spec.overrides = ov
    spec.name = C.run_name(spec.cfg)
    return spec


def spec_cfg(spec):
    """A run's resolved config, or for a run still waiting on a dependency its config with
    placeholders for what a dependency gives (init_from; a searched key's value, at the search's
    start): its epochs, data and model are known before its name is."""
    if spec.cfg is not None:
        return spec.cfg
    ov = list(spec.overrides) + (["init_from=pending"] if spec.init_from else [])
    ov += [f"{x.key}={x.start!r}" for x in (spec.search, spec.after) if x is not None]
    return C.build(spec.config, ov)


# the config keys of a training setting: the same data, model and method run at other speeds
SETTING_KEYS = ("precision", "channels_last", "compile")


def setting(cfg):
    """A run's training setting (SETTING_KEYS), None for a key it does not hold."""
    return tuple(cfg.get(k) for k in SETTING_KEYS)


def _run_setting(folder, summary):
    """The setting a run trained in: its config.yaml, else what its summary holds."""
    import yaml
    try:
        with open(paths.path(folder, paths.CONFIG)) as f:
            cfg = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        cfg = None
    return setting(cfg if isinstance(cfg, dict) else summary)


def epoch_seconds(results):
    """{(dataset, model, width, method): {(setting, device_name): (seconds, epochs)}}: the
    seconds (metrics.csv `seconds`: training and the epoch's evaluation) and epochs of the
    complete runs in RESULTS/runs, by training setting (setting()) and the machine that trained
    them (summary `device_name`); for --dry-run's cost estimate (epoch_time). Unreadable folders
    are passed over."""
    root = os.path.join(results, "runs")
    out = {}
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        folder = os.path.join(root, name)
        try:
            s = summaries.complete_summary(folder)
            secs = [float(r["seconds"]) for r in summaries.read_metrics(folder)] if s else []
        except (OSError, ValueError, KeyError, paths.RunFolderError):
            continue
        if secs:
            key = (s["dataset"], s["model"], float(s["width"]), s["method"])
            sub = out.setdefault(key, {})
            where = (_run_setting(folder, s), str(s.get("device_name") or "unknown"))
            total, n = sub.get(where, (0.0, 0))
            sub[where] = (total + sum(secs), n + len(secs))
    return out


def time_key(cfg):
    return (cfg["dataset"], cfg["model"], float(cfg["width"]), cfg["method"])


def epoch_time(measured, cfg, device):
    """(seconds an epoch, how, cells) for a run to train on `device` (this machine's
    device_name): the mean over complete runs of its data, model, width and method in its
    setting on this machine (how "here"); else in its setting on other machines ("other");
    else in another setting, this machine's runs first ("setting"); (None, "", ()) when none
    ran. cells: the (setting, device_name) pairs the mean is over."""
    by = measured.get(time_key(cfg)) or {}
    mine = setting(cfg)

    def mean(cells):
        return sum(by[c][0] for c in cells) / sum(by[c][1] for c in cells)
    for how, cells in (("here", [c for c in by if c == (mine, device)]),
                       ("other", [c for c in by if c[0] == mine]),
                       ("setting", [c for c in by if c[1] == device] or list(by))):
        if cells:
            return mean(cells), how, tuple(sorted(cells, key=repr))
    return None, "", ()


def row_label(point, cfg):
    """The comparison a run belongs to: its paper row (the `at:`/config file), else
    dataset-model-width."""
    if point.get("row"):
        return os.path.basename(point["row"]).removesuffix(".yaml")
    w = f"-w{cfg['width']:g}" if cfg["width"] != 1.0 else ""
    return f"{cfg['dataset']}-{cfg['model']}{w}"


def _known_now(spec, results, done=None):
    """Materialize a run whose dependencies are finished on disk already (for --dry-run)."""
    done = done or is_finished
    if spec.name or spec.cfg:
        return True
    if spec.deps_searching() or any(missed(d) for d in spec.deps):
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
        no_value = s.after is not None and (s.after.failed or (s.after.done and s.after.follower_value() is None))
        no_value = no_value or (s.search is not None and s.search.chain is not None and bool(s.search.chain.failed))
        if s.waiting_on_search() or no_value or not _known_now(s, results, done):
            waiting.append(s)
            continue
        out.append(s)
        if s.search is not None and not s.search.done and (done or is_finished)(s.cfg, results):
            nxt = next_round(s, results)
            if nxt is not None:
                specs.insert(i, nxt)
    return out, waiting

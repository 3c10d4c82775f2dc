"""A profile's expansion into runs (Spec): each entry checked, its grid points, seeds, λ searches
and dependencies. The profile language itself (keys, checks, lookup) is profile.py."""
import itertools
import json
import math
import os
import types

from sparsecs import config as C
from sparsecs import schema
from sparsecs.optim import get_method

from .profile import (CALIBRATE_KEYS, ENTRY_KEYS, ON_MISS, REPO, ROW_KEYS, START_FROM_KEYS, TARGET_METRICS,
                      TARGET_POINT, ProfileError, Spec, _check_seeds, _fmt, _paths, _positive, _rel,
                      find_profile, load_profile, profile_name)
from .search import FALLING, SCALES, Search, internal


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
    if keys is None:
        keys = [f"optim.{k}" for k in schema.keys_with(get_method(cfg["method"]), "epochs")]
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


MAX_RUNS = 2000   # sweep.py --max-runs: a profile expanding to more needs the flag (a typo'd grid)


def _seed_override(overrides, where):
    """A `seed=` among overrides is refused: each run's seed comes from `seeds:` and would
    silently replace it."""
    for o in overrides:
        if str(o).split("=", 1)[0].strip() == "seed":
            raise ProfileError(f"{where}: '{o}': a run's seed comes from the profile's seeds: list, "
                               f"which would replace this value; choose seeds with --seeds S,... "
                               f"(each one of the profile's) or give the profile seeds: [...]")


def expand(profile_path, extra=(), max_runs=None):
    """[Spec] for every run of the profile, in profile order (dependencies reference Specs);
    `extra` KEY=VALUE overrides come after the profile's own (sweep.py --set). More than
    `max_runs` runs (counted before they are built): ProfileError."""
    prof = load_profile(profile_path)
    pname = profile_name(profile_path)
    extra = [str(o) for o in extra]
    _seed_override(extra, "--set")
    _seed_override(prof.get("overrides") or [], f"{os.path.basename(profile_path)}: overrides")
    counted = 0
    seeds = prof.get("seeds", [0])
    common = [str(o) for o in prof.get("overrides") or []]
    by_entry, specs = {}, []
    for i, entry in enumerate(prof["runs"]):
        ename = str(entry.get("name", f"entry{i}")) if isinstance(entry, dict) else f"entry{i}"
        where = f"{os.path.basename(profile_path)}: runs[{i}] ({ename})"
        e = _entry(entry, ename, where, prof, pname, by_entry)
        counted += (sum(math.prod(len(v) for v in a.values()) for a in e.axes_list) * len(e.targets)
                    * len(entry.get("seeds", seeds)))
        if max_runs is not None and counted > max_runs:
            raise ProfileError(f"{os.path.basename(profile_path)}: expands to more than {max_runs:,} runs "
                               f"(at least {counted:,} by runs[{i}] ({ename})); a grid that large is "
                               f"likely a mistake: to run it, confirm with --max-runs {counted}")
        static = common + e.own
        mine = []
        for axes, combo in ((a, c) for a in e.axes_list for c in itertools.product(*a.values())):
            mine += _point_runs(e, dict(zip(axes, combo)), static, extra, prof, entry.get("seeds", seeds))
        by_entry[ename] = mine
        specs += mine
        if max_runs is not None and len(specs) > max_runs:   # dependencies repeat runs
            raise ProfileError(f"{os.path.basename(profile_path)}: expands to more than {max_runs:,} runs "
                               f"({len(specs):,} by runs[{i}] ({ename})); a grid that large is likely a "
                               f"mistake: to run it, confirm with --max-runs N (N at least the total)")
    return specs


def _entry(entry, ename, where, prof, pname, by_entry):
    """One entry of `runs:`, checked (ProfileError, one line, in the order below): what its
    runs are built from."""
    if not isinstance(entry, dict):
        raise ProfileError(f"{where}: expected a mapping")
    bad = set(entry) - ENTRY_KEYS
    if bad:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(sorted(bad))}; "
                           f"known: {', '.join(sorted(ENTRY_KEYS))}")
    if ename in by_entry:
        raise ProfileError(f"{where}: duplicate entry name '{ename}'")
    configs, rows = _entry_sources(entry, where)
    axes_list = _entry_axes(entry, configs, rows, where)
    deps = _entry_deps(entry, by_entry, where)
    metric = entry.get("target_metric", "sparsity")
    if metric not in TARGET_METRICS:
        raise ProfileError(f"{where}: target_metric must be one of {', '.join(TARGET_METRICS)}")
    role = entry.get("role")
    if role is not None and role not in C.ROLES:
        raise ProfileError(f"{where}: role must be one of {', '.join(C.ROLES)}")
    calib, targets = _entry_targets(entry, where, pname, deps, metric)
    if "seeds" in entry:
        _check_seeds(entry["seeds"], where)
    escale = entry.get("epochs_scale")
    if escale is not None and not _positive(escale):
        raise ProfileError(f"{where}: epochs_scale must be a positive number")
    scale = prof.get("epochs_scale")
    own = [str(o) for o in entry.get("overrides") or []]
    _seed_override(own, f"{where}: overrides")
    if any("seed" in a for a in axes_list):
        raise ProfileError(f"{where}: grid axis 'seed': a run's seed comes from seeds: (give the "
                           f"entry seeds: [...] instead)")
    return types.SimpleNamespace(
        name=ename, where=where, pname=pname, configs=configs, rows=rows, axes_list=axes_list,
        deps=deps, metric=metric, role=role, calib=calib, targets=targets, own=own,
        row_keys=entry.get("row_keys", prof.get("row_keys", ROW_KEYS)),
        total_scale=(scale or 1.0) * (escale or 1.0) if (scale or escale) else None)


def _entry_sources(entry, where):
    """The entry's config files and `at:` rows (several of one kind, not of both)."""
    configs = _paths(entry.get("config"), where)
    rows = _paths(entry.get("at"), where)
    if len(configs) > 1 and rows:
        raise ProfileError(f"{where}: give several configs or 'at' rows, not both")
    if not configs and not rows and not entry.get("overrides"):
        raise ProfileError(f"{where}: needs a 'config', an 'at' or 'overrides'")
    return configs, rows


def _entry_axes(entry, configs, rows, where):
    """The entry's grids as {axis: values}, each with the `row` axis first where the entry has
    several configs or `at:` rows."""
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
    return axes_list


def _entry_deps(entry, by_entry, where):
    """{target_from|init_from: the named earlier entry's Specs}."""
    deps = {}
    for kind in ("target_from", "init_from"):
        if entry.get(kind) is not None:
            if entry[kind] not in by_entry:
                raise ProfileError(f"{where}: {kind}: '{entry[kind]}' is not an earlier entry")
            deps[kind] = by_entry[entry[kind]]
    return deps


def _entry_targets(entry, where, pname, deps, metric):
    """The entry's calibration (or None) and its targets ([None]: no search per target)."""
    calib = _calibration(entry, where)
    if calib and calib["start_from"] and profile_name(find_profile(calib["start_from"]["profile"])) == pname:
        raise ProfileError(f"{where}: calibrate.start_from names this profile itself")
    tkey = _targets_key(entry, metric, where)
    if calib and tkey not in entry and "target_from" not in deps:
        raise ProfileError(f"{where}: calibrate needs {tkey} or target_from")
    if entry.get(tkey) is not None and not calib:
        raise ProfileError(f"{where}: {tkey} needs calibrate: {{key: optim.lam, start: ...}}")
    if metric in FALLING and not calib:
        raise ProfileError(f"{where}: target_metric {metric} is read by a calibrated entry's "
                           f"search only (targets: [...] and calibrate: {{...}})")
    targets = entry.get(tkey)
    if targets is not None and not (isinstance(targets, list) and targets and all(
            _positive(t) and t < 1 for t in targets)):
        raise ProfileError(f"{where}: {tkey} must be a non-empty list of fractions in (0, 1)")
    return calib, targets or [None]


def _point_overrides(e, point, static, extra, epoch_keys):
    """One grid point's config and overrides: row keys, profile and entry overrides, grid
    values, epoch scaling, then --set (the seed and dependencies come later)."""
    row = point.get("row")
    configs = e.configs
    config = os.path.join(REPO, row) if row and len(configs) > 1 else (configs[0] if configs else None)
    base = _row_overrides(os.path.join(REPO, row), e.row_keys) if e.rows else []
    sets = [f"{k}={_fmt(v)}" for key, val in point.items() if key != "row"
            for k, v in (C.flatten(val) if isinstance(val, dict) else {key: val}).items()]
    static = base + static + sets
    if e.total_scale:  # (init_from is only known later; some methods refuse a config without it)
        pending = ["init_from=pending"] if "init_from" in e.deps else []
        static += _scaled(config, static + extra + pending, float(e.total_scale), epoch_keys)
    return config, static + extra


def _point_runs(e, point, static, extra, prof, ent_seeds):
    """The runs of one grid point: a λ search per target where the entry calibrates, else one
    run per seed (times the dependencies' matching points)."""
    config, static = _point_overrides(e, point, static, extra, prof.get("epoch_keys"))
    swept = {k: v for k, v in point.items() if k != "row" and not isinstance(v, dict)}
    ident = {"profile": e.pname, "entry": e.name, "role": e.role,
             "swept_key": ",".join(swept), "swept_value": ",".join(_fmt(v) for v in swept.values())}
    calib, metric, targets = e.calib, e.metric, e.targets
    previous = []   # calibrate.chain: the searches for the previous target, in order
    # the search's growing form (search.internal): a MACs level 0.1 is 0.9 of them removed
    grow = lambda v: -1 if v is None else internal(v, metric)
    order = sorted(targets, key=grow) if calib and calib["chain"] else targets
    given = [grow(v) for v in targets if v is not None]   # (for Search.side below)
    mine = []
    for t, target in enumerate(order):
        if calib:
            start = calib["start"][t] if isinstance(calib["start"], list) else calib["start"]
            # the lowest and highest targets calibrate on their outer side (Search.side)
            g = grow(target)
            side = (0 if target is None or len(set(given)) < 2 else
                    -1 if g == min(given) else 1 if g == max(given) else 0)
            made = _searches(e.name, e.where, config, static, point, ent_seeds, e.deps, metric,
                             ident, {**calib, "start": start, "side": side, "targets": given,
                                     "previous": previous if calib["chain"] else None}, target)
            previous = [r.search for r in made if r.search is not None]
            mine += made
            continue
        for seed in ent_seeds:
            mine += _with_deps(e.name, e.where, config, static, point, seed, e.deps, metric, ident)
    return mine


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


def _targets_key(entry, metric, where):
    """Which key holds a calibrated entry's targets: target_sparsity (the sparsity), or
    `targets:` in its target_metric's own units (required for any other metric)."""
    if "target_sparsity" in entry and "targets" in entry:
        raise ProfileError(f"{where}: give target_sparsity or targets, not both")
    if metric == "sparsity":
        return "targets" if "targets" in entry else "target_sparsity"
    if "target_sparsity" in entry:
        raise ProfileError(f"{where}: target_metric {metric}: give the targets in its units as "
                           f"targets: [...], not target_sparsity")
    return "targets"


def _calibration(entry, where):
    c = entry.get("calibrate")
    if c is None:
        return None
    if not isinstance(c, dict) or set(c) - set(CALIBRATE_KEYS):
        raise ProfileError(f"{where}: calibrate must map {', '.join(CALIBRATE_KEYS)}")
    c = {**CALIBRATE_KEYS, **c}
    if not isinstance(c["key"], str) or not c["key"]:
        raise ProfileError(f"{where}: calibrate.key must name the swept key, e.g. optim.lam")
    starts = c["start"] if isinstance(c["start"], list) else [c["start"]]
    if not starts or not all(_positive(v) for v in starts):
        raise ProfileError(f"{where}: calibrate.start must be a positive number, or a list of them "
                           f"(one per target_sparsity)")
    given = entry.get("target_sparsity") or entry.get("targets") or []
    if isinstance(c["start"], list) and len(starts) != len(given):
        raise ProfileError(f"{where}: calibrate.start lists {len(starts)} values for "
                           f"{len(given)} targets")
    if c["scale"] not in SCALES:
        raise ProfileError(f"{where}: calibrate.scale must be one of {', '.join(SCALES)}")
    if c["scale"] == "fraction" and not all(v < 1 for v in starts):
        raise ProfileError(f"{where}: calibrate.scale fraction: start must be a fraction in (0, 1)")
    if not isinstance(c["chain"], bool):
        raise ProfileError(f"{where}: calibrate.chain must be true or false")
    if c["on_miss"] not in ON_MISS:
        raise ProfileError(f"{where}: calibrate.on_miss must be one of {', '.join(ON_MISS)}")
    if not (_positive(c["tolerance"]) and c["tolerance"] < 1):
        raise ProfileError(f"{where}: calibrate.tolerance must be in (0, 1)")
    if not (isinstance(c["rounds"], int) and not isinstance(c["rounds"], bool) and c["rounds"] >= 1):
        raise ProfileError(f"{where}: calibrate.rounds must be a positive integer")
    if not (isinstance(c["fill"], int) and not isinstance(c["fill"], bool) and c["fill"] >= 0):
        raise ProfileError(f"{where}: calibrate.fill must be a whole number >= 0 (fill-in runs per seed)")
    sf = c["start_from"]
    if sf is not None:
        if not (isinstance(sf, dict) and "profile" in sf and set(sf) <= set(START_FROM_KEYS)
                and all(isinstance(v, str) and v for v in sf.values())):
            raise ProfileError(f"{where}: calibrate.start_from must map profile (and optionally entry) "
                               f"to names, e.g. {{profile: fashion, entry: xrda}}; got {_fmt(sf)[:80]}")
        c["start_from"] = {"profile": sf["profile"], "entry": sf.get("entry", entry.get("name"))}
    return c


def _searches(ename, where, config, static, point, seeds, deps, metric, ident, calib, target):
    """Round 1 of a λ search (first seed) and the other seeds' runs waiting for its result;
    with target_from, one search per matched point of that entry (its mean sparsity)."""
    if target is not None:   # one point per target, so that dependents match each one
        point = {**point, TARGET_POINT[metric]: target}
    first = _with_deps(ename, where, config, static, point, seeds[0], deps, metric, ident)
    out = []
    for n, r1 in enumerate(first):
        prev = calib.get("previous") or []
        search = Search(calib["key"], calib["start"], calib["tolerance"], calib["rounds"],
                        None if target is None else internal(target, metric),
                        label=r1.label(), on_miss=calib["on_miss"],
                        chain=prev[n] if n < len(prev) else None, side=calib.get("side", 0),
                        targets=calib.get("targets", ()), start_from=calib.get("start_from"),
                        metric=metric, scale=calib.get("scale", "log"), fill=calib.get("fill", 0))
        r1.search = search
        if search.chain is None and search.start_from is None:
            # a chained round 1 gets its value once the previous search ends; one with
            # start_from when the source profile's runs are read (startfrom.resolve_start)
            r1.overrides.append(f"{calib['key']}={search.start!r}")
        r1.identity.update(swept_key=calib["key"], calibration_round=1)
        search.specs.append(r1)
        out.append(r1)
        for seed in seeds[1:]:
            if deps.get("init_from"):   # each seed starts from its own seed's run (xRDA from dense)
                made = _with_deps(ename, where, config, static, r1.point, seed, deps, metric,
                                  {**ident, "swept_key": calib["key"]}, after=search)
                if len(made) != 1:
                    raise ProfileError(f"{where}: calibrate with init_from needs one run to start from "
                                       f"per seed at {r1.point}, found {len(made)}")
                out.append(made[0])
                continue
            follower = Spec(ename, config, static + [f"seed={seed}"], r1.point, seed, r1.target_from,
                            None, metric, {**ident, "swept_key": calib["key"]}, after=search)
            out.append(follower)
    return out

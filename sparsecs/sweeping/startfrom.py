"""start_from: a λ search's round 1 taken from another profile's search for the same target,
its value scaled by the method's budget factor (the steps and learning rates of each run)."""
import math
import os

from sparsecs import config as C
from sparsecs import summaries
from sparsecs.optim import get_method

from .expansion import expand
from .plan import known, run_dir, spec_cfg
from .profile import TARGET_POINT, ProfileError, _fmt, find_profile, profile_name

_SOURCES = {}   # (source profile path, results, folders) -> {entry: [its searches, replayed from disk]}


def _complete(cfg, results):
    """Finished (weights there) or complete without weights (committed results)."""
    name = C.run_name(cfg)
    return summaries.is_finished(results, name) or summaries.complete_summary(run_dir(results, name)) is not None


def source_searches(profile, results):
    """{entry: [Search]} of another profile, its searches replayed from the complete runs in
    RESULTS/runs (weights not needed), as the sweep would replay them; cached per process
    while the number of run folders stays the same."""
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

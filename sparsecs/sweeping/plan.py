"""Run state: what a run's dependencies give it, its name, whether it is done, the next round
of a λ search, and which runs the folders on disk determine (for --dry-run and the report).
Selecting runs is selection.py, start_from startfrom.py, epoch times timing.py."""
import copy
import os

from sparsecs import config as C
from sparsecs import criteria
from sparsecs import paths
from sparsecs import schema
from sparsecs import summaries
from sparsecs.evidence import FILL_IN
from sparsecs.optim import get_method

from .profile import ProfileError, Spec, _fmt, _rel
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


def fill_in(spec, results):
    """After a finished run of a seed at its search's calibrated value (a follower), or after
    its last fill-in: the seed's next fill-in run (Search.fill_value), or None. At most
    `calibrate.fill` per seed; none after a collapsed run (the report shows the collapse)."""
    chain = spec.fill_chain()
    search = chain[0].after
    if search is None or len(chain) > search.fill:
        return None
    points = []
    for s in chain:
        if criteria.collapsed(summaries.read_summary(run_dir(results, s.name))):
            return None
        points.append((_override_value(s.overrides, search.key),
                       internal(target_value(results, s, search.metric), search.metric)))
    value = search.fill_value(points)
    if value is None:
        return None
    ov = [o for o in spec.overrides if not o.startswith(search.key + "=")] + [f"{search.key}={value!r}"]
    new = Spec(spec.entry, spec.config, ov, spec.point, spec.seed, spec.target_from, spec.init_from,
               spec.target_metric, spec.identity)
    new.fill, new.fill_of = search, spec
    return new


def _override_value(overrides, key):
    for o in reversed(overrides):
        k, _, v = o.partition("=")
        if k == key:
            return float(v)
    raise KeyError(key)


# ----------------------------------------------------------------------------- run state

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
    from .startfrom import resolve_start   # not at the top: startfrom imports this module (known)
    ov = []
    search = spec.search or spec.after or spec.fill
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
    search = spec.search or spec.after or spec.fill
    if search is not None:
        ident["calibration_target"] = search.level     # in the metric's units (a MACs level)
        ident["swept_value"] = _fmt(_override_value(ov, search.key))
        if spec.after is not None and spec.after.status == "not reached":
            ident["calibration_status"] = "not reached"
        if spec.fill is not None:
            ident["calibration_status"] = FILL_IN
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
        elif (s.after is not None or s.fill is not None) and (done or is_finished)(s.cfg, results):
            nxt = fill_in(s, results)
            if nxt is not None:
                specs.insert(i, nxt)
    return out, waiting

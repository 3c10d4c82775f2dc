"""The profile language: its keys, their checks, the run (Spec) it expands into, and where a
profile is found (the expansion itself: expansion.py).

The format is documented in sweep.py's docstring."""
import glob
import math
import os

import yaml

from sparsecs import config as C

from .search import METRICS


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository
# What `at: ROW` takes from the row's resolved config: the data, the model and the budget.
ROW_KEYS = ["dataset", "model", "width", "epochs", "batch_size", "eval_batch_size", "augment",
            "crop_padding", "flip", "erase", "lr_scale", "warmup_epochs", "label_smoothing", "sync_bn",
            "precision", "channels_last", "compile", "device"]
ENTRY_KEYS = {"name", "config", "at", "grid", "overrides", "seeds", "target_from", "init_from",
              "row_keys", "target_metric", "role", "epochs_scale", "target_sparsity", "targets",
              "calibrate"}
CALIBRATE_KEYS = {"key": None, "start": None, "tolerance": 0.3, "rounds": 6, "on_miss": "skip",
                  "chain": False, "start_from": None, "scale": "log", "fill": 0}
START_FROM_KEYS = ("profile", "entry")   # calibrate.start_from: {profile: NAME, entry: NAME}
ON_MISS = ("skip", "closest")   # followers of a search that missed: not run, or run marked
EVIDENCE = ("none", "small-scale", "paper-scale")
# What `target_from` reads from a finished run, and what a calibrated entry's search reads from
# its rounds: its sparsity (summary.json), the fraction of its conv filters / kernels that are
# entirely zero (layers.csv), for structured baselines, or the fraction of the dense
# structural multiply-adds its slim export keeps (macs_structural / flops_dense, summary.json;
# calibrated entries only, with `targets:` the MACs levels).
TARGET_METRICS = METRICS
# the grid-point key of a calibrated entry's target, per metric (--levels and labels read it)
TARGET_POINT = {"sparsity": "target_sparsity", "filter_sparsity": "target_filter_sparsity",
                "kernel_sparsity": "target_kernel_sparsity", "macs_structural_fraction": "target_macs"}
PROFILE_KEYS = {"seeds", "overrides", "runs", "row_keys", "epochs_scale", "epoch_keys", "defs", "inherit",
                "evidence", "claims", "results", "compare_budget", "export_levels",
                "export_macs_levels"}
# `claims:` which papers' claims the profile's report speaks to (reporting/papers.py declares
# them per paper); default paper A's only
PAPERS = ("A", "B")
DEFAULT_CLAIMS = ["A"]
# "not run": a follower of a λ search that did not reach its target (a fact, not a failure)
TERMINAL = ("finished", "skipped", "held", "not run", "failed", "blocked")


class ProfileError(ValueError):
    pass


# ----------------------------------------------------------------------------- runs

class Spec:
    """One run of a profile. Its config is known once its dependencies have finished."""

    def __init__(self, entry, config, overrides, point, seed, target_from=(), init_from=None,
                 target_metric="sparsity", identity=None, search=None, after=None):
        self.entry, self.config, self.overrides = entry, config, list(overrides)
        self.target_metric = target_metric
        self.point, self.seed = point, seed
        self.target_from, self.init_from = list(target_from), init_from
        self.identity = dict(identity or {})   # profile, entry, role, swept key (row: at build)
        self.rank = 0           # the sweep's order of profiles (sweep.py with several): earlier first
        self.search = search    # the Search this run is a round of
        self.after = after      # the Search whose calibrated value this run takes
        # a fill-in run (Search.fill_value): the Search it fills toward, and the run before it
        # (the seed's run at the calibrated value, or its previous fill-in)
        self.fill = self.fill_of = None
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
        """Followers wait for their search; round 1 of a chained search for the one before."""
        chain = self.search.chain if self.search is not None and len(self.search.specs) and \
            self.search.specs[0] is self else None
        return ((self.after is not None and not self.after.done)
                or (chain is not None and not chain.settled()))

    def fill_chain(self):
        """A fill-in's seed runs, the follower first and this run last ([self] for any other run)."""
        chain = [self]
        while chain[0].fill_of is not None:
            chain.insert(0, chain[0].fill_of)
        return chain

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


def load_profile(path):
    """The profile as a dict, read by the config loader (config.load_yaml: the same YAML rules
    and the same `inherit:`, a profile next to it merged underneath)."""
    try:
        prof = C.load_yaml(path, what="profile")
    except C.ConfigError as e:
        raise ProfileError(str(e)) from None
    if not isinstance(prof.get("runs"), list):
        raise ProfileError(f"{path}: expected a mapping with a 'runs' list")
    bad = set(prof) - PROFILE_KEYS
    if bad:
        raise ProfileError(f"{path}: unknown profile key(s) {', '.join(sorted(bad))}; "
                           f"known: {', '.join(sorted(PROFILE_KEYS))}")
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
    if "claims" in prof:
        v = prof["claims"]
        if not (isinstance(v, list) and v and all(isinstance(x, str) and x in PAPERS for x in v)
                and len(set(v)) == len(v)):
            raise ProfileError(f"{where}: claims must be a list of papers without repeats, each one of "
                               f"{', '.join(PAPERS)}; got {_fmt(v)[:80]}")
    if prof.get("epochs_scale") is not None and not _positive(prof["epochs_scale"]):
        raise ProfileError(f"{where}: epochs_scale must be a positive number, got "
                           f"{_fmt(prof['epochs_scale'])[:80]}")
    if "results" in prof:
        v = prof["results"]
        if not (isinstance(v, str) and v.strip() and not os.path.isabs(v)):
            raise ProfileError(f"{where}: results must be a folder relative to the repository, got "
                               f"{_fmt(v)[:80]}")
    if "compare_budget" in prof:
        budget_partner(path, prof)
    if "export_levels" in prof:   # export.py --profile: the sparsity levels whose runs it exports
        v = prof["export_levels"]
        if not (isinstance(v, list) and v and all(_positive(x) and x < 1 for x in v)):
            raise ProfileError(f"{where}: export_levels must be a non-empty list of sparsities in (0, 1), "
                               f"got {_fmt(v)[:80]}")
    if "export_macs_levels" in prof:   # export.py --profile: the MACs levels whose structured runs it slims
        v = prof["export_macs_levels"]
        if not (isinstance(v, list) and v and all(_positive(x) and x < 1 for x in v)):
            raise ProfileError(f"{where}: export_macs_levels must be a non-empty list of fractions of the "
                               f"dense multiply-adds in (0, 1), got {_fmt(v)[:80]}")
    for key in ("overrides", "row_keys", "epoch_keys"):
        v = prof.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise ProfileError(f"{where}: {key} must be a list of strings, got {_fmt(v)[:80]}")


def budget_partner(path, prof=None):
    """The profile named by `compare_budget:` (the same entries at another training budget,
    whose verdicts the report sets beside this one's), as a path, or None. A name is looked
    up beside this profile first, then under configs/profiles/. Unknown or this profile
    itself: ProfileError, one line."""
    prof = load_profile(path) if prof is None else prof
    name = prof.get("compare_budget")
    if name is None:
        return None
    where = os.path.basename(path)
    if not (isinstance(name, str) and name.strip()):
        raise ProfileError(f"{where}: compare_budget must name a profile, got {_fmt(name)[:80]}")
    here = os.path.join(os.path.dirname(os.path.abspath(path)), name + ".yaml")
    try:
        found = here if os.path.isfile(here) else find_profile(name)
    except ProfileError as e:
        raise ProfileError(f"{where}: compare_budget: {e}") from None
    if os.path.realpath(found) == os.path.realpath(path):
        raise ProfileError(f"{where}: compare_budget names this profile itself")
    return found


def profile_name(path):
    return os.path.basename(path).removesuffix(".yaml")


def profile_results(name):
    """Where a profile's runs go when no --results is given: its `results:` folder (relative to
    the repository: a pipeline check keeps its runs out of the committed results/), else
    `results`. A profile that cannot be read: `results` (the caller reports the problem)."""
    try:
        folder = load_profile(find_profile(name)).get("results")
    except ProfileError:
        return "results"
    return os.path.join(REPO, folder) if folder else "results"


def find_profile(name):
    if os.path.exists(name):
        return name
    path = os.path.join(REPO, "configs", "profiles", name + ".yaml")
    if not os.path.exists(path):
        folder = os.path.join(REPO, "configs", "profiles")
        known = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))
        raise ProfileError(f"no profile '{name}'; known: {', '.join(known)}")
    return path

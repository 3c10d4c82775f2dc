"""Which runs a report covers, and their numbers as one tidy table.

A report covers exactly the runs its profile expands to (sweep.py's own expansion, λ searches
replayed from the rounds on disk) that are complete (summaries.complete_summary: the numbers are all
there; weights are not needed, so committed results report on a fresh clone). Every other row
of RESULTS/runs.csv is left out and named. What a run is comes from the identity the sweep
wrote into its summary (entry, role, row, swept key and value, total epochs); no run name is
ever parsed.
"""
import csv
import json
import math
import os

from sparsecs import config as C
from sparsecs import criteria
from sparsecs import data
from sparsecs import fileio
from sparsecs import paths
from sparsecs import summaries
from sparsecs.sweeping import plan, profile as P
from sparsecs.sweeping.expansion import expand

from . import thresholds as T

NUMERIC = ("width", "seed", "epochs", "total_epochs", "lam", "test_acc", "test_loss", "train_acc",
           "train_loss", "sparsity", "sparsity_all", "nnz", "n_weights", "n_params", "flops_dense",
           "flops_nonzero", "macs_structural", "train_seconds", "calibration_target", "calibration_round",
           "threads", "test_acc_running_bn", "bn_recal_images", "train_acc_final")


class ReportError(Exception):
    """One line: which file or profile is wrong and what to do. `code` is the exit status
    (README, exit codes): 2 for a bad profile or option, 1 for missing or unreadable results."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


def profile_path(name):
    """A profile name (configs/profiles/NAME.yaml) or a path to a profile file: the sweep's own
    lookup (sweeping/profile.py find_profile), its error as a ReportError."""
    try:
        return P.find_profile(name)
    except P.ProfileError as e:
        raise ReportError(str(e)) from None


def _complete(cfg, results):
    return summaries.complete_summary(paths.run_dir(results, C.run_name(cfg))) is not None


def expected(profile, results, searches=None, configs=None):
    """(run names the profile expands to, in profile order without repeats; how many of its
    runs cannot be named yet because a dependency or a λ search has not finished; how many
    never run because the λ search they follow did not reach its target). The profile's λ
    searches, replayed from disk, are appended to `searches` when given; `configs` (a dict)
    gets each named run's resolved config."""
    try:
        specs = expand(profile_path(profile))
        ready, waiting = plan.known(specs, results, done=_complete)
    except (P.ProfileError, C.ConfigError, paths.RunFolderError) as e:
        raise ReportError(f"profile {profile}: {e}") from None
    if searches is not None:
        seen = set()
        for s in specs + ready:
            if s.search is not None and id(s.search) not in seen:
                seen.add(id(s.search))
                searches.append((s.entry, s.search))
    not_run = sum(1 for s in waiting if plan.never_runs(s))
    if configs is not None:
        configs.update({s.name: s.cfg for s in ready})
    return list(dict.fromkeys(s.name for s in ready)), len(waiting) - not_run, not_run


def entries(profile):
    """Every entry the profile declares, whether or not any of its runs has trained: [(method,
    entry)] in profile order and {entry: role} (the entry's own role, else its method's), so
    that a report's colours do not move as runs arrive (style.Looks)."""
    from sparsecs.optim import get_method
    try:
        specs = expand(profile_path(profile))
        out, roles = {}, {}
        for s in specs:
            raw = C._merge(C.load_yaml(s.config), C.parse_overrides(s.overrides))
            meth = raw.get("method", "sgd")
            out.setdefault((meth, s.entry), None)
            roles.setdefault(s.entry, s.identity.get("role") or get_method(meth).role)
    except (P.ProfileError, C.ConfigError, KeyError) as e:
        raise ReportError(f"profile {profile}: {e}") from None
    return list(out), roles


def search_rows(searches):
    """One dict per λ search: entry, target, rounds, status, reason, the best round's value,
    sparsity and nonzeros relative to the target's."""
    out = []
    for entry, s in searches:
        b = s.best() if s.history else None
        # target in the metric's units (a MACs level); "sparsity": the search's growing form
        out.append({"entry": entry, "label": s.label, "key": s.key, "target": s.level, "metric": s.metric,
                    "rounds": len(s.history), "collapsed_rounds": sum(1 for h in s.history if h[2]),
                    "status": s.status if (s.done or s.history) else "not started",
                    "reason": s.failed or s.reason or _inner(s, b),
                    "value": b[0] if b else math.nan, "sparsity": b[1] if b else math.nan,
                    "ratio": s.ratio(b[1]) if b and s.target is not None else math.nan})
    return out


def _inner(s, b):
    """Why a search whose best round is within tolerance still runs: an end target's round on
    its inner side (Search.side)."""
    if s.done or not s.side or b is None or s.target is None or not s.near(b[1]) or s.within(b[1]):
        return ""
    end = "lowest" if s.side < 0 else "highest"
    return (f"the entry's {end} target: within tolerance but on its inner side; "
            f"goes on to its {'less' if s.side < 0 else 'more'} sparse side")


def evidence(profile):
    return P.load_profile(profile_path(profile)).get("evidence", "none")


def claims(profile):
    """The papers whose claims the profile's report speaks to (its `claims:` key)."""
    return list(P.load_profile(profile_path(profile)).get("claims", P.DEFAULT_CLAIMS))


def budget_partner(profile):
    """The profile its `compare_budget:` names (a path), or None."""
    try:
        return P.budget_partner(profile_path(profile))
    except P.ProfileError as e:
        raise ReportError(str(e)) from None


def seeds(profile):
    """The profile's seeds (its `seeds:` key; an entry may set its own)."""
    return list(P.load_profile(profile_path(profile)).get("seeds", [0]))


def index_names(results):
    """Run names listed in RESULTS/runs.csv (empty if there is none)."""
    return [name for name, _ in index_profiles(results)]


def index_profiles(results):
    """(run name, the profile that asked for it) of each row of RESULTS/runs.csv."""
    p = os.path.join(results, paths.INDEX)
    if not os.path.exists(p):
        return []
    try:
        with open(p, newline="") as f:
            return [(r["run"], r.get("profile") or "") for r in csv.DictReader(f) if r.get("run")]
    except (OSError, KeyError, UnicodeDecodeError, csv.Error) as e:
        raise ReportError(f"{p}: unreadable ({e}); rebuild it from the run folders: python sweep.py "
                          f"--reindex --results {results}", code=1) from None


def profiles_in(results):
    """Profiles named by the runs of RESULTS/runs.csv, in first-seen order (the default)."""
    seen = []
    for name in index_names(results):
        folder = paths.run_dir(results, name)
        try:
            s = summaries.complete_summary(folder)
        except paths.RunFolderError:
            continue
        if s and s.get("profile") and s["profile"] not in seen:
            seen.append(s["profile"])
    return seen


def layer_fractions(folder):
    """Fractions of conv kernels and filters that are entirely zero (layers.csv)."""
    try:
        vals = [summaries.zero_fraction(folder, unit) for unit in ("kernels", "filters")]
    except OSError:
        return math.nan, math.nan
    return tuple(math.nan if v is None else v for v in vals)


def load(profile, results):
    """The profile's complete runs as a DataFrame (one row a run), and what was left out:
    {"missing": names expected but not complete, "pending": the entries of those names,
    "waiting": count, "not_run": count of runs
    whose λ search missed its target (settled: they do not hold a verdict back), "other":
    runs.csv rows that are not the profile's}."""
    import pandas as pd

    searches, configs = [], {}
    names, waiting, not_run = expected(profile, results, searches, configs)
    rows, missing = [], []
    for name in names:
        folder = paths.run_dir(results, name)
        s = summaries.complete_summary(folder)
        if s is None:
            missing.append(name)
            continue
        s = dict(s, folder=folder, setting=setting_of(configs[name]))
        s["kernel_sparsity"], s["filter_sparsity"] = layer_fractions(folder)
        rows.append(s)
    mine = set(names)
    listed = dict(index_profiles(results))
    other = [n for n in listed if n not in mine]
    if not rows:
        raise ReportError(f"profile {profile}: none of its {len(names) + waiting + not_run} runs is complete in "
                          f"{results}/runs/ (run `python sweep.py {profile}` first)", code=1)
    df = pd.DataFrame(rows)
    for c in NUMERIC:
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    for c in ("profile", "entry", "role", "row", "swept_key", "swept_value", "init_from"):
        df[c] = df[c].fillna("").astype(str)
    df["acc"] = df["test_acc"]
    # structured savings are what slim export removes; runs from before macs_structural: NaN
    struct = df["macs_structural"] if "macs_structural" in df.columns else math.nan
    df["mac_frac"] = struct / df["flops_dense"]
    df["mac_frac_elementwise"] = df["flops_nonzero"] / df["flops_dense"]
    if "train_acc_final" not in df.columns:
        df["train_acc_final"] = math.nan
    judged = df[["dataset", "train_acc", "train_acc_final"]].to_dict("records")
    df["collapsed"] = [criteria.collapsed(r) for r in judged]
    df["collapse_measure"] = [criteria.collapse_measure(r)[1] for r in judged]
    df["n_test"] = [data.DATASETS[d].n_test if d in data.DATASETS else 0 for d in df["dataset"]]
    df["correct"] = correctness(df, results)
    df["compression"] = df["n_weights"] / df["nnz"].clip(lower=1)
    # rows this profile asked for once that its plan no longer names (a λ search that took
    # another path since, e.g. a round the collapse rule now judges collapsed): not "other".
    # Only rows under this profile's own name: a run it shares with another profile (fashion8's
    # dense runs are fashion_bf16's) does not make that profile's other runs retired
    ours = P.profile_name(profile_path(profile))
    retired = [n for n in other if listed[n] == ours]
    other = [n for n in other if n not in retired]
    # entries with named runs still to train: a level such an entry lacks may yet be reached
    pending = sorted({configs[n].get("identity", {}).get("entry", "") for n in missing} - {""})
    return df, {"missing": missing, "pending": pending, "waiting": waiting, "not_run": not_run,
                "other": other, "retired": retired,
                "searches": search_rows(searches), "incomplete": incomplete(results, missing)}


# the training setting of a run: what `at: ROW` takes from a row except its budget (the data,
# the model, batch, augmentation, precision, channels_last, compile, ...); two profiles whose
# runs differ in nothing else differ in their budget only (reporting/budget.py)
SETTING_KEYS = tuple(k for k in P.ROW_KEYS if k != "epochs")


def setting_of(cfg):
    """A run's setting (SETTING_KEYS of its resolved config) as one JSON text."""
    return json.dumps({k: cfg.get(k) for k in SETTING_KEYS}, sort_keys=True, default=str)


def incomplete(results, names):
    """'NAME: why' for each of `names` whose folder holds a summary.json but is not complete
    (summaries.metrics_problem: metrics.csv with fewer or more rows than epochs), so the report
    names what it left out."""
    out = []
    for name in names:
        folder = paths.run_dir(results, name)
        if not os.path.exists(paths.path(folder, paths.SUMMARY)):
            continue
        try:
            why = summaries.metrics_problem(folder, summaries.read_summary(folder))
        except OSError:
            why = f"{paths.path(folder, paths.METRICS)}: missing"
        except (paths.RunFolderError, KeyError, ValueError) as e:
            why = str(e).removesuffix(paths.RETRAIN)
        out.append(f"{name}: {why or 'summary.json lacks fields'}")
    return out


def correctness(df, results):
    """Per run: which test images it classified correctly (a bool array: predictions.npy
    against RESULTS/labels/<data set>.npy), or None where either file is missing or they do not
    reproduce the run's test accuracy (then its comparisons keep the unpaired test)."""
    import numpy as np

    labels, out = {}, []
    for folder, ds, acc in zip(df["folder"], df["dataset"], df["test_acc"]):
        if ds not in labels:
            labels[ds] = fileio.read_classes(paths.labels_path(results, ds))
        pred, lab = fileio.read_classes(paths.path(folder, paths.PREDICTIONS)), labels[ds]
        ok = None
        if pred is not None and lab is not None and len(pred) == len(lab) and len(lab):
            ok = pred == lab
            if abs(100.0 * ok.sum() / len(ok) - acc) > 1e-6:   # not this run's final evaluation
                ok = None
        out.append(ok)
    return out


def run_frames(df):
    """What the figures draw beyond the run table `df`, read from the run folders once, keyed by
    run name: {"metrics": metrics.csv (metrics_of), "layers": layers.csv or None where it is
    missing, "thresholds": a soft_threshold run's implied coefficients (thresholds.implied) or
    None}. No figure reads a run folder itself."""
    import pandas as pd

    metrics, layers, curves = {}, {}, {}
    for _, r in df.iterrows():
        metrics[r["run"]] = metrics_of(r["folder"])
        try:
            layers[r["run"]] = pd.read_csv(paths.path(r["folder"], "layers.csv"))
        except OSError:
            layers[r["run"]] = None
        if r["method"] == T.METHOD:
            curves[r["run"]] = threshold_curve(r["folder"], r.to_dict(), metrics[r["run"]])
    return {"metrics": metrics, "layers": layers, "thresholds": curves}


def threshold_curve(folder, summary=None, metrics=None):
    """thresholds.implied for the run in `folder` (its config.yaml, metrics.csv and summary);
    None for a folder without its config (committed results keep it)."""
    m = metrics if metrics is not None else metrics_of(folder)
    try:
        cfg = C.resolve(C.load_yaml(paths.path(folder, paths.CONFIG)))
    except (OSError, C.ConfigError):
        cfg = None
    summary = summary if summary is not None else summaries.read_summary(folder)
    return T.implied(m, cfg, summary)


def inference(csv_path):
    """The rows of benchmarks/bench_inference.py's CSV (--csv), the latest measurement of each
    (run, batch, variant, threads), dense's own rows left out; None without a CSV or rows."""
    import pandas as pd

    if not csv_path or not os.path.exists(csv_path) or os.path.getsize(csv_path) == 0:
        return None
    df = pd.read_csv(csv_path)
    if df.empty:
        return None
    df = df.sort_values("measured_at").drop_duplicates(["run", "batch", "variant", "threads"], keep="last")
    return df[df["variant"] != "dense"]


def parent_run(init_from):
    """The name of the run an init_from value (a run folder, or its model.pt) points at."""
    src = os.path.normpath(init_from)
    return os.path.basename(os.path.dirname(src) if src.endswith(".pt") else src)


def metrics_of(folder):
    """A run's metrics.csv as a DataFrame (epoch, test_acc, sparsity, ...), numeric columns as
    numbers. A damaged file (a row with another number of fields than the header, which
    pandas would shift into other columns) is paths.RunFolderError, one line naming it."""
    import pandas as pd

    rows = summaries.read_metrics(folder)
    df = pd.DataFrame(rows, columns=list(rows[0]) if rows else ["epoch"])
    for c in df.columns:
        if all(_is_number(v) for v in df[c] if v != ""):   # a numeric column ("" is missing)
            df[c] = pd.to_numeric(df[c].replace("", "nan"))
    if df["epoch"].isna().any():
        raise paths.RunFolderError(f"{paths.path(folder, paths.METRICS)}: damaged (an epoch that is "
                                  f"not a number); delete the run folder to retrain it")
    return df


def _is_number(text):
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True

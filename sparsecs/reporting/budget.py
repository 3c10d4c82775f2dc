"""Verdicts against the budget (issue 35): one profile's claims set beside those of its
`compare_budget:` partner, the same entries at another training budget.

Load → compute here (sides, claim rows, reach, dense gaps, the figure's frame); the words are
reporting/budget_document.py's, the figure reporting/budget_figure.py's. A side is one
profile's complete runs with its comparisons and verdicts, by the same rules as its own
report (reporting/claims.py). The two sides differ in their budget only when every run's
setting (reporting/load.SETTING_KEYS: data, model, batch, augmentation, precision,
channels_last, compile, ...) agrees; where it does not, every comparison says so and rests
on the accuracy check of the training setting (SETTING_CHECK).
"""
import json
import math
import os

from . import claims as CL
from . import compare as K
from . import load
from . import papers as PA
from .envelope import at_levels, full_points, short_note

SETTING_CHECK = ("the accuracy check of the training setting (issue 34: results/fashion_bf16/CHECK.md, "
                 "`python -m benchmarks.setting_check`)")


def side(profile, results, papers, df=None, left=None):
    """One side of the comparison: the profile's complete runs (reporting.load), its
    comparisons and verdicts for `papers`, whether it is complete, its budget (the most total
    epochs of its runs) and its setting."""
    if df is None:
        df, left = load.load(profile, results)
    comps = CL.comparisons(df, papers)
    missing, waiting, not_run = len(left["missing"]), left["waiting"], left.get("not_run", 0)
    return {"profile": os.path.basename(profile).removesuffix(".yaml"), "df": df, "left": left,
            "comps": comps, "verdicts": {v[0]: v for v in CL.claim_verdicts(comps, papers)},
            "complete": not (missing or waiting), "epochs": int(df["total_epochs"].max()),
            "runs": len(df), "expected": len(df) + missing + waiting + not_run,
            "setting": setting(df)}


def setting(df):
    """{setting key: sorted values over the side's runs} (load.SETTING_KEYS)."""
    out = {}
    for text in df["setting"] if "setting" in df.columns else ():
        for k, v in json.loads(text).items():
            out.setdefault(k, set()).add(json.dumps(v))
    return {k: sorted(json.loads(x) for x in vs) if len(vs) > 1 else json.loads(next(iter(vs)))
            for k, vs in out.items()}


def setting_diff(sides):
    """{key: [each side's value]} where the sides' settings differ (the budget aside)."""
    keys = sorted(set().union(*(s["setting"] for s in sides)))
    vals = {k: [s["setting"].get(k) for s in sides] for k in keys}
    return {k: v for k, v in vals.items() if any(x != v[0] for x in v[1:])}


def _key(c):
    return c["claim"], c["row"], c["a"]["entry"], c["b"]["entry"]


def claim_rows(sides, papers):
    """Per declared claim: its verdict on each side ("" where that side is incomplete),
    whether it held or moved (both sides complete), and its comparisons, each with its outcome
    and {level: (Δ pp, outcome)} per side (None where the side has no such comparison or level)."""
    out = []
    for claim in PA.of(papers):
        verdicts = [s["verdicts"][claim.id][3] if s["complete"] and claim.id in s["verdicts"] else ""
                    for s in sides]
        comps = {}
        for i, s in enumerate(sides):
            for c in s["comps"]:
                if c["claim"] == claim.id:
                    comps.setdefault(_key(c), [None] * len(sides))[i] = c
        rows = []
        for key, per in comps.items():
            levels = sorted({lv["level"] for c in per if c for lv in c["levels"]})
            rows.append({"a": next(c for c in per if c)["a"], "b": next(c for c in per if c)["b"],
                         "kind": next(c for c in per if c)["kind"],
                         "outcomes": [c["outcome"] if c else "" for c in per],
                         "levels": {lv: [_level(c, lv) for c in per] for lv in levels}})
        both = all(s["complete"] for s in sides)
        # the levels each side's verdict rests on: those of its counted comparisons (a
        # comparison outside the claim's regime, or unmatched, is no evidence at any level)
        rest = [sorted({lv for r in rows if r["outcomes"][i] in CL.COUNTED
                        for lv, cells in r["levels"].items() if cells[i] is not None})
                for i in range(len(sides))]
        out.append({"claim": claim, "verdicts": verdicts, "comparisons": rows, "rests_on": rest,
                    "moved": None if not both else len(set(verdicts)) > 1})
    return out


def _level(c, lv):
    if c is None:
        return None
    hit = [x for x in c["levels"] if x["level"] == lv]
    return (hit[0]["diff"], hit[0]["outcome"]) if hit else None


def _elementwise(df):
    """{(row, entry): runs} of the side's sparse elementwise curves (no dense model)."""
    return {k: p for k, p in CL.curves(df).items()
            if p["mode"].iloc[0] == "elementwise" and p["role"].iloc[0] != "dense"}


def levels(sides):
    """The sparsity levels the budget section reads: those compare.SPARSITY_LEVELS that any
    side's λ search targets or any sparse curve of a side covers."""
    want = set()
    for s in sides:
        want |= {r["target"] for r in s["left"].get("searches") or () if r.get("metric", "sparsity") == "sparsity"}
        for part in _elementwise(s["df"]).values():
            want |= {lv for lv, v in at_levels(part, "nnz").items() if v}
    return [lv for lv in K.SPARSITY_LEVELS if any(abs(lv - w) < 1e-9 for w in want if w is not None)]


def reach(s, level):
    """{entry: (accuracies per seed, or [] where not reached; why not)} of one side at one
    level. Why not: the λ search's reason word (plateau, ceiling, collapse, jump, rounds
    exhausted), "searching" while it runs, else which seeds stop short or where the curve's
    points end."""
    out, method = {}, {}
    for (row, entry), part in _elementwise(s["df"]).items():
        method[entry] = part["method"].iloc[0]
        vals = at_levels(part, "nnz")[level]
        why = ""
        if not vals:
            # some seeds span it, others stop short or collapse: say which (a mean over seeds
            # would read "its points start sparser" where one seed is 0.1 pp short)
            # (while its named runs are still to train, they may yet reach it: work left)
            pending = entry in s["left"].get("pending", ())
            why = "runs still to come" if pending else short_note(part, "nnz", level)
        if not vals and not why:
            full = full_points(part)
            ok = full[~full["collapsed"]]
            top = ok.groupby("swept_value")["sparsity"].mean().max() if len(ok) else math.nan
            why = ("no healthy point every seed ran" if top != top else
                   f"its points end at {100 * top:.2f}%" if top < level else "its points start sparser")
        out[entry] = (vals, why)
    for r in s["left"].get("searches") or ():
        if r.get("metric", "sparsity") != "sparsity" or r["target"] is None or abs(r["target"] - level) > 1e-9:
            continue
        vals, why = out.get(r["entry"], ([], ""))
        if vals:
            continue
        if r["status"] == "not reached":
            why = (r["reason"] or "not reached").split(":")[0]
        elif r["status"] in ("searching", "not started"):
            why = "search not ended"
        out[r["entry"]] = (vals, why)
    return out


def reach_rows(sides, lvls):
    """[{entry, method, level, per side (accuracies, why)}] for every sparse entry of any side."""
    per = {lv: [reach(s, lv) for s in sides] for lv in lvls}
    methods = {}
    for s in sides:
        for (row, entry), part in _elementwise(s["df"]).items():
            methods.setdefault(entry, part["method"].iloc[0])
        for r in s["left"].get("searches") or ():
            methods.setdefault(r["entry"], r["entry"])
    return [{"entry": e, "method": m, "level": lv, "sides": [p.get(e, ([], "no run")) for p in per[lv]]}
            for e, m in methods.items() for lv in lvls]


def dense_gap(s):
    """The full-budget dense model's train − test gap on one side, by claim A4's regime
    (papers.OVERFITS: final training accuracy where every run has it): {field, train, test,
    gap, n, min_gap} or None without a dense model."""
    df = s["df"]
    d = df[(df["role"] == "dense") & (df["total_epochs"] == s["epochs"])]
    if d.empty:
        return None
    rg = PA.OVERFITS
    field = next((f for f in rg.high if f in d.columns and d[f].notna().all()), None)
    if field is None:
        return None
    train, test = float(d[field].mean()), float(d[rg.low].mean())
    return {"field": field, "train": train, "test": test, "gap": train - test, "n": len(d),
            "min_gap": rg.min_gap}


def budget_needed(points, need):
    """An estimate of the epochs at which the dense train − test gap reaches `need` pp,
    extrapolating the gap linearly in log(epochs) through the shortest and longest budget's
    measured gaps [(epochs, gap)]. None where the gap did not grow (no such budget follows)."""
    pts = sorted(points)
    if len(pts) < 2:
        return None
    (e1, g1), (e2, g2) = pts[0], pts[-1]
    if e2 <= e1 or g2 <= g1:
        return None
    slope = (g2 - g1) / math.log(e2 / e1)
    return e2 * math.exp((need - g2) / slope)


# reach()'s reasons that are work left, not a fact about the method: drawn as nothing
NOT_YET = ("search not ended", "no run", "runs still to come")


def frame(sides, lvls):
    """The figure's table: one row per (entry, budget, level) an entry covers: method, role,
    epochs, level, mean and sd of the seeds' accuracies, seeds. The full-budget dense model
    stands at every level. A sparse entry with no value at a level (its search missed it, a
    seed stops short or collapses: reach()) has a row too, acc NaN and `why` its reason, so
    that the figure shows the miss rather than a line drawn past it."""
    import pandas as pd

    rows, missed = [], []
    for s in sides:
        df = s["df"]
        for lv in lvls:
            for entry, (vals, why) in reach(s, lv).items():
                part = df[df["entry"] == entry]
                if vals or why in NOT_YET or part.empty:
                    continue
                missed.append({"entry": entry, "method": part["method"].iloc[0], "role": part["role"].iloc[0],
                               "epochs": s["epochs"], "profile": s["profile"], "level": lv, "acc": math.nan,
                               "sd": math.nan, "n": 0, "why": why})
        for (row, entry), part in CL.curves(df).items():
            r = part.iloc[0]
            if r["role"] == "dense":
                if int(part["total_epochs"].max()) != s["epochs"]:
                    continue
                vals = {lv: list(part["acc"]) for lv in lvls}
            elif r["mode"] == "elementwise":
                got = at_levels(part, "nnz")
                vals = {lv: got[lv] for lv in lvls if got.get(lv)}
            else:
                continue
            for lv, v in vals.items():
                m = sum(v) / len(v)
                sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else math.nan
                rows.append({"entry": entry, "method": r["method"], "role": r["role"], "epochs": s["epochs"],
                             "profile": s["profile"], "level": lv, "acc": m, "sd": sd, "n": len(v), "why": ""})
    return pd.DataFrame(rows + missed, columns=["entry", "method", "role", "epochs", "profile", "level", "acc",
                                                "sd", "n", "why"])

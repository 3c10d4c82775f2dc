"""Point-by-point outcomes of the papers' point tables (reporting/papers.py POINT_TABLES): each
point of a selected curve against one point of its row's reference curve."""
import numpy as np

from sparsecs.optim.base import STRUCTURED_MODES as STRUCTURED

from . import compare as K
from .claims import _info, correct_of, curves, matches, n_test, paired_diff


def point_pairs(df, pts, table):
    """Each point of every curve a papers.PointTable's `against` selects, against the row's
    point of its `reference` curve of the same mode: at the same swept value when both sweep
    the same key (an ablation at xRDA's λ), else within compare.MATCH_TOL in log nonzeros
    (structured: log structural MACs), a point every seed ran before a one-seed search round and
    then the nearest (compare.match_points), each reference point used once per curve; farther
    is unmatched, shown and not counted. Returns dicts: row, entry, a (point), ref (point or
    None), match (how), outcome of a against ref (per-seed Welch test)."""
    out = []
    info = {k: _info(p) for k, p in curves(df).items()}
    correct = correct_of(df)
    for (row, entry), i in info.items():
        if matches(i, table.reference) or not any(matches(i, sel) for sel in table.against):
            continue
        refs = [k for k, j in info.items() if j["row"] == row and matches(j, table.reference)
                and j["mode"] == i["mode"]]
        mine = _points_of(pts, row, entry)
        if refs and info[refs[0]]["epochs"] != i["epochs"]:
            # only equal budgets are compared (RigL at half the epochs is no point against LATS)
            out += _unpaired(row, entry, mine, "unequal budget",
                             f"unequal budget ({i['epochs']} against {info[refs[0]]['epochs']} epochs)")
            continue
        if not refs:
            out += _unpaired(row, entry, mine, "unmatched", "no reference")
            continue
        # a collapsed point is a fact to show, never a point to compare with or against
        ref = _points_of(pts, row, refs[0][1])
        ref = ref[ref["collapsed"] == 0].reset_index(drop=True)
        dead = {n for n in range(len(mine)) if mine["collapsed"].iloc[n]}
        pairs = match_points(mine, ref, dead, "macs" if i["mode"] in STRUCTURED else "nnz")
        out += _outcomes(df, row, entry, mine, ref, pairs, dead, correct)
    return out


def _points_of(pts, row, entry):
    return pts[(pts["row"] == row) & (pts["entry"] == entry)].reset_index(drop=True)


def _unpaired(row, entry, mine, outcome, why):
    """Every point of a curve with no reference point to meet, and why."""
    return [{"row": row, "entry": entry, "a": mine.iloc[n], "ref": None, "match": why,
             "outcome": outcome} for n in range(len(mine))]


def _x(p, kind):
    """The points' log nonzero weights (structured: log structural MAC fraction)."""
    return list(np.log(p["mac_frac"].clip(lower=1e-9)) if kind == "macs"
                else np.log(((1 - p["sparsity"]) * p["n_weights"]).clip(lower=0.5)))


def match_points(mine, ref, dead, kind):
    """{index in mine: (index in ref, how they were matched)}: same swept value, then the
    same calibration target, then the nearest within compare.MATCH_TOL; no point of `dead`
    (collapsed) and each reference point once."""
    pairs = _same_key_pairs(mine, ref, dead)
    xm, xr = _x(mine, kind), _x(ref, kind)
    unit = "nnz" if kind == "nnz" else "MACs"
    pairs = _calibrated_pairs(mine, ref, xm, xr, dead, pairs, unit)
    return _nearest_pairs(mine, ref, xm, xr, dead, pairs, unit)


def _same_key_pairs(mine, ref, dead):
    """Points at the same swept value, when both curves sweep the same key."""
    pairs = {}
    if not (len(mine) and len(ref) and mine["swept_key"].iloc[0] == ref["swept_key"].iloc[0] != ""):
        return pairs
    for n in range(len(mine)):
        hit = ref.index[ref["swept_value"] == mine["swept_value"].iloc[n]]
        if len(hit) and n not in dead:
            pairs[n] = (int(hit[0]), f"same {mine['swept_key'].iloc[0].split('.')[-1]}")
    return pairs


def _calibrated_pairs(mine, ref, xm, xr, dead, pairs, unit):
    """`pairs` and, per calibration target, its best still-free pair within MATCH_TOL."""
    pairs = dict(pairs)
    # calibrated to the same target by the same rule: the two searches' points meet first
    # (the ones all seeds ran, then the nearest), so that a one-seed round that happens to
    # sit a hair closer never stands in for a calibrated point
    for t in sorted({float(v) for v in mine["calibration_target"] if v == v}):
        taken = {m for m, _ in pairs.values()}
        cand = [(-min(int(mine["seeds"].iloc[n]), int(ref["seeds"].iloc[m])), abs(xm[n] - xr[m]), n, m)
                for n in range(len(mine)) if n not in pairs and n not in dead
                and mine["calibration_target"].iloc[n] == t
                for m in range(len(ref)) if m not in taken and ref["calibration_target"].iloc[m] == t]
        best = min(cand, default=None)
        if best is not None and best[1] <= K.MATCH_TOL:
            pairs[best[2]] = (best[3], f"target {100 * t:g}%, Δlog {unit} {best[1]:.2f}")
    return pairs


def _nearest_pairs(mine, ref, xm, xr, dead, pairs, unit):
    """`pairs` and the other points (other rounds, keys) matched by compare.match_points."""
    pairs = dict(pairs)
    taken = {m for m, _ in pairs.values()}
    rest = [n for n in range(len(mine)) if n not in pairs and n not in dead]
    free = [m for m in range(len(ref)) if m not in taken]
    for n, m, d in K.match_points([xm[n] for n in rest], [xr[m] for m in free],
                                  a_seeds=[int(mine["seeds"].iloc[n]) for n in rest],
                                  b_seeds=[int(ref["seeds"].iloc[m]) for m in free]):
        pairs[rest[n]] = (free[m], f"Δlog {unit} {d:.2f}")
    return pairs


def _outcomes(df, row, entry, mine, ref, pairs, dead, correct):
    """One dict per point of the curve: its matched reference point and the outcome."""
    acc = lambda p: list(df[df["run"].isin(p["runs"])]["acc"])
    out = []
    for n in range(len(mine)):
        a = mine.iloc[n]
        if n not in pairs:
            out.append({"row": row, "entry": entry, "a": a, "ref": None, "outcome": "unmatched",
                        "match": "collapsed: not compared" if n in dead else "unmatched"})
            continue
        r = ref.iloc[pairs[n][0]]
        d = paired_diff([{x: 1.0} for x in a["runs"]], [{x: 1.0} for x in r["runs"]], correct)
        out.append({"row": row, "entry": entry, "a": a, "ref": r, "match": pairs[n][1],
                    "test": "unpaired" if d is None else "paired",
                    "outcome": K.verdict(acc(a), acc(r), n_test=n_test(df), paired=d)[0]})
    return out

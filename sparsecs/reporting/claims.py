"""Points, curves and the papers' declared claims, from the tidy run table of reporting.load.

A point is one setting of one entry in one row (its swept value), over seeds. A curve is an
entry's points in a row. Curves are compared at fixed levels (reporting.compare): elementwise
at fixed sparsity along log(nonzero weights), structured at fixed fractions of the
multiply-adds that slim export keeps (macs_structural: all-zero filters and the inputs they
feed removed). Only curves with the same total training budget (epochs, init_from runs
included) are compared; one comparison per row and pair of curves, its verdict combined over
the levels both curves cover (Holm-corrected over those levels).

A curve is read along the points every one of its seeds ran (a λ search's other rounds, seed
0 only, are shown but never used), per seed along its Pareto frontier of runs that did not
collapse (criteria.collapsed) and only on the dense side of that seed's densest collapsed run
among those *inside* its healthy range: a level beyond a collapse is "not reached", never
interpolated through. A collapsed run past every healthy full point of its seed on the swept
value (a λ search's overshoot: a far larger λ, where the network broke and its sparsity means
nothing) ends the curve there and bounds nothing before it. A level counts only where every
seed's frontier covers it.

The claims themselves are declarations (reporting/papers.py: per paper, which curves each is
about, what they are compared with, along which axis); this module evaluates any declaration
by the rules above and names no method, role or entry of its own.
"""
import math

import numpy as np

from sparsecs.optim.base import STRUCTURED_MODES as STRUCTURED

from . import across as AC
from . import compare as K
from . import papers as PA


POINT_KEY = ["row", "entry", "mode", "swept_value"]   # a point: one swept value of an entry


def points(df):
    """One row per point: seeds, mean and std of accuracy and sparsity, budget, identity."""
    g = df.groupby(POINT_KEY, sort=False, dropna=False)
    out = g.agg(method=("method", "first"), role=("role", "first"), model=("model", "first"),
                width=("width", "first"), swept_key=("swept_key", "first"),
                epochs=("total_epochs", "max"), epochs_min=("total_epochs", "min"),
                seeds=("seed", "nunique"), acc=("acc", "mean"), acc_sd=("acc", "std"),
                sparsity=("sparsity", "mean"), sparsity_sd=("sparsity", "std"),
                nnz=("nnz", "mean"), n_weights=("n_weights", "first"),
                compression=("compression", "mean"), mac_frac=("mac_frac", "mean"),
                filter_sparsity=("filter_sparsity", "mean"), kernel_sparsity=("kernel_sparsity", "mean"),
                train_acc=("train_acc", "mean"), collapsed=("collapsed", "sum"),
                calibration_target=("calibration_target", "first"),
                calibration_round=("calibration_round", "max"), init=("init_from", "first"),
                runs=("run", list)).reset_index()
    out["from_trained"] = out["init"] != ""
    return out


def curves(df):
    """{(row, entry): DataFrame of the entry's runs in that row}, in profile order."""
    return {k: part for k, part in df.groupby(["row", "entry"], sort=False)}


def _text(v):
    return "" if v is None or v != v else str(v)


# the summary columns a declaration may select on besides the fields _info computes
_SELECTED = sorted({f for c in PA.CLAIMS for sel in (c.reference, *c.against) for f in sel}
                   | {f for t in PA.POINT_TABLES for sel in (t.reference, *t.against) for f in sel})


def _info(part):
    r = part.iloc[0]
    out = {"row": r["row"], "entry": r["entry"], "method": r["method"], "mode": r["mode"],
           "role": r["role"], "epochs": int(part["total_epochs"].max()),
           "from_trained": bool((part["init_from"] != "").any()), "n_weights": float(r["n_weights"])}
    for f in _SELECTED:
        if f not in out:
            out[f] = _text(r[f]) if f in part.columns else ""
    return out


def matches(info, selector, ref=None):
    """Whether a curve (its _info) matches a declaration's selector (reporting/papers.py);
    `ref`: the reference curve's _info, for SAME."""
    for field, want in selector.items():
        have = info.get(field, "")
        if isinstance(want, PA.NOT):
            ok = have not in want
        elif isinstance(want, tuple):
            ok = have in want
        elif want == PA.SAME:
            ok = ref is not None and have == ref.get(field, "")
        else:
            ok = have == want
        if not ok:
            return False
    return True


def _xs(part, kind):
    if kind == "macs":
        return [math.log(max(v, 1e-9)) for v in part["mac_frac"]]
    return [K.log_nnz(s, n) for s, n in zip(part["sparsity"], part["n_weights"])]


def full_points(part):
    """The runs of a curve at swept values that every seed of the curve ran."""
    n = part["seed"].nunique()
    return part[part.groupby("swept_value")["seed"].transform("nunique") == n]


def frontier(pts):
    """The Pareto frontier of [(x, acc, ...)] (x = log nonzeros: fewer is better, higher acc
    is better): the points no other point beats on both (each kept whole, e.g. with its run)."""
    return [p for p in pts
            if not any(q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1]) for q in pts)]


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _inside(fell, healthy):
    """The collapsed runs `fell` not past every healthy run's swept value (a search's overshoot
    is past; a swept value that is no number never is)."""
    top = max((_num(v) for v in healthy["swept_value"]), default=math.nan)
    return fell[[not (_num(v) > top) for v in fell["swept_value"]]]


def seed_points(part, kind):
    """{seed: (frontier [(x, acc, run)], largest x)} of one curve: full points only, no collapsed
    run, and only points denser than the seed's densest collapsed run (any of its runs, search
    rounds too) except a collapsed run whose swept value is past every healthy full point's
    of the seed (every swept key, λ, D, swd or a target, grows sparsity: such a run is a
    search's overshoot beyond the curve, not a failure inside it). The largest x is the
    densest such point, frontier or not: the seed's curve spans up to it (see envelope)."""
    full = full_points(part)
    out = {}
    for seed in sorted(full["seed"].unique()):
        mine = part[part["seed"] == seed]
        fell = _inside(mine[mine["collapsed"]], full[(full["seed"] == seed) & ~full["collapsed"]])
        edge = max(_xs(fell, kind)) if len(fell) else -math.inf
        ok = full[(full["seed"] == seed) & ~full["collapsed"]]
        names = ok["run"] if "run" in ok.columns else ok.index
        pts = [(x, a, r) for x, a, r in zip(_xs(ok, kind), ok["acc"], names) if x > edge]
        out[seed] = (frontier(pts), max((p[0] for p in pts), default=-math.inf))
    return out


def envelope(front, hi, x):
    """A seed's accuracy at x: along its Pareto frontier, linear in x between frontier points;
    on the dense side of the frontier's densest point (up to `hi`, the densest point the seed
    ran) the accuracy of that frontier point, which a sparser run of the seed achieved. NaN
    outside the seed's span."""
    if not front or x > hi + K.COVER_TOL + 1e-12:
        return math.nan
    top = max(front)
    if x > top[0]:
        return float(top[1])
    return K.interpolate([p[0] for p in front], [p[1] for p in front], x)


def envelope_weights(front, hi, x):
    """{run: weight} whose weighted accuracies are envelope(front, hi, x): the one frontier
    run that stands for the dense side, or the two that bracket x (linear in x; runs at the
    same x share their weight equally, as interpolate averages them). None outside the span."""
    if not front or x > hi + K.COVER_TOL + 1e-12:
        return None
    top = max(front)
    if x > top[0]:
        return {top[2]: 1.0}
    xs = sorted({p[0] for p in front})
    if x < xs[0] - K.COVER_TOL - 1e-12:
        return None
    x = min(max(x, xs[0]), xs[-1])
    k = max(i for i, u in enumerate(xs) if u <= x)
    t = 0.0 if xs[k] == x or k == len(xs) - 1 else (x - xs[k]) / (xs[k + 1] - xs[k])
    out = {}
    for u, w in ((xs[k], 1.0 - t), (xs[min(k + 1, len(xs) - 1)], t)):
        group = [p[2] for p in front if p[0] == u]
        for r in group:
            out[r] = out.get(r, 0.0) + w / len(group)
    return {r: w for r, w in out.items() if w > 0}


def collapse_note(part, kind):
    """Where a curve collapses ('' if none of its runs did): the least sparse collapsed run
    inside its healthy range; when every collapse is a search's overshoot past the healthy
    points (see seed_points), the smallest swept value that collapsed."""
    fell = part[part["collapsed"]]
    if not len(fell):
        return ""
    full = full_points(part)
    inside = _inside(fell, full[~full["collapsed"]])
    if not len(inside):
        key = str(part["swept_key"].iloc[0]) if "swept_key" in part else ""
        low = min(_num(v) for v in fell["swept_value"])
        return f"collapses at {key or 'the swept value'} ≥ {low:.3g}, past its sparsest point"
    fell = inside
    if kind == "macs":
        return f"collapses at {100 * fell['mac_frac'].max():.3g}% of the MACs"
    return f"collapses at {100 * fell['sparsity'].min():.4g}% sparse"


def _level_x(level, kind, n_weights):
    return math.log(level) if kind == "macs" else K.log_nnz(level, n_weights)


def levels_of(kind):
    return K.MAC_LEVELS if kind == "macs" else K.SPARSITY_LEVELS


def level_weights(part, kind):
    """{level: [per-seed {run: weight}]} of one curve: the runs (and weights) whose accuracies
    make each seed's accuracy at the level (envelope_weights); [] as in at_levels."""
    n = float(part["n_weights"].iloc[0])
    per_seed = seed_points(part, kind)
    out = {}
    for lv in levels_of(kind):
        x = _level_x(lv, kind, n)
        ws = [envelope_weights(front, hi, x) for front, hi in per_seed.values()]
        out[lv] = ws if ws and all(w is not None for w in ws) else []
    return out


def at_levels(part, kind):
    """{level: [per-seed accuracy]} of one curve (see the module docstring and envelope); an
    empty list where not every seed's span covers the level."""
    n = float(part["n_weights"].iloc[0])
    per_seed = seed_points(part, kind)
    out = {}
    for lv in levels_of(kind):
        x = _level_x(lv, kind, n)
        vals = [envelope(front, hi, x) for front, hi in per_seed.values()]
        out[lv] = vals if vals and not any(math.isnan(v) for v in vals) else []
    return out


def n_test(part):
    return int(part["n_test"].iloc[0]) if "n_test" in part and part["n_test"].iloc[0] == part["n_test"].iloc[0] else 0


def correct_of(*parts):
    """{run: per-image correctness (bool array)} of the runs of these parts that have one
    (reporting.load: predictions.npy against the test labels)."""
    out = {}
    for part in parts:
        if "correct" in part.columns:
            out.update({r: c for r, c in zip(part["run"], part["correct"]) if isinstance(c, np.ndarray)})
    return out


def paired_diff(wa, wb, correct):
    """The per-image differences of two sides' seed-mean scores (see compare.paired_var), each
    side a list of per-seed {run: weight}; None unless every run has its predictions."""
    def side(ws):
        if not ws or any(r not in correct for w in ws for r in w):
            return None
        return sum(sum(v * correct[r].astype(float) for r, v in w.items()) for w in ws) / len(ws)
    sa, sb = side(wa), side(wb)
    if sa is None or sb is None or len(sa) != len(sb):
        return None
    return sa - sb


def compare_curves(a, b, kind, flat_b=False):
    """Compare curve `a` with `b` at every level both cover. flat_b: b is a dense model (its
    per-seed accuracy stands at every level). Paired (compare.verdict) where every run the
    level's values come from has its predictions. Returns (outcome, strength, [level rows]);
    a level row's `test` says paired or unpaired."""
    va, wa = at_levels(a, kind), level_weights(a, kind)
    vb = ({lv: list(b["acc"]) for lv in levels_of(kind)} if flat_b else at_levels(b, kind))
    wb = ({lv: [{r: 1.0} for r in b["run"]] for lv in levels_of(kind)} if flat_b else level_weights(b, kind))
    correct = correct_of(a, b)
    N = n_test(a)
    rows = []
    for lv in levels_of(kind):
        if not va[lv] or not vb[lv]:
            continue
        d = paired_diff(wa[lv], wb[lv], correct)
        out, st, diff, p = K.verdict(va[lv], vb[lv], n_test=N, paired=d)
        if flat_b and N and sum(vb[lv]) / len(vb[lv]) + math.sqrt(K.test_var(sum(vb[lv]) / len(vb[lv]), N)) >= 100:
            out = K.UNMEASURABLE   # dense within its standard error of 100%: nothing to improve on
        rows.append({"level": lv, "a": va[lv], "b": vb[lv], "diff": diff, "p": p, "outcome": out,
                     "strength": st, "test": "unpaired" if d is None else "paired"})
    for r, padj in zip(rows, K.holm([r["p"] for r in rows])):
        r["p_holm"] = padj
        r["outcome"] = K.decide(r["diff"], padj, r["outcome"])
    outcomes = [r["outcome"] for r in rows]
    outcome = K.combine(outcomes)
    # significant when a level with seeds on both sides decides it (or, undecided, when every
    # level had seeds on both sides); suggestive when only one-seed levels decide it
    decisive = [r for r in rows if r["outcome"] in (K.WIN, K.LOSS)] or rows
    strength = "significant" if any(r["strength"] == "significant" for r in decisive) else "suggestive"
    return outcome, strength, rows


CLAIMS = PA.CLAIMS   # the declarations, every paper's (reporting/papers.py)


def _kind(claim, ref_info):
    if claim.axis == "mode":
        return "macs" if ref_info["mode"] in STRUCTURED else "nnz"
    return claim.axis


def _pairs(cv, claims):
    """(claim, reference curve, other curve, kind, flat) for every comparison the declared
    claims make: per claim, each curve its `reference` selects against each curve of the
    same row that one of its `against` selectors picks."""
    info = {k: _info(p) for k, p in cv.items()}
    out = []
    for claim in claims:
        for r, ri in info.items():
            if not matches(ri, claim.reference):
                continue
            kind = _kind(claim, ri)
            for k, oi in info.items():
                if k == r or oi["row"] != ri["row"]:
                    continue
                if any(matches(oi, sel, ri) for sel in claim.against):
                    out.append((claim, r, k, kind, claim.dense))
    return out, info


def comparisons(df, papers=("A",)):
    """Every comparison the claims of `papers` make: dicts with claim (its id), paper, the two
    curves, budget check, outcome (win/loss/inconclusive/mixed/unmatched/unequal budget),
    strength and levels."""
    cv = curves(df)
    pairs, info = _pairs(cv, PA.of(papers))
    out = []
    for claim, a, b, kind, flat in pairs:
        ia, ib = info[a], info[b]
        if flat and ib["epochs"] != ia["epochs"]:
            # several dense curves (e.g. the half-budget start of prune + fine-tune): the
            # equal-budget one is the comparison; the others are not this claim's
            if any(matches(j, sel, ia) and j["row"] == ia["row"] and j["epochs"] == ia["epochs"]
                   for j in info.values() for sel in claim.against):
                continue
        row = {"claim": claim.id, "paper": claim.paper, "row": ia["row"], "a": ia, "b": ib,
               "kind": kind, "levels": [], "regime": ""}
        if ib["epochs"] != ia["epochs"]:
            row.update(outcome="unequal budget", strength="")
        else:
            o, s, lv = compare_curves(cv[a], cv[b], kind, flat_b=flat)
            row.update(outcome=o, strength=s, levels=lv)
            met, words = regime_check(claim.regime, cv[b])
            row["regime"] = words
            if not met and lv:   # the levels stay shown; the comparison is no evidence either way
                row.update(outcome=K.NOT_TESTABLE, strength="")
        out.append(row)
    return out


def regime_check(regime, part):
    """(met, the numbers in words) of a papers.Regime on a curve's runs; (True, '') for none.
    Not met where no field of `regime.high` is there for every run (nothing measured)."""
    if regime is None:
        return True, ""
    high = next((f for f in regime.high if f in part.columns and part[f].notna().all()), None)
    if high is None or regime.low not in part.columns or part[regime.low].isna().any():
        return False, f"needs {regime.what}: not measured in these runs"
    h, lo = float(part[high].mean()), float(part[regime.low].mean())
    gap = h - lo
    met = gap >= regime.min_gap
    n = len(part)
    return met, (f"{'in' if met else 'outside'} its regime, {regime.what}: {high} {h:.2f}% against "
                 f"{regime.low} {lo:.2f}% (mean of {n} seed{'s' if n != 1 else ''}), a gap of {gap:.2f} pp, "
                 f"{'at least' if met else 'under'} {regime.min_gap:g} pp")


def row_verdict(mine):
    """One row's verdict of a claim from that row's comparisons (`mine`). A row whose every
    comparison is outside the claim's regime (papers.Regime) is "not testable at this budget";
    comparisons outside it never count for or against it."""
    counted = [c for c in mine if c["outcome"] in (K.WIN, K.LOSS, K.INCONCLUSIVE, "mixed", K.UNMEASURABLE)]
    # suggestive only when no counted comparison rests on seeds on both sides
    strength = "significant" if any(c["strength"] == "significant" for c in counted) else "suggestive"
    if not counted and any(c["outcome"] == K.NOT_TESTABLE for c in mine):
        return K.NOT_TESTABLE
    return K.claim_verdict([c["outcome"] if c["outcome"] != "mixed" else K.INCONCLUSIVE
                            for c in counted], strength)


def row_verdicts(mine):
    """{row: its verdict} of one claim's comparisons, rows in the order they come."""
    rows = list(dict.fromkeys(c.get("row", "") for c in mine))
    return {r: row_verdict([c for c in mine if c.get("row", "") == r]) for r in rows}


def claim_verdicts(comps, papers=("A",)):
    """[(id, title, rule, verdict, [comparisons])] for the declared claims of `papers`: each
    row's verdict on its own comparisons (row_verdict), then across rows by one rule
    (reporting/across.py RULE; one row: that row's verdict)."""
    out = []
    for claim in PA.of(papers):
        mine = [c for c in comps if c["claim"] == claim.id]
        per = row_verdicts(mine)
        v = AC.combine(per)[0] if per else row_verdict([])
        out.append((claim.id, claim.title, claim.rule, v, mine))
    return out


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
    acc = lambda p: list(df[df["run"].isin(p["runs"])]["acc"])
    correct = correct_of(df)
    for (row, entry), i in info.items():
        if matches(i, table.reference) or not any(matches(i, sel) for sel in table.against):
            continue
        refs = [k for k, j in info.items() if j["row"] == row and matches(j, table.reference)
                and j["mode"] == i["mode"]]
        mine = pts[(pts["row"] == row) & (pts["entry"] == entry)].reset_index(drop=True)
        if refs and info[refs[0]]["epochs"] != i["epochs"]:
            # only equal budgets are compared (RigL at half the epochs is no point against LATS)
            out += [{"row": row, "entry": entry, "a": mine.iloc[n], "ref": None,
                     "match": f"unequal budget ({i['epochs']} against {info[refs[0]]['epochs']} epochs)",
                     "outcome": "unequal budget"} for n in range(len(mine))]
            continue
        if not refs:
            out += [{"row": row, "entry": entry, "a": mine.iloc[n], "ref": None, "match": "no reference",
                     "outcome": "unmatched"} for n in range(len(mine))]
            continue
        ref = pts[(pts["row"] == row) & (pts["entry"] == refs[0][1])].reset_index(drop=True)
        # a collapsed point is a fact to show, never a point to compare with or against
        ref = ref[ref["collapsed"] == 0].reset_index(drop=True)
        dead = {n for n in range(len(mine)) if mine["collapsed"].iloc[n]}
        kind = "macs" if i["mode"] in STRUCTURED else "nnz"
        x = lambda p: list(np.log(p["mac_frac"].clip(lower=1e-9)) if kind == "macs"
                           else np.log(((1 - p["sparsity"]) * p["n_weights"]).clip(lower=0.5)))
        same_key = len(mine) and len(ref) and mine["swept_key"].iloc[0] == ref["swept_key"].iloc[0] != ""
        pairs = {}
        if same_key:
            for n in range(len(mine)):
                hit = ref.index[ref["swept_value"] == mine["swept_value"].iloc[n]]
                if len(hit) and n not in dead:
                    pairs[n] = (int(hit[0]), f"same {mine['swept_key'].iloc[0].split('.')[-1]}")
        xm, xr = x(mine), x(ref)
        unit = "nnz" if kind == "nnz" else "MACs"
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
        taken = {m for m, _ in pairs.values()}
        rest = [n for n in range(len(mine)) if n not in pairs and n not in dead]   # other rounds, keys
        free = [m for m in range(len(ref)) if m not in taken]
        for n, m, d in K.match_points([xm[n] for n in rest], [xr[m] for m in free],
                                      a_seeds=[int(mine["seeds"].iloc[n]) for n in rest],
                                      b_seeds=[int(ref["seeds"].iloc[m]) for m in free]):
            pairs[rest[n]] = (free[m], f"Δlog {unit} {d:.2f}")
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

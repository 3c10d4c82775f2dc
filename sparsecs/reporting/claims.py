"""Points, curves and the papers' declared claims, from the tidy run table of reporting.load.

A point is one setting of one entry in one row (its swept value), over seeds. A curve is an
entry's points in a row. Curves are compared at fixed levels (reporting.compare): elementwise
at fixed sparsity along log(nonzero weights), structured at fixed fractions of the
multiply-adds that slim export keeps (macs_structural: all-zero filters and the inputs they
feed removed). Only curves with the same total training budget (epochs, init_from runs
included) are compared; one comparison per row and pair of curves, its verdict combined over
the levels both curves cover (Holm-corrected over those levels).

A curve is read at those levels by the rules of reporting/envelope.py; the point-by-point tables
are reporting/pointwise.py.

The claims themselves are declarations (reporting/papers.py: per paper, which curves each is
about, what they are compared with, along which axis); this module evaluates any declaration
by the rules above and names no method, role or entry of its own.
"""
import math

import numpy as np

from sparsecs.evidence import FILL_IN
from sparsecs.optim.base import STRUCTURED_MODES as STRUCTURED

from . import across as AC
from . import compare as K
from . import papers as PA
from .envelope import at_levels, level_weights, levels_of


POINT_KEY = ["row", "entry", "mode", "swept_value"]   # a point: one swept value of an entry


def points(df):
    """One row per point: seeds, mean and std of accuracy and sparsity, budget, identity."""
    if "calibration_status" not in df.columns:
        df = df.assign(calibration_status="")
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
                fill_in=("calibration_status", lambda v: bool((v == FILL_IN).any())),
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
    # each seed's gap, so that a mean a hair from the threshold shows its own spread
    each = part.sort_values("seed") if "seed" in part.columns else part
    per = f" (per seed {', '.join(f'{v:.2f}' for v in each[high] - each[regime.low])})" if n > 1 else ""
    return met, (f"{'in' if met else 'outside'} its regime, {regime.what}: {high} {h:.2f}% against "
                 f"{regime.low} {lo:.2f}% (mean of {n} seed{'s' if n != 1 else ''}), a gap of {gap:.2f} pp{per}, "
                 f"{'at least' if met else 'under'} {regime.min_gap:g} pp")


# the comparison outcomes a verdict counts (not: outside the regime, unmatched, unequal budget)
COUNTED = (K.WIN, K.LOSS, K.INCONCLUSIVE, "mixed", K.UNMEASURABLE)


def row_verdict(mine):
    """One row's verdict of a claim from that row's comparisons (`mine`). A row whose every
    comparison is outside the claim's regime (papers.Regime) is "not testable at this budget";
    comparisons outside it never count for or against it."""
    counted = [c for c in mine if c["outcome"] in COUNTED]
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

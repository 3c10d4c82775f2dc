"""A curve read at fixed levels, from the tidy run table of reporting.load (the evidence rules of
reporting/claims.py apply it).

A curve is read along the points every one of its seeds ran and each seed's own fill-in runs
(a λ search's other rounds, seed 0 only, are shown but never used), per seed along its Pareto
frontier of runs that did not collapse (criteria.collapsed) and only on the dense side of that
seed's densest collapsed run among those *inside* its healthy range: a level beyond a collapse
is "not reached", never interpolated through. A collapsed run past every healthy full point of its seed on the swept
value (a λ search's overshoot: a far larger λ, where the network broke and its sparsity means
nothing) ends the curve there and bounds nothing before it. A level counts only where every
seed's frontier covers it.
"""
import math

from sparsecs.evidence import FILL_IN

from . import compare as K


def _xs(part, kind):
    if kind == "macs":
        return [math.log(max(v, 1e-9)) for v in part["mac_frac"]]
    return [K.log_nnz(s, n) for s, n in zip(part["sparsity"], part["n_weights"])]


def full_points(part):
    """The runs of a curve at swept values that every seed of the curve ran, and each seed's
    own fill-in runs (calibration_status 'fill-in', sweeping's Search.fill_value: a seed
    that stopped short of an end level, run again past it; a point of that seed's curve)."""
    n = part["seed"].nunique()
    full = part.groupby("swept_value")["seed"].transform("nunique") == n
    if "calibration_status" in part:
        full |= part["calibration_status"] == FILL_IN
    return part[full]


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


def _seed_reach(part, kind, level):
    """(the curve's full points, each seed's furthest healthy point among them, whether a
    value covers `level`, the words for a value) on the axis `kind` reads. A value within
    COVER_TOL of the level (in log MACs or log nonzeros) covers it, as envelope() reads it."""
    pts = full_points(part)
    healthy = pts[~pts["collapsed"]]
    slack = math.exp(K.COVER_TOL) * (1 + 1e-9)
    if kind == "macs":
        return (pts, healthy.groupby("seed")["mac_frac"].min(), lambda v: v <= level * slack,
                lambda v: f"{100 * v:.3g}% of the MACs")
    return (pts, healthy.groupby("seed")["sparsity"].max(), lambda v: 1 - v <= (1 - level) * slack,
            lambda v: f"{100 * v:.4g}% sparse")


def missed_note(part, kind, level):
    """Why a λ search's own target is no level of the curve ('' unless some run of the curve
    was calibrated to `level` and ended 'not reached'): the seed whose healthy points stop
    furthest short, and where they stop. The search's own reason is in the λ-search table."""
    if "calibration_status" not in part or "calibration_target" not in part:
        return ""
    target = part["calibration_target"].map(_num)
    if not ((part["calibration_status"] == "not reached") & ((target - level).abs() < 1e-9)).any():
        return ""
    _, reach, _, where = _seed_reach(part, kind, level)
    if not len(reach):
        return ""
    seed = reach.idxmax() if kind == "macs" else reach.idxmin()
    return f"its search missed it; seed {seed} stops at {where(reach[seed])}"


def short_note(part, kind, level):
    """Why a level some seeds' healthy points span has no value ('' where none spans it: the
    level is outside the sweep): each seed that stops short, where it stops, or where it
    collapsed. A level counts only where every seed covers it, so one seed 0.1 pp short, or one
    broken seed, costs the level; the cell says which."""
    pts, reach, covers, where = _seed_reach(part, kind, level)
    seeds = sorted(part["seed"].unique())
    short = [s for s in seeds if not (s in reach and covers(reach[s]))]
    if len(short) == len(seeds):
        return ""
    bits = []
    for s in short:
        fell = pts[(pts["seed"] == s) & pts["collapsed"]]
        if len(fell):
            x = fell["mac_frac"].max() if kind == "macs" else fell["sparsity"].min()
            bits.append(f"seed {s} collapses at {where(x)}")
        else:
            bits.append(f"seed {s} stops at {where(reach[s])}" if s in reach else f"seed {s} has no healthy point")
    return ", ".join(bits)


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

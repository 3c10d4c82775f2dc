"""Which runs --only, --seeds and --levels keep: a run's level, what it needs to run, and the
selection closed over those needs."""
import math

from .profile import TARGET_POINT, ProfileError, _fmt


def only(specs, names):
    """The runs of the named entries and, transitively, the runs they depend on."""
    return select(specs, entries=names)


def level(spec):
    """A run's target level: its calibrated entry's target (target_sparsity, or a MACs level:
    profile.TARGET_POINT) or its grid's optim.target (a run matched to another entry's point
    carries that point's); None for neither (dense)."""
    for key in (*TARGET_POINT.values(), "optim.target"):
        v = spec.point.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def needs(spec):
    """The runs `spec` cannot run without: its dependencies (target_from, init_from), round 1 of
    the λ search it takes its value from (a follower seed), and for round 1 of a chained search,
    round 1 of the previous target's search (its later rounds are born from round 1 as it runs)."""
    out = list(spec.deps)
    if spec.after is not None and spec.after.specs:
        out.append(spec.after.specs[0])
    search = spec.search
    if search is not None and search.chain is not None and search.specs and search.specs[0] is spec \
            and search.chain.specs:
        out.append(search.chain.specs[0])
    return out


def select(specs, entries=None, seeds=None, levels=None):
    """The runs that --only (entry names), --seeds (ints) and --levels (floats) all keep (None:
    no such filter; a run without a level passes --levels) and, transitively, every run they
    need (needs()), so that the kept set runs to the end. Names and configs are untouched: this
    only selects. A value the profile does not have is a ProfileError (one line)."""
    if entries is not None:
        known = {s.entry for s in specs}
        bad = [n for n in entries if n not in known]
        if bad:
            names = ", ".join(dict.fromkeys(s.entry for s in specs))
            raise ProfileError(f"--only: no entry {', '.join(bad)}; entries: {names}")
    if seeds is not None:
        have = sorted({s.seed for s in specs})
        bad = [x for x in seeds if x not in have]
        if bad:
            raise ProfileError(f"--seeds: {', '.join(map(str, bad))} is not a seed of the profile; "
                               f"its seeds: {', '.join(map(str, have))}")
    if levels is not None:
        have = sorted({v for v in map(level, specs) if v is not None})
        bad = [x for x in levels if not any(math.isclose(x, v, rel_tol=0, abs_tol=1e-9) for v in have)]
        if bad:
            raise ProfileError(f"--levels: no entry has level {', '.join(_fmt(x) for x in bad)}; "
                               f"the profile's levels: {', '.join(_fmt(v) for v in have) or 'none'}")

    def picked(s):
        lv = level(s)
        return ((entries is None or s.entry in entries) and (seeds is None or s.seed in seeds)
                and (levels is None or lv is None
                     or any(math.isclose(lv, x, rel_tol=0, abs_tol=1e-9) for x in levels)))

    keep = set()
    todo = [s for s in specs if picked(s)]
    if not todo:
        raise ProfileError("no run of the profile passes " + " and ".join(
            f"{flag} {','.join(map(_fmt, v))}" for flag, v in
            (("--only", entries), ("--seeds", seeds), ("--levels", levels)) if v is not None))
    while todo:
        s = todo.pop()
        if id(s) not in keep:
            keep.add(id(s))
            todo += needs(s)
    return [s for s in specs if id(s) in keep]

"""The λ search of a profile's `calibrate`: a pure function of its rounds (docs/methods.md §7)."""
import math

from reporting.compare import COVER_TOL   # how close to a level a point stands at it


class Search:
    """A λ search for one target sparsity (a profile's `calibrate`). next_value() is a pure
    function of the rounds so far, so a rerun replays the same rounds (and skips them).

    It ends in one of two states: *reached* (a healthy round within `tolerance` of the
    target's nonzeros: the calibrated round) or *not reached*, with the reason (plateau,
    collapse, a jump across the target, rounds exhausted) and its closest healthy round, which
    is shown but never stands for the target. A collapsed round (runs.collapsed: training
    accuracy near chance) counts as too much penalty, whatever its sparsity.

    side: for the lowest (-1) and the highest (+1) target of an entry (chained or not), a round within
    tolerance must also lie on the outer side of its target (or within COVER_TOL of it in log
    nonzeros): at most the target's sparsity for the lowest, at least it for the highest. The
    report interpolates each seed's curve between its points and never beyond them, so only
    then does every seed's curve reach the end levels (a 99% search that stops at 98.8% gives
    no value at 99%). A round within tolerance on the inner side is a point of the curve like
    any other and the search goes on; the next target's chain starts from the rounds up to the
    first round within tolerance, so these extra rounds never move a later search."""

    MAX_STEP = 10.0   # at most ×10 (or ÷10) per round while bracketing
    MIN_STEP = 1.5    # at least ×1.5 per round while bracketing
    FLAT = 0.05       # |Δ log nonzeros| below this over a ×3 step of the key, and |Δ sparsity|
    FLAT_ABS = 0.01   # below this (a slow start at low sparsity is not flat): a plateau
    NARROW = 1.05     # a bracket narrower than this ratio of the key: the response jumps

    def __init__(self, key, start, tolerance, rounds, target=None, label="", on_miss="skip", chain=None,
                 side=0):
        self.key, self.start, self.tolerance, self.rounds = key, float(start), tolerance, rounds
        self.target, self.label, self.on_miss = target, label, on_miss
        self.side = side           # -1 / +1: the entry's lowest / highest target (see above)
        self.chain = chain         # with calibrate.chain: the search for the previous target
        self.history = []          # [(value, sparsity, collapsed)] in round order
        self.done = False
        self.status = "searching"  # then "reached" or "not reached"
        self.reason = ""           # why not reached
        self.failed = ""           # a round failed or is unreadable: the search cannot go on
        self.specs = []            # the round runs made so far

    @property
    def note(self):
        return f"not reached: {self.reason}" if self.status == "not reached" else ""

    def _y(self, sparsity):
        return math.log(max(1.0 - sparsity, 1e-9))

    def near(self, sparsity):
        """Within tolerance of the target's nonzeros, either side."""
        return abs((1.0 - sparsity) / (1.0 - self.target) - 1.0) <= self.tolerance

    def within(self, sparsity):
        """A round that calibrates the target: near it, and on the outer side for an end target."""
        if not self.near(sparsity):
            return False
        gap = self._y(sparsity) - self._y(self.target)   # > 0: more nonzeros than the target
        return self.side == 0 or self.side * gap <= COVER_TOL + 1e-12

    def settled(self):
        """The rounds a chained next target starts from are final: this search has ended, or
        has a healthy round near its target (later rounds only move an end to its outer side)."""
        return self.done or self._first_near() is not None

    def _first_near(self):
        return next((i for i, h in enumerate(self.history) if not h[2] and self.near(h[1])), None)

    def ratio(self, sparsity):
        """Nonzeros of a round relative to the target's (1: on target)."""
        return (1.0 - sparsity) / (1.0 - self.target)

    def best(self):
        """The calibrated round when reached; otherwise the healthy round closest to the target
        in log nonzeros (shown, not matched), or None when every round collapsed."""
        yt = self._y(self.target)
        healthy = [h for h in self.history if not h[2]]
        if self.status == "reached":
            return next(h for h in reversed(self.history) if not h[2] and self.within(h[1]))
        return min(healthy, key=lambda h: abs(self._y(h[1]) - yt)) if healthy else None

    def value(self):
        """The value followers run at: the calibrated one, or with `on_miss: closest` the closest
        healthy round's; None when they do not run."""
        if self.status == "reached" or (self.status == "not reached" and self.on_miss == "closest"):
            b = self.best()
            return b[0] if b else None
        return None

    def first_value(self):
        """Round 1's value: `start`; for a chained search, the next value the previous target's
        healthy rounds give for this target (its closest round when one is within tolerance)."""
        prev = self.chain
        if prev is None or not prev.history:
            return self.start
        first = prev._first_near()
        rounds = prev.history if first is None else prev.history[:first + 1]
        guide = Search(self.key, self.start, self.tolerance, self.rounds, self.target)
        guide.history = [h for h in rounds if not h[2]]
        if not guide.history:
            return min(h[0] for h in rounds) / self.MAX_STEP
        hit = [h for h in guide.history if guide.within(h[1])]
        if hit:
            return hit[-1][0]
        v = guide.next_value()
        return v if v is not None else prev.best()[0]

    def _end(self, reason):
        self.done, self.status, self.reason = True, "not reached", reason
        return None

    def record(self, value, sparsity, collapsed=False):
        """Add a finished round; returns the next value to run, or None when done."""
        self.history.append((float(value), float(sparsity), bool(collapsed)))
        if self.within(sparsity) and not collapsed:
            self.done, self.status = True, "reached"
            return None
        nxt = self.next_value()   # a collapsed round within tolerance bounds the bracket from above
        if nxt is not None and len(self.history) >= self.rounds:
            b = self.best()
            closest = f"closest: {b[1]:.4f} at {self.key}={b[0]:g}" if b else "every round collapsed"
            fell = [h[0] for h in self.history if h[2]]
            fell = f"; collapses at {self.key} >= {min(fell):g}" if fell else ""
            return self._end(f"{self.rounds} rounds exhausted ({closest}{fell})")
        return nxt

    def next_value(self):
        """Bracket, then bisect in log λ inside the bracket (secant between two healthy ends,
        guarded to the middle 60%); a flat side or a bracket that cannot shrink ends it."""
        yt = self._y(self.target)
        pts = sorted((math.log(v), self._y(sp), c) for v, sp, c in self.history)
        side = lambda p: 1 if (p[2] or p[1] < yt) else -1   # +1: too sparse (or collapsed)
        for (x0, y0, c0), (x1, y1, c1) in zip(pts, pts[1:]):
            if side((x0, y0, c0)) == -1 and side((x1, y1, c1)) == 1:   # the bracket, λ order
                if x1 - x0 < math.log(self.NARROW):
                    if c1:
                        return self._end(f"collapses before the target: {1 - math.exp(y0):.4f} at "
                                         f"{self.key}={math.exp(x0):g}, collapses at {self.key} >= "
                                         f"{math.exp(x1):g}")
                    return self._end(f"the response jumps from {1 - math.exp(y0):.4f} at "
                                     f"{self.key}={math.exp(x0):g} to {1 - math.exp(y1):.4f} at {math.exp(x1):g}")
                if not c1 and y1 != y0:
                    t = min(max((yt - y0) / (y1 - y0), 0.2), 0.8)
                else:
                    t = 0.5
                return math.exp(x0 + t * (x1 - x0))
        for p0, p1 in zip(pts, pts[1:]):
            if side(p0) == 1 and side(p1) == -1:
                # an inverted response (too sparse at the smaller λ, not sparse enough at the
                # larger): bisect between them; a bracket that cannot shrink ends it
                if p1[0] - p0[0] < math.log(self.NARROW):
                    return self._end(f"non-monotone response: {self.key}={math.exp(p0[0]):g} is too sparse, "
                                     f"{math.exp(p1[0]):g} not sparse enough")
                return math.exp((p0[0] + p1[0]) / 2)
        below = [p for p in pts if side(p) == -1]   # not sparse enough: more penalty needed
        above = [p for p in pts if side(p) == 1]
        pts_side = below or above
        up = bool(below)
        edge = max(pts_side) if up else min(pts_side)
        healthy = [p for p in pts_side if not p[2]]
        if len(healthy) >= 2:
            (x0, y0, _), (x1, y1, _) = (healthy[-2], healthy[-1]) if up else (healthy[1], healthy[0])
            flat = abs(y1 - y0) < self.FLAT and abs(math.exp(y1) - math.exp(y0)) < self.FLAT_ABS
            if abs(x1 - x0) >= math.log(3) - 1e-9 and flat:
                where = "below" if up else "above"
                return self._end(f"plateau: sparsity stays at {1 - math.exp(y1):.4f} ({where} the target) "
                                 f"for {self.key} from {math.exp(min(x0, x1)):g} to {math.exp(max(x0, x1)):g}")
            slope = (y1 - y0) / (x1 - x0) if x1 != x0 else 0.0
        else:
            slope = -1.0   # guess: nonzeros shrink in proportion to λ
        step = (yt - edge[1]) / slope if slope < 0 else math.log(self.MAX_STEP)
        step = min(max(abs(step), math.log(self.MIN_STEP)), math.log(self.MAX_STEP))
        return math.exp(edge[0] + (step if up else -step))

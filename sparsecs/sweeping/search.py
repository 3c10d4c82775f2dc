"""The λ search of a profile's `calibrate`: a pure function of its rounds (docs/methods.md §7)."""
import math

from sparsecs.evidence import COVER_TOL

# how close (in log nonzeros) to an end target a round on its inner side may stand: seed 0
# aims at the outer side so that the other seeds, scattered around it, stay within the report's
# own tolerance (COVER_TOL, wider). Fixed here so searches already run replay.
SIDE_TOL = 0.01
assert SIDE_TOL < COVER_TOL, "a seed beside seed 0's round must still stand at the level"
# the words a missed target's reason starts with (the report and the README quote them)
# ("rounds exhausted in a turn-over": the rounds ran out while bisecting between the best round,
# not sparse enough, and a larger value that gave less: the response peaks short of the target
# there, so more rounds would narrow a ceiling, not step past it)
WHY = ("ceiling", "plateau", "collapse", "jump", "rounds exhausted", "rounds exhausted in a turn-over")
# What a search may be calibrated on (a profile entry's `target_metric`): a fraction that grows
# with the key (the sparsity; of conv filters or kernels all zero) or one that falls with it
# (FALLING: the structural multiply-adds kept, macs_structural / flops_dense). A search works
# on the growing form s (1 - the fraction for a falling one: the MACs removed), so "nonzeros"
# 1 - s is the MACs kept and the tolerance, the sides and the log-space steps below read the
# same on both: ±30% nonzeros is ±30% MACs.
METRICS = ("sparsity", "filter_sparsity", "kernel_sparsity", "macs_structural_fraction")
FALLING = ("macs_structural_fraction",)
# How the searched key is stepped: "log" (λ, D, a weight decay: > 0, steps in log value) or
# "fraction" (a fraction in (0, 1) such as filter pruning's optim.target: steps in
# log(-log(1 - value)), which is > 0 and unbounded, so no step leaves (0, 1)).
SCALES = ("log", "fraction")


def internal(value, metric):
    """A measured value of `metric` in the search's growing form (see METRICS)."""
    return 1.0 - value if metric in FALLING else value


class Search:
    """A λ search for one target sparsity (a profile's `calibrate`). next_value() is a pure
    function of the rounds so far, so a rerun replays the same rounds (and skips them).

    It ends in one of two states: *reached* (a healthy round within `tolerance` of the
    target's nonzeros: the calibrated round) or *not reached*, with the reason: one of WHY
    (`why`), then the highest healthy sparsity the rounds reached and its value (the closest
    one for a target below every round). A collapsed round (criteria.collapsed: training accuracy
    near chance) counts as too much penalty, whatever its sparsity.

    Bracket around the best round (the healthy round closest to the target): when it is not
    sparse enough and a larger value gave less sparsity (a turn-over), the same sparsity (a
    plateau) or collapsed, the answer lies between the two: the search bisects there and never
    steps beyond (sparsity need not grow with λ: xRDA's turns over below 99%). A turn-over
    bracket that cannot shrink is a *ceiling*.

    Followers (`follower_value`): a search that missed still runs its other seeds at its best
    round when that round lies past the entry's neighbouring target on the way to this one
    (`cover`): every seed's curve then spans the levels between (LATS's 98% points at 97.7-97.9%
    have a sparser point on each seed), the point stands for no target (marked not reached).

    side: for the lowest (-1) and the highest (+1) target of an entry (chained or not), a round within
    tolerance must also lie on the outer side of its target (or within SIDE_TOL of it in log
    nonzeros): at most the target's sparsity for the lowest, at least it for the highest. The
    report interpolates each seed's curve between its points and never beyond them, so only
    then does every seed's curve reach the end levels (a 99% search that stops at 98.8% gives
    no value at 99%). A round within tolerance on the inner side is a point of the curve like
    any other and the search goes on; the next target's chain starts from the rounds up to the
    first round within tolerance, so these extra rounds never move a later search."""

    MAX_STEP = 10.0   # at most ×10 (or ÷10) per round while bracketing
    MIN_STEP = 1.5    # at least ×1.5 per round while bracketing
    FLAT = 0.1        # |Δ log nonzeros| below this over a ×SPAN step of the key, and |Δ sparsity|
    FLAT_ABS = 0.01   # below this (a slow start at low sparsity is not flat): a plateau
    SPAN = 2.5        # (LATS at 99%: 98.77-98.87% while λ grows ×2.7, Δ log nonzeros 0.086)
    NARROW = 1.05     # a bracket narrower than this ratio of the key: the response jumps
    # at most x2 (or /2) per fill-in: seed 0's round already stands at the level, the seeds
    # scatter around it, and a flat seed's slope would send a x10 step into a collapse
    FILL_STEP = 2.0

    def __init__(self, key, start, tolerance, rounds, target=None, label="", on_miss="skip", chain=None,
                 side=0, targets=(), start_from=None, metric="sparsity", scale="log", fill=0):
        self.key, self.start, self.tolerance, self.rounds = key, float(start), tolerance, rounds
        self.fill = fill           # calibrate.fill: the most fill-in runs per follower seed (fill_value)
        # target, targets and the rounds' second field are in the growing form (internal());
        # `level` gives the target in the metric's own units
        self.metric, self.scale = metric, scale
        # calibrate.start_from {profile, entry}: round 1 at another profile's value for this
        # target times a budget factor (sweeping.startfrom.resolve_start sets source and factor)
        self.start_from = start_from
        self.source = None         # that profile's value for this target (None: it has none)
        self.factor = 1.0          # the method's budget factor (optim Method.budget_factor)
        self.start_note = ""       # where round 1's value comes from, for the dry run
        self.target, self.label, self.on_miss = target, label, on_miss
        self.side = side           # -1 / +1: the entry's lowest / highest target (see above)
        self.chain = chain         # with calibrate.chain: the search for the previous target
        self.targets = sorted(targets)   # the entry's targets (for cover)
        self.history = []          # [(value, sparsity, collapsed)] in round order
        self.done = False
        self.status = "searching"  # then "reached" or "not reached"
        self.reason = ""           # why not reached: one of WHY, then the numbers
        self.why = ""              # that word alone
        self.failed = ""           # a round failed or is unreadable: the search cannot go on
        self.specs = []            # the round runs made so far
        self._turn = None          # (value, sparsity) of the larger round of a turn-over being bisected

    @property
    def level(self):
        """The target in its metric's own units (a MACs fraction for macs_structural_fraction)."""
        # rounded: 1 - (1 - 0.3) is 0.30000000000000004, and the level is written into each run
        return None if self.target is None else round(internal(self.target, self.metric), 12)

    def show(self, s):
        """A round's measured value in its metric's words."""
        return f"{s:.4f}" if self.metric not in FALLING else f"MACs {1.0 - s:.4f}"

    def _x(self, v):
        """Where the search steps: log value, or log(-log(1 - value)) for a fraction key."""
        return math.log(v) if self.scale == "log" else math.log(-math.log1p(-v))

    def _v(self, x):
        return math.exp(x) if self.scale == "log" else -math.expm1(-math.exp(x))

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
        return self.side == 0 or self.side * gap <= SIDE_TOL + 1e-12

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

    def cover(self):
        """A missed search's best healthy round lies strictly between this target and the entry's
        neighbouring target on the round's side: its followers extend every seed's curve across
        that level (no extrapolation: each seed's curve then brackets the levels between)."""
        if self.status != "not reached" or self.target is None:
            return False
        b = self.best()
        if b is None:
            return False
        if b[1] < self.target:
            lower = [t for t in self.targets if t < self.target]
            return bool(lower) and b[1] > max(lower)
        upper = [t for t in self.targets if t > self.target]
        return bool(upper) and b[1] < min(upper)

    def follower_value(self):
        """The value the other seeds run at: value(), or a missed search's best round when it
        covers a level (cover); None when they do not run."""
        v = self.value()
        if v is None and self.cover():
            return self.best()[0]
        return v

    def first_value(self):
        """Round 1's value: `start`; with start_from, the source profile's value for this target
        times the budget factor, or, once the previous target of the chain has a healthy round
        near its target and a source value too, times the factor that search measured (that
        round's value over its source value); without a source value, for a chained search,
        the next value the previous target's healthy rounds give for this target (its closest
        round when one is within tolerance)."""
        prev = self.chain
        if self.source is not None:
            near = prev._first_near() if prev is not None and prev.source is not None else None
            if near is not None:   # the first round near its target: fixed once it exists (replays)
                return self.source * (prev.history[near][0] / prev.source)
            return self.source * self.factor
        if prev is None or not prev.history:
            return self.start
        first = prev._first_near()
        rounds = prev.history if first is None else prev.history[:first + 1]
        guide = Search(self.key, self.start, self.tolerance, self.rounds, self.target,
                       metric=self.metric, scale=self.scale)
        guide.history = [h for h in rounds if not h[2]]
        if not guide.history:
            return self._v(self._x(min(h[0] for h in rounds)) - math.log(self.MAX_STEP))
        hit = [h for h in guide.history if guide.within(h[1])]
        if hit:
            return hit[-1][0]
        v = guide.next_value()
        return v if v is not None else prev.best()[0]

    def fill_value(self, points):
        """The next fill-in run of one follower seed of a reached end target (side ±1), or None.
        points: [(value, measured)] of that seed, its run at the calibrated value first, then
        its fill-ins so far, all healthy. Seeds run at one value scatter (LATS at 99%, 8 epochs:
        seed 0 at 99.20%, seeds 1 and 2 at 98.90 and 98.96%); the report reads each seed's
        curve between its own points and never beyond, so a seed whose last point stops more
        than COVER_TOL short of the level, on the inner side, loses the level for its whole
        entry. Its fill-in aims COVER_TOL/2 past the level on the outer side, along the seed's
        own slope of log nonzeros against the key (its last two points) or else that of the
        search's two healthy rounds nearest the target (-1 where neither falls), a step of
        x1.05 to x2 (FILL_STEP). A seed past the level on the outer side, or within COVER_TOL of it, needs
        none: its curve reaches the level from its points and the other targets' points."""
        if not self.side or self.status != "reached":
            return None
        value, measured = points[-1]
        yt = self._y(self.target)
        if self.side * (self._y(measured) - yt) <= COVER_TOL + 1e-12:
            return None
        slope = self._slope([(self._x(v), self._y(m)) for v, m in points[-2:]])
        if slope is None:
            rounds = sorted(((self._x(v), self._y(m)) for v, m, c in self.history if not c),
                            key=lambda p: abs(p[1] - yt))
            pair = next(([a, b] for i, a in enumerate(rounds) for b in rounds[i + 1:] if b[0] != a[0]), [])
            slope = self._slope(pair)
        step = (yt - self.side * COVER_TOL / 2 - self._y(measured)) / (slope or -1.0)
        step = math.copysign(min(max(abs(step), math.log(self.NARROW)), math.log(self.FILL_STEP)), step)
        return self._v(self._x(value) + step)

    @staticmethod
    def _slope(pts):
        """d(log nonzeros)/d(key) of two points [(x, y)] when it falls, else None."""
        if len(pts) < 2 or pts[0][0] == pts[1][0]:
            return None
        slope = (pts[1][1] - pts[0][1]) / (pts[1][0] - pts[0][0])
        return slope if slope < 0 else None

    def _end(self, why, detail=""):
        """End not reached: `why` one of WHY; the reason adds the highest healthy sparsity reached
        (the closest round for a target below every round) and `detail`."""
        assert why in WHY, why
        healthy = [h for h in self.history if not h[2]]
        if not healthy:
            numbers = "every round collapsed"
        elif max(h[1] for h in healthy) < self.target:
            top = max(healthy, key=lambda h: h[1])
            numbers = f"{'fewest' if self.metric in FALLING else 'highest'} {self.show(top[1])} at {self.key}={top[0]:g}"
        else:
            b = self.best()
            numbers = f"closest {self.show(b[1])} at {self.key}={b[0]:g}"
        self.done, self.status, self.why = True, "not reached", why
        self.reason = f"{why}: {numbers}" + (f"; {detail}" if detail else "")
        return None

    def record(self, value, sparsity, collapsed=False):
        """Add a finished round; returns the next value to run, or None when done."""
        self.history.append((float(value), float(sparsity), bool(collapsed)))
        if self.within(sparsity) and not collapsed:
            self.done, self.status = True, "reached"
            return None
        self._turn = None
        nxt = self.next_value()   # a collapsed round within tolerance bounds the bracket from above
        if nxt is not None and len(self.history) >= self.rounds:
            fell = [h[0] for h in self.history if h[2]]
            fell = f"; collapses at {self.key} >= {min(fell):g}" if fell else ""
            if self._turn is not None:
                v, sp = self._turn
                return self._end("rounds exhausted in a turn-over", f"{self.rounds} rounds; a larger {self.key} "
                                 f"gives less: {self.show(sp)} at {v:g}{fell}")
            return self._end("rounds exhausted", f"{self.rounds} rounds{fell}")
        return nxt

    def next_value(self):
        """Bracket, then bisect in log λ inside the bracket (secant between two healthy ends,
        guarded to the middle 60%); a flat side or a bracket that cannot shrink ends it."""
        yt = self._y(self.target)
        pts = sorted((self._x(v), self._y(sp), c) for v, sp, c in self.history)
        side = lambda p: 1 if (p[2] or p[1] < yt) else -1   # +1: too sparse (or collapsed)
        healthy = [p for p in pts if not p[2]]
        best = min(healthy, key=lambda p: (abs(p[1] - yt), -p[0])) if healthy else None   # ties: larger λ
        larger = [p for p in pts if best is not None and p[0] > best[0]]
        if best is not None and side(best) == -1 and larger:
            # not sparse enough at the best round, and a larger value was run: the answer lies
            # between the best round and the nearest larger one, never beyond
            if side(larger[0]) == 1:
                return self._inside(best, larger[0], yt)
            return self._turned(best, larger[0], pts)
        for p0, p1 in zip(pts, pts[1:]):
            if side(p0) == -1 and side(p1) == 1:   # the bracket, λ order
                return self._inside(p0, p1, yt)
        for p0, p1 in zip(pts, pts[1:]):
            if side(p0) == 1 and side(p1) == -1:
                # an inverted response (too sparse at the smaller λ, not sparse enough at the
                # larger): bisect between them; a bracket that cannot shrink ends it
                if p1[0] - p0[0] < math.log(self.NARROW):
                    return self._end("jump", f"non-monotone response: {self.key}={self._v(p0[0]):g} is "
                                     f"too sparse, {self._v(p1[0]):g} not sparse enough")
                return self._v((p0[0] + p1[0]) / 2)
        below = [p for p in pts if side(p) == -1]   # not sparse enough: more penalty needed
        above = [p for p in pts if side(p) == 1]
        pts_side = below or above
        up = bool(below)
        edge = max(pts_side) if up else min(pts_side)
        healthy = [p for p in pts_side if not p[2]]
        if len(healthy) >= 2:
            (x0, y0, _), (x1, y1, _) = (healthy[-2], healthy[-1]) if up else (healthy[1], healthy[0])
            if self._flat([(x0, y0), (x1, y1)]):
                where = "below" if up == (self.metric not in FALLING) else "above"
                return self._end("plateau", f"{self._what()} stays at {self.show(1 - math.exp(y1))} ({where} the target) "
                                 f"for {self.key} from {self._v(min(x0, x1)):g} to {self._v(max(x0, x1)):g}")
            slope = (y1 - y0) / (x1 - x0) if x1 != x0 else 0.0
        else:
            slope = -1.0   # guess: nonzeros shrink in proportion to λ
        step = (yt - edge[1]) / slope if slope < 0 else math.log(self.MAX_STEP)
        step = min(max(abs(step), math.log(self.MIN_STEP)), math.log(self.MAX_STEP))
        return self._v(edge[0] + (step if up else -step))

    def _what(self):
        return "the MACs fraction" if self.metric in FALLING else "sparsity"

    def _flat(self, pts):
        """A plateau: over a step of at least ×SPAN in the key, log nonzeros move by less than
        FLAT and sparsity by less than FLAT_ABS. pts: [(log value, log nonzeros)]."""
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return (max(xs) - min(xs) >= math.log(self.SPAN) - 1e-9 and max(ys) - min(ys) < self.FLAT
                and max(map(math.exp, ys)) - min(map(math.exp, ys)) < self.FLAT_ABS)

    def _inside(self, p0, p1, yt):
        """The next round inside the bracket p0 (not sparse enough) < p1 (too sparse or
        collapsed): the secant, kept in the middle 60%, or bisection with a collapsed end."""
        (x0, y0, _), (x1, y1, c1) = p0, p1
        if x1 - x0 < math.log(self.NARROW):
            if c1:
                return self._end("collapse", f"collapses at {self.key} >= {self._v(x1):g}")
            return self._end("jump", f"the response jumps from {self.show(1 - math.exp(y0))} at "
                             f"{self.key}={self._v(x0):g} to {self.show(1 - math.exp(y1))} at {self._v(x1):g}")
        t = min(max((yt - y0) / (y1 - y0), 0.2), 0.8) if not c1 and y1 != y0 else 0.5
        return self._v(x0 + t * (x1 - x0))

    def _turned(self, best, nxt, pts):
        """The best round is not sparse enough and the nearest larger value, healthy, is no
        sparser: a plateau (with the round before the best: flat over ×SPAN) ends the search;
        otherwise a turn-over, bisected in log λ; one that cannot shrink is a ceiling."""
        i = pts.index(best)
        run = [p for p in pts[max(i - 1, 0):i] if not p[2]]   # the round before, and every
        for p in pts[i:]:                                       # larger one up to a bound
            if p[2] or p[1] < self._y(self.target):
                break
            run.append(p)
        if self._flat([(p[0], p[1]) for p in run]):
            lo, hi = run[0], run[-1]
            return self._end("plateau", f"{self._what()} stays within {self.show(1 - math.exp(max(p[1] for p in run)))}-"
                             f"{self.show(1 - math.exp(min(p[1] for p in run)))} for {self.key} from "
                             f"{self._v(lo[0]):g} to {self._v(hi[0]):g}")
        if nxt[0] - best[0] < math.log(self.NARROW):
            return self._end("ceiling", f"a larger {self.key} gives less: {self.show(1 - math.exp(nxt[1]))} at "
                             f"{self._v(nxt[0]):g}")
        self._turn = (self._v(nxt[0]), 1 - math.exp(nxt[1]))   # record() names it if rounds run out
        return self._v((best[0] + nxt[0]) / 2)

"""Rules about a run's numbers that both sweeping (where a λ search aims) and reporting (which
points stand at a level, which are matched) apply; neither package imports the other for them.
"""

MATCH_TOL = 0.1          # |log(nnz_a / nnz_b)| at most this for two points to be matched
# A seed's point this close to a level (in log nonzeros or log MACs: 5%) stands at it, never
# farther: half MATCH_TOL, so that any two points standing at one level are close enough for
# the report to match them as one sparsity. Seeds run at one λ scatter in sparsity (STR's 99%
# point: seed 0 at 99.10%, seed 1 at 98.98%, 2% in nonzeros; the sine schedule's 90%: seed 2 at
# 90.16%, 1.6%); under 1% such a seed lost the level. 5% in nonzeros is 0.05 pp at 99%, 0.1 pp
# at 98%: below what seeds or the test set resolve in accuracy.
COVER_TOL = MATCH_TOL / 2

# calibration_status of a fill-in run: a follower seed that stopped short of its entry's end
# level, run again past it (sweeping's Search.fill_value); the report reads it as a point of
# that seed's own curve, like the points every seed ran
FILL_IN = "fill-in"

"""The papers this repository reproduces and the claims of each, as declarations.

A claim is data: which curves it is about (`reference`), what each is compared with in its
row (`against`), along which axis, and the words the report prints. reporting/claims.py
evaluates every declaration by the same evidence rules (reporting/compare.py); it names no
method, role or entry itself. A profile says which papers' claims it speaks to (its
`claims:` key, sweeping/profile.py; default paper A only).

A selector is a dict {field: wanted} over a curve's description (reporting.claims._info:
row, entry, method, mode, role, epochs, from_trained, and any summary column such as
threshold_schedule, '' where a run has none). `wanted` is a value (equal), a tuple (one of
them), NOT(values) (none of them) or SAME (the reference curve's own value). `against` is a
tuple of selectors: a curve of the reference's row (not the reference itself) that matches
any one of them is compared.

Axis: "nnz" (fixed sparsity levels along log nonzero weights), "macs" (fixed fractions of
the structural multiply-adds) or "mode" (macs for a structured reference, else nnz).
`dense`: the other curve is a dense model, its per-seed accuracy standing at every level; of
several such curves in a row only those at the reference's budget are compared when there
are any (prune + fine-tune's half-budget dense start is not the comparison).

`regime`: what makes the claim testable, measured on the runs (Regime); where the runs are
outside it, the verdict is "not testable at this budget" with the numbers, never supported
or refuted.
"""
from dataclasses import dataclass

from sparsecs.optim.base import STRUCTURED_MODES as STRUCTURED


class NOT(tuple):
    """A selector value: anything but these."""

    def __new__(cls, *values):
        return super().__new__(cls, values)


SAME = "<the reference's own value>"


@dataclass(frozen=True)
class Regime:
    """What makes a claim testable, measured on the runs it compares: on the curve each
    comparison is made against (the `against` side), the mean over its seeds of the first of
    `high` that every run has, minus the mean of `low`, is at least `min_gap`. Where it is not,
    that comparison is "not testable at this budget", with the numbers, and counts neither
    for nor against the claim (reporting.claims.regime_check; docs/methods.md, claims)."""
    what: str                 # the regime in words: "a dense model that overfits"
    high: tuple               # summary fields, the first every run has
    low: str
    min_gap: float            # percentage points


# a regularizer can only help a model that overfits: the dense model's final training accuracy
# at least 1 pp above its test accuracy (train_acc_final: the final weights on training images
# without augmentation; runs from before it was recorded: the last epoch's training accuracy,
# an average over weights still learning, which understates the gap)
OVERFITS = Regime("a dense model that overfits (training accuracy at least 1 pp above test accuracy)",
                  ("train_acc_final", "train_acc"), "test_acc", 1.0)


@dataclass(frozen=True)
class Claim:
    paper: str
    id: str
    title: str
    rule: str                 # what is compared, as the report says it
    reference: dict           # selector of the claim's own curves
    against: tuple            # selectors of what each is compared with (any one matches)
    axis: str = "mode"        # nnz | macs | mode
    dense: bool = False       # the other curve is a dense model (flat across levels)
    note: str = ""            # how to read an inconclusive verdict, where it needs saying
    regime: Regime = None     # what makes it testable (None: any runs)


PAPERS = {
    "A": "Paper A: xRDA (Siegel, Chen, Zhang, Xu; arXiv 2008.09661)",
    "B": "Paper B: soft-threshold pruning as ISTA, LATS / S-LATS (Chen et al., ICLR 2023, arXiv 2302.13019)",
}

# paper A's method: xRDA trained from random initialization (the profiles' `reference` role)
XRDA = {"role": "reference", "from_trained": False}
# paper B's method: the soft threshold with the LATS schedule (S-LATS under a cosine lr), from
# random initialization
LATS = {"method": "soft_threshold", "threshold_schedule": "lats", "from_trained": False,
        "mode": "elementwise"}
NO_NOISE = "An inconclusive result here means no measurable difference at this number of seeds."

CLAIMS = (
    Claim("A", "1", "Sparser and more accurate than the baselines (unstructured)",
          "xRDA from scratch against each elementwise baseline of its row (the soft threshold at "
          "its LATS schedule: its linear and sine schedules are paper B's ablations, claim B1), "
          "at fixed sparsity levels",
          {**XRDA, "mode": "elementwise"},
          ({"role": "baseline", "mode": "elementwise", "threshold_schedule": ("", "lats")},),
          axis="nnz"),
    Claim("A", "2", "Structured sparsity",
          "xRDA kernel/channel mode against each structured baseline of its row, at fixed "
          "fractions of the structural multiply-adds (what slim export keeps)",
          {**XRDA, "mode": STRUCTURED}, ({"role": "baseline", "mode": STRUCTURED},), axis="macs"),
    Claim("A", "3", "Training from scratch in one run",
          "xRDA from random initialization against the curves of its mode that start from a "
          "trained dense model (prune + fine-tune, xRDA from the dense model), at fixed levels",
          XRDA, ({"from_trained": True, "role": NOT("dense"), "mode": SAME},), note=NO_NOISE),
    Claim("A", "4", "A regularizing effect (sparse at least as accurate as dense)",
          "xRDA against the dense model of its row at every level its sweep covers",
          XRDA, ({"role": "dense"},), dense=True, note=NO_NOISE, regime=OVERFITS),
    Claim("B", "B1", "A constant ℓ1 coefficient (LATS / S-LATS) beats the other threshold schedules",
          "the soft threshold with the LATS schedule (d_t = λ·Σ η_s; S-LATS under a cosine lr) "
          "against the same method with the linear and sine schedules and against STR's learned "
          "per-layer threshold, each calibrated to the same target sparsities by the same rule, "
          "at fixed sparsity levels and equal budget",
          LATS, ({"method": "soft_threshold", "threshold_schedule": ("linear", "sine"), "from_trained": False},
                 {"method": "str"}), axis="nnz"),
    Claim("B", "B2", "The soft threshold against the pruning baselines",
          "the soft threshold with the LATS schedule against gradual magnitude pruning, prune + "
          "fine-tune and RigL, at fixed sparsity levels and equal budget",
          LATS, ({"method": ("gmp", "magnitude_finetune", "rigl")},), axis="nnz"),
)

BY_ID = {c.id: c for c in CLAIMS}


@dataclass(frozen=True)
class PointTable:
    """A point-by-point table (reporting.pointwise.point_pairs): every point of the curves that
    `against` selects, matched to the row's `reference` point of the same mode. Shown while a
    profile is incomplete too: it names no verdict of a claim, only each point's test."""
    paper: str
    key: str                  # the file: tables/pairs_<key>.md
    title: str
    name: str                 # the reference's name in the header
    reference: dict
    against: tuple


# Paper A's: each baseline and ablation point against xRDA. Paper B's: each point its claims
# B1 and B2 compare (the other threshold schedules, STR, the pruning baselines) against LATS.
POINT_TABLES = (
    PointTable("A", "ablation", "Ablations against xRDA, point by point", "xRDA", XRDA, ({"role": "ablation"},)),
    PointTable("A", "baseline", "Baselines against xRDA, point by point", "xRDA", XRDA, ({"role": "baseline"},)),
    PointTable("B", "lats", "Paper B's comparisons against LATS, point by point", "LATS", LATS,
               BY_ID["B1"].against + BY_ID["B2"].against),
)


def of(papers):
    """The declared claims of these papers, in declaration order."""
    return [c for c in CLAIMS if c.paper in papers]

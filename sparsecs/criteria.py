"""Scientific rules about a run's numbers that both sweeping (what to search, what counts) and
reporting (the verdicts) apply: when a run collapsed.
"""


# A run is collapsed when its final training accuracy is below this fraction of the way from
# chance (100 / classes) to 100%: 55% for 10 classes. Training accuracy, not test accuracy, so
# that no test image decides it, and not the BatchNorm statistics either. "Final" is the final
# weights' (train_acc_final, measured on FINAL_TRAIN_IMAGES training images after training),
# not the last epoch's average (train_acc): a threshold that still grows while the rate goes to
# zero can break a model in its last steps while the epoch's average stays near 90%.
COLLAPSE_FRACTION = 0.5
FINAL_TRAIN_IMAGES = 10_000


def collapse_measure(summary):
    """(training accuracy %, which field) that collapsed() judges a run by: train_acc_final,
    or for a run from before summary.json recorded it, the last epoch's train_acc."""
    final = summary.get("train_acc_final")
    if final is not None and final == final and final != "":   # absent, NaN (a csv gap), ""
        return float(final), "train_acc_final"
    return float(summary["train_acc"]), "train_acc"


def collapsed(summary):
    """Whether a finished run's training collapsed (see COLLAPSE_FRACTION)."""
    from sparsecs import data

    spec = data.DATASETS.get(summary.get("dataset"))
    chance = 100.0 / (spec.num_classes if spec else 10)
    return collapse_measure(summary)[0] < chance + COLLAPSE_FRACTION * (100.0 - chance)

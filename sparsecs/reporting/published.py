"""Published dense accuracies per data set: the held-out check that a profile's dense model is a
sane baseline (neither weak, which would flatter every pruning method, nor implausibly strong).

Each figure is quoted from its source as printed, with what the source says about its model,
augmentation and budget; none of them was rerun here. The report sets the profile's own dense
runs (mean ± std over seeds, the test set's standard error beside it) next to them."""
import math

from . import compare as K

# (model, parameters, augmentation and budget as the source states them, test accuracy %, source)
FASHION_TABLE = "Fashion-MNIST README, benchmark table (github.com/zalandoresearch/fashion-mnist)"
PUBLISHED = {
    "fashion_mnist": [
        ("2 conv layers, max pooling (Keras)", "—", "none", 87.6, FASHION_TABLE),
        ("3 conv layers + pooling + BN", "—", "none", 90.3, FASHION_TABLE),
        ("2 conv layers, < 100K parameters", "< 100K", "none", 92.5, FASHION_TABLE),
        ("2 conv layers + 3 FC", "1.8M", "normalization", 93.2, FASHION_TABLE),
        ("ResNet-18", "11M", "flips, translation, rotation", 94.9, FASHION_TABLE),
        ("WRN-28-10", "36M", "crops and flips", 95.9, FASHION_TABLE),
        ("crowd-sourced human labelling (1,000 test images)", "—", "—", 83.5, FASHION_TABLE),
    ],
}


def dense_runs(df):
    """{(row, dataset, entry, total epochs): [final test accuracies]} of the dense entries."""
    out = {}
    part = df[df["role"] == "dense"]
    for (row, dataset, entry, epochs), g in part.groupby(["row", "dataset", "entry", "total_epochs"], sort=False):
        out[(row, dataset, entry, int(epochs))] = [float(v) for v in g["test_acc"] if v == v]
    return out


def section(df):
    """Markdown lines of the held-out check, or [] when no dense run's data set has published figures."""
    groups = {k: v for k, v in dense_runs(df).items() if k[1] in PUBLISHED and v}
    if not groups:
        return []
    L = ["## The dense model as a held-out check", "",
         "The profile's dense runs beside published dense accuracies on the same test set (quoted as "
         "their sources print them, not rerun here; their budgets and augmentation differ from this "
         "profile's). Test-set SE: the binomial standard error of one run's accuracy on the "
         "test set, sqrt(p(1−p)/N).", ""]
    sources = sorted({src for k in groups for *_, src in PUBLISHED[k[1]]})
    L += ["Sources: " + "; ".join(sources) + ".", ""]
    for (row, dataset, entry, epochs), accs in groups.items():
        n_test = int(df.loc[df["dataset"] == dataset, "n_test"].iloc[0]) if "n_test" in df.columns else 0
        mean = sum(accs) / len(accs)
        sd = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else float("nan")
        se = math.sqrt(K.test_var(mean, n_test)) if n_test else float("nan")
        ours = (f"{mean:.2f} ± {sd:.2f}% over {len(accs)} seeds" if len(accs) > 1 else f"{mean:.2f}% (one seed)")
        part = df[(df["row"] == row) & (df["entry"] == entry)]
        weights = f", {int(part['n_weights'].iloc[0]):,} prunable weights" if "n_weights" in part.columns else ""
        L += [f"**{row}, `{entry}`, {epochs} epochs{weights}: {ours}** (test-set SE {se:.2f} pp).", ""]
        rows = [[m, p, aug, f"{acc:.1f}", f"{mean - acc:+.2f}"] for m, p, aug, acc, _ in PUBLISHED[dataset]]
        L += ["| published model | parameters | augmentation | test accuracy % | this dense run − it (pp) |",
              "| :--- | :--- | :--- | ---: | ---: |"]
        L += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    return L

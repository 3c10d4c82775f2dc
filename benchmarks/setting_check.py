"""Does a training setting move accuracy? Runs of one profile against the same runs of another
that differ only in the setting (precision, channels_last, compile), seed by seed.

    python -m benchmarks.setting_check [--old fashion] [--new fashion_bf16] [--entries sgd xrda]
                                       [--results results] [--out FILE.md]

For each entry of NEW, its runs are paired with OLD's runs of the same entry and seed whose
config is the same but for the setting keys (the same seed gives the same initial weights and
batch order, so a pair differs by the setting alone, plus the floating-point path). Prints per
entry: each side's mean ± sd over seeds, the mean of the paired differences new − old with its
95% t-interval (n − 1 degrees of freedom), and the two noise scales to read it against: the seed
sd of the old side, and the binomial sd of one run's test accuracy on the test set
(sqrt(p(1 − p)/n_test)). A setting whose interval lies inside ± one seed sd moves accuracy by
less than seed noise. Never selects anything: every paired run is shown.
"""
import argparse
import math
import os
import statistics
import sys

from sparsecs import config as C
from sparsecs import fileio
from sparsecs import paths
from sparsecs import summaries

SETTING_KEYS = ("precision", "channels_last", "compile")
# two-sided 95% Student t quantiles by degrees of freedom (scipy.stats.t.ppf(0.975, df))
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
TEST_IMAGES = {"fashion_mnist": 10_000, "cifar10": 10_000, "cifar100": 10_000}


def profile_runs(results, profile):
    """{(entry, seed): (summary, config)} of the complete runs a sweep of `profile` made."""
    out = {}
    root = os.path.join(results, "runs")
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        try:
            s = summaries.complete_summary(folder)
        except paths.RunFolderError:
            continue
        if not s or s.get("profile") != profile:
            continue
        cfg = C.load_yaml(paths.path(folder, paths.CONFIG))
        out.setdefault((s["entry"], int(s["seed"])), []).append((s, cfg))
    return out


def same_but_setting(a, b):
    """Whether two configs differ in the setting keys (and what only says where things are)."""
    skip = set(SETTING_KEYS) | set(C.NOT_HASHED)
    return {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


def pairs(old, new, entry):
    """[(seed, old summary, new summary)] of `entry`: each new run with the old run of its seed
    whose config matches but for the setting."""
    out = []
    for (e, seed), news in sorted(new.items()):
        if e != entry:
            continue
        for s_new, c_new in news:
            match = [s for s, c in old.get((entry, seed), ()) if same_but_setting(c, c_new)]
            if match:
                out.append((seed, match[0], s_new))
    return out


def describe(entry, ps):
    o = [p[1]["test_acc"] for p in ps]
    n = [p[2]["test_acc"] for p in ps]
    d = [b - a for a, b in zip(o, n)]
    k = len(ps)
    sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else float("nan")   # noqa: E731
    half = T975.get(k - 1, 1.96) * sd(d) / math.sqrt(k) if k > 1 else float("nan")
    n_test = TEST_IMAGES.get(ps[0][1]["dataset"], 0)
    p = statistics.mean(o) / 100
    binom = 100 * math.sqrt(p * (1 - p) / n_test) if n_test else float("nan")
    mean_d = statistics.mean(d)
    inside = abs(mean_d) + half <= sd(o) if k > 1 else False
    lines = [f"### {entry}: {k} seed pair(s)", "",
             "| seed | old test acc | new test acc | new − old | old sparsity | new sparsity | old s/epoch | new s/epoch |",
             "|---|---|---|---|---|---|---|---|"]
    for seed, a, b in ps:
        lines.append(f"| {seed} | {a['test_acc']:.2f} | {b['test_acc']:.2f} | {b['test_acc'] - a['test_acc']:+.2f} "
                     f"| {a['sparsity']:.4f} | {b['sparsity']:.4f} | {a['train_seconds'] / a['epochs']:.0f} "
                     f"| {b['train_seconds'] / b['epochs']:.0f} |")
    lines += ["",
              f"old {statistics.mean(o):.2f} ± {sd(o):.2f}, new {statistics.mean(n):.2f} ± {sd(n):.2f} "
              f"(mean ± sd over seeds); paired difference new − old {mean_d:+.2f} pp, 95% interval "
              f"[{mean_d - half:+.2f}, {mean_d + half:+.2f}]; seed sd (old) {sd(o):.2f} pp; one run's "
              f"test-set sd {binom:.2f} pp ({n_test:,} images).",
              "",
              ("**Within seed noise**: the interval lies inside ± one seed sd." if inside else
               "**Not shown to be within seed noise**: the interval reaches past one seed sd."), ""]
    return lines, inside


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default="fashion")
    ap.add_argument("--new", default="fashion_bf16")
    ap.add_argument("--entries", nargs="+", default=["sgd", "xrda"])
    ap.add_argument("--results", default=paths.RESULTS)
    ap.add_argument("--out", help="also write the text to this markdown file")
    args = ap.parse_args()
    old, new = profile_runs(args.results, args.old), profile_runs(args.results, args.new)
    text = [f"# Setting check: `{args.new}` against `{args.old}`", "",
            f"`python -m benchmarks.setting_check --old {args.old} --new {args.new} "
            f"--entries {' '.join(args.entries)}`", ""]
    verdicts = []
    for entry in args.entries:
        ps = pairs(old, new, entry)
        if not ps:
            text += [f"### {entry}: no run of `{args.new}` has a matching `{args.old}` run yet", ""]
            verdicts.append(False)
            continue
        lines, inside = describe(entry, ps)
        text += lines
        verdicts.append(inside)
    print("\n".join(text))
    if args.out:
        fileio.atomic_write(args.out, "\n".join(text) + "\n")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())

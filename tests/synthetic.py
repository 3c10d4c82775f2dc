"""Synthetic run folders for a whole profile (the real `quick` or `fashion` profile, or any
other): a stand-in launcher writes, for every run the sweep asks for, the files a real run
leaves (summary.json, metrics.csv with one row per epoch, layers.csv with the model's real
conv/linear layers), with numbers from simple formulas chosen here. Nothing is trained.

    results = synthetic.sweep_profile("configs/profiles/fashion.yaml", tmp_path / "results")

The formulas: sparsity follows the swept λ (or D, or the target) by a power law per method,
accuracy drops with the decades of sparsity, by method; a per-seed offset from a hash; one
run of each of a few kinds collapses (training accuracy near chance) or ends all zero, so
that the report meets every case it must show."""
import hashlib
import math
import os

from sparsecs import config as C
from sparsecs import fileio
from sparsecs import paths
from sparsecs import runindex
from sparsecs import summaries
import sweep
from tests.conftest import StandInLauncher

DENSE = {"fashion_mnist": 92.5, "digits": 96.0, "cifar10": 93.5, "cifar100": 72.0}
# penalty methods: nonzero fraction d = D0 * (value / V0) ** -P
LAM = {"xrda": (3e-4, 0.1, 0.9), "soft_threshold": (1e-3, 0.1, 0.7), "rda_l1": (3e-3, 0.1, 0.8),
       "prox_sgd": (4e-5, 0.1, 0.8), "sgd_l1": (5e-4, 0.2, 0.6), "xrda_channel": (5e-5, 0.5, 0.9)}
# accuracy below dense at 90% sparse, and per further decade of nonzeros (pp)
DROP = {"xrda": (0.3, 1.0), "soft_threshold": (0.4, 1.3), "gmp": (0.6, 1.2),
        "magnitude_finetune": (0.9, 1.6), "rda_l1": (0.8, 1.5), "prox_sgd": (1.2, 2.2),
        "sgd_l1": (2.0, 3.0), "filter_prune": (0.8, 0.0)}
_LAYERS = {}


def _noise(*key):
    h = hashlib.sha256(repr(key).encode()).digest()
    return (h[0] / 255.0 - 0.5) * 0.4     # ±0.2 pp


def layer_shapes(cfg):
    """The model's conv/linear layers (metrics.layer_table of a dense model), cached."""
    from sparsecs import data
    from sparsecs import metrics
    from sparsecs import models

    key = (cfg["model"], cfg["width"], cfg["dataset"])
    if key not in _LAYERS:
        spec = data.DATASETS[cfg["dataset"]]
        m = models.get_model(cfg["model"], spec.num_classes, cfg["width"], input_shape=spec.input_shape)
        _LAYERS[key] = metrics.layer_table(m, (1, *spec.input_shape))
    return _LAYERS[key]


def per_layer(layers, density, filter_frac):
    """Each layer's nonzero fraction, ERK-like (small layers denser), with the total `density`."""
    n = [r["n_weights"] for r in layers]
    total = sum(n)

    def got(c):
        return sum(min(1.0, c / math.sqrt(k)) * k for k in n) / total

    lo, hi = 0.0, 1e6
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if got(mid) < density else (lo, mid)
    rows = []
    for i, r in enumerate(layers):
        d = 0.0 if density == 0 else min(1.0, hi / math.sqrt(r["n_weights"]))
        nnz = round(d * r["n_weights"])
        zf = 0 if i in (0, len(layers) - 1) else round(r["filters"] * filter_frac)
        zf = r["filters"] if nnz == 0 else zf
        rows.append({"layer": r["layer"], "type": r["type"], "shape": r["shape"], "n_weights": r["n_weights"],
                     "nnz": nnz, "sparsity": 1 - nnz / r["n_weights"], "kernels": r["kernels"],
                     "zero_kernels": round(r["kernels"] * (1 - d) ** 3), "filters": r["filters"],
                     "zero_filters": zf, "flops_dense": r["flops_dense"],
                     "flops_nonzero": r["flops_dense"] * nnz / r["n_weights"]})
    return rows


def numbers(cfg):
    """(test accuracy, train accuracy, sparsity, fraction of filters zero, threshold) of a run."""
    m, o, ds = cfg["method"], cfg["optim"], cfg["dataset"]
    dense = DENSE.get(ds, 90.0) - (0.6 if cfg["epochs"] < 8 and not cfg["init_from"] else 0.0)
    seed_off = _noise(cfg["seed"], m, ds, cfg["model"])
    if m == "sgd":
        return dense + seed_off, 99.0, 0.0, 0.0, None
    structured = o.get("mode", "elementwise") != "elementwise" or m == "filter_prune"
    if m == "filter_prune":
        f = float(o["target"])
        sp = 1 - (1 - f) ** 2
    elif "target" in o:          # gmp, magnitude_finetune, rigl: the target is the sparsity
        sp = float(o["target"])
    else:
        v0, d0, p = LAM["xrda_channel"] if structured else LAM.get(m, LAM["xrda"])
        key = ("s_weight_decay" if "s_weight_decay" in o else
               "final_threshold" if o.get("final_threshold") and not o.get("lam") else "lam")
        v = float(o[key]) * (1e4 if key == "final_threshold" else 1.0)
        sp = 1 - min(1.0, d0 * (v / v0) ** -p)
        if ds == "digits" and cfg["model"] == "vgg16" and m == "soft_threshold" and float(o["lam"]) >= 0.1:
            sp = 1.0               # the all-zero network
    f = min(0.95, sp ** 1.5 * 0.9) if structured and m != "filter_prune" else (
        float(o["target"]) if m == "filter_prune" else 0.0)
    decades = -math.log10(max(1 - sp, 1e-6))
    base, per = DROP.get(m, DROP["xrda"])
    if structured:
        drop = 0.5 + 4.0 * f ** 2 + (0.8 if m == "filter_prune" else 0.0)
    else:
        drop = base + per * max(0.0, decades - 1.0) ** 1.6 - 0.3 * max(0.0, 1.0 - decades)
    acc = dense - drop + seed_off - (0.3 if m == "xrda" and cfg["init_from"] else 0.0)
    train = 99.0 - drop
    collapsed = sp >= 1.0 or (m == "soft_threshold" and sp > 0.985) or (m == "sgd_l1" and sp > 0.97)
    if collapsed:
        acc, train, sp = 10.0 + seed_off, 11.0, max(sp, 0.997)
    thr = None
    if m == "soft_threshold":
        thr = (float(o.get("lam") or 0.0) * 25.0) or float(o.get("final_threshold") or 0.0)
    return acc, train, sp, f, thr


def write_run(results, name, cfg):
    acc, train, sp, ffrac, thr = numbers(cfg)
    d = paths.run_dir(results, name)
    layers = per_layer(layer_shapes(cfg), 1 - sp, ffrac)
    n_weights = sum(r["n_weights"] for r in layers)
    nnz = sum(r["nnz"] for r in layers)
    flops = sum(r["flops_dense"] for r in layers)
    structured = cfg["optim"].get("mode", "elementwise") != "elementwise" or cfg["method"] == "filter_prune"
    mac_frac = (1 - ffrac) ** 2 if structured else (0.0 if nnz == 0 else 0.999)
    mode = "dense" if cfg["method"] == "sgd" else ("channel" if cfg["method"] == "filter_prune"
                                                    else cfg["optim"].get("mode", "elementwise"))
    summary = {k: "" for k in summaries.SUMMARY_FIELDS}
    summary.update({"run": name, "dataset": cfg["dataset"], "model": cfg["model"], "width": cfg["width"],
                    "method": cfg["method"], "mode": mode,
                    "method_revision": C.method_revision(cfg["method"], cfg["optim"]), "seed": cfg["seed"], "epochs": cfg["epochs"],
                    "total_epochs": cfg["epochs"] + (cfg["epochs"] if cfg["init_from"] else 0),
                    "lam": float(cfg["optim"].get("lam", 0.0) or 0.0), "test_acc": acc, "test_loss": 0.3,
                    "test_acc_running_bn": acc - 0.1, "test_loss_running_bn": 0.31, "bn_recal_images": 2048,
                    "train_acc": train, "train_acc_final": train, "train_loss": 0.1, "sparsity": 1 - nnz / n_weights,
                    "sparsity_all": 1 - nnz / n_weights, "nnz": nnz, "n_weights": n_weights,
                    "n_params": n_weights + 500, "flops_dense": flops,
                    "flops_nonzero": sum(r["flops_nonzero"] for r in layers),
                    "macs_structural": flops * mac_frac, "train_seconds": 60.0, "config_hash": "x",
                    "init_from": cfg["init_from"], **cfg["identity"], "threads": 1, "torch": "2.x",
                    "numpy": "2.x", "device_name": "synthetic", "world_size": 1, "model_bytes": 1000,
                    "model_sha256": ""})
    if thr is not None:
        summary["final_threshold"] = thr
    fileio.save_json(summary, paths.path(d, paths.SUMMARY))
    E, shift = cfg["epochs"], 0
    rows = []
    for e in range(1, E + 1):
        t = e / E
        row = {"epoch": e, "lr": 0.1 * (1 + math.cos(math.pi * t)) / 2, "train_loss": 1.0 - 0.9 * t,
               "train_acc": train - (train - 60) * math.exp(-4 * t) + (train - 60) * math.exp(-4),
               "test_loss": 0.5, "test_acc": acc - (acc - 55) * (math.exp(-4 * t) - math.exp(-4)) + 0.3 * _noise(e, name),
               "sparsity": sp * (1 if cfg["init_from"] else min(1.0, t * 1.6) ** 0.5), "nnz": 0, "seconds": 1.0}
        if thr is not None:
            row["threshold"] = thr * (1 - (1 - t) ** 2)
        rows.append(row)
    fileio.save_csv(rows, paths.path(d, paths.METRICS))
    fileio.save_csv(layers, paths.path(d, paths.LAYERS))
    runindex.upsert_row(os.path.join(results, paths.INDEX), summary)
    return shift


def sweep_profile(profile, results):
    """Run every run of `profile` with the stand-in launcher; returns the results folder."""
    results = str(results)
    launcher = StandInLauncher(results, lambda r, s: write_run(r, s.name, s.cfg), slots=8)
    state = sweep.run_all(sweep.expand(str(profile)), results, launcher)
    bad = [st for st, _ in state.values() if st != "finished"]
    assert set(bad) <= {"skipped", "not run"}, bad   # followers of a search that missed
    return results

"""Tables, figures and REPORT.md from results/runs.csv and the run folders; trains nothing.

    python report.py [--results DIR] [--out DIR] [--figures DIR]

Reads RESULTS/runs.csv (one row per finished run) and each run's folder RESULTS/runs/<run>/
(config.yaml, metrics.csv, layers.csv) and writes:

    OUT/tables/main_<dataset>.{md,tex}   per model and mode: dense accuracy, then every method
                                         at the point of its sweep nearest each xRDA point's
                                         sparsity (mean ± std over seeds)
    OUT/tables/structured.{md,tex}       kernels / filters removed, FLOPs kept
    OUT/tables/ablation.{md,tex}         xRDA against rda_l1, prox_sgd, sgd_l1 and its variants
    OUT/tables/points.csv                every setting, aggregated over seeds (for other tools)
    FIGURES/tradeoff.{png,pdf}           test accuracy against sparsity, one line per method
    FIGURES/dynamics.{png,pdf}           test accuracy and sparsity against epoch
    FIGURES/layers.{png,pdf}             sparsity per layer, one model of each family
    OUT/REPORT.md                        the paper's four claims and the evidence for each

OUT defaults to RESULTS; FIGURES to ./figures for the default results folder, else
OUT/figures. Every number is a final-epoch number; nothing is selected by test accuracy.
Runs of one setting (the resolved config without its seed) are aggregated over seeds.
"""
import argparse
import json
import math
import os
import re
import sys

REPO = os.path.dirname(os.path.abspath(__file__))
REQUIRED = ["run", "dataset", "model", "method", "mode", "seed", "epochs", "test_acc", "sparsity",
            "nnz", "n_weights", "flops_dense", "flops_nonzero"]
NUMERIC = ["seed", "epochs", "test_acc", "sparsity", "nnz", "n_weights", "flops_dense", "flops_nonzero",
           "width", "lam", "sparsity_all", "train_acc", "test_loss", "train_loss", "n_params",
           "train_seconds", "target_sparsity", "target", "final_threshold", "max_factor"]
DENSE = "sgd"
XRDA = "xrda"
ABLATION = ("rda_l1", "prox_sgd", "sgd_l1")
METHOD_ORDER = ["sgd", "xrda", "soft_threshold", "gmp", "magnitude_finetune", "filter_prune",
                "rda_l1", "prox_sgd", "sgd_l1"]
# Keys that sweep a method along its curve (not a variant of it), and keys that never matter.
KNOBS = ("optim.lam", "optim.target", "optim.final_threshold")
IGNORED = ("seed", "data_dir", "download", "device", "optim.mode", "method")
FAMILIES = (("vgg", "VGG"), ("resnet", "ResNet"), ("densenet", "DenseNet"))
CLASSES = {"cifar100": 100}  # classes per data set (10 otherwise), for the chance level
TOL = 1.0  # percentage points: the accuracy difference REPORT.md calls "about the same"


class ReportError(Exception):
    """One line: which file is missing or malformed and what to do."""


# ----------------------------------------------------------------------------- loading

def _read_csv(path, required=(), what="CSV"):
    import pandas as pd

    if not os.path.exists(path):
        raise ReportError(f"{path}: missing ({what})")
    try:
        df = pd.read_csv(path)
    except Exception as e:  # pandas' parser errors, empty files, bad encodings
        raise ReportError(f"{path}: not a readable CSV ({' '.join(str(e).split())[:160]})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


def _numeric(df, cols, path):
    import pandas as pd

    for c in cols:
        if c in df.columns:
            conv = pd.to_numeric(df[c], errors="coerce")
            bad = conv.isna() & df[c].notna()
            if bad.any():
                i = int(bad.idxmax())
                raise ReportError(f"{path}: column '{c}' row {i + 2} is not a number: {df[c][i]!r}")
            df[c] = conv
    return df


def _init_tag(path, dataset, model):
    """'results/runs/digits-vgg16-w0.125-sgd-s0-1a2b3c4d' -> 'sgd' (what it started from)."""
    if not isinstance(path, str) or not path:
        return ""
    base = os.path.basename(path.rstrip("/"))
    if base == "model.pt":
        base = os.path.basename(os.path.dirname(path.rstrip("/")))
    base = re.sub(r"-s\d+-[0-9a-f]{8}$", "", base)
    base = re.sub(rf"^{re.escape(str(dataset))}-{re.escape(str(model))}-(w[0-9.e+-]+-)?", "", base)
    return base or "trained"


def load(results):
    """runs.csv plus each run's config, as one DataFrame row per run."""
    import pandas as pd
    import yaml

    import config as C

    path = os.path.join(results, "runs.csv")
    df = _read_csv(path, REQUIRED, "run sweep.py or train.py first")
    if df.empty:
        raise ReportError(f"{path}: no runs in it")
    df = _numeric(df, NUMERIC, path)
    for c in REQUIRED:
        if df[c].isna().any():
            raise ReportError(f"{path}: column '{c}' is empty in row {int(df[c].isna().idxmax()) + 2}")
    if "width" not in df.columns:
        df["width"] = 1.0
    df["width"] = df["width"].fillna(1.0)
    for c in ("lam", "target_sparsity", "final_threshold", "max_factor", "train_acc", "sparsity_all"):
        if c not in df.columns:
            df[c] = float("nan")
    if "init_from" not in df.columns:
        df["init_from"] = ""
    df["init_from"] = [v if isinstance(v, str) else "" for v in df["init_from"]]
    df["run"] = df["run"].astype(str)
    df = df.drop_duplicates("run", keep="last").reset_index(drop=True)

    folders, configs = [], []
    for _, r in df.iterrows():
        folder = os.path.join(results, "runs", r["run"])
        if not os.path.isdir(folder) and isinstance(r.get("run_dir"), str) and os.path.isdir(r["run_dir"]):
            folder = r["run_dir"]
        folders.append(folder)
        cfg = {}
        cpath = os.path.join(folder, "config.yaml")
        if os.path.exists(cpath):
            try:
                with open(cpath) as f:
                    cfg = C.flatten(yaml.safe_load(f) or {})
            except (yaml.YAMLError, AttributeError) as e:
                raise ReportError(f"{cpath}: not valid YAML ({str(e).splitlines()[0]})") from None
        configs.append(cfg)
    df["folder"] = folders
    stats = layer_stats(df)
    df["layers"] = [stats[r]["layers"] for r in df["run"]]
    df["kernels_removed"] = [stats[r]["kernels_removed"] for r in df["run"]]
    df["filters_removed"] = [stats[r]["filters_removed"] for r in df["run"]]
    df["init"] = [_init_tag(c.get("init_from", r["init_from"]), r["dataset"], r["model"])
                  for c, (_, r) in zip(configs, df.iterrows())]
    df["settings"] = [_settings(c, r) for c, (_, r) in zip(configs, df.iterrows())]
    df["setting"] = [json.dumps(s, sort_keys=True, default=str) for s in df["settings"]]
    df["knob"], df["point"] = zip(*[_knob(s, r) for s, (_, r) in zip(df["settings"], df.iterrows())])
    df["variant"] = _variants(df)
    df["compression"] = df["n_weights"] / df["nnz"].clip(lower=1)
    df["flops_kept"] = 100.0 * df["flops_nonzero"] / df["flops_dense"]
    df["acc"] = df["test_acc"]
    df["sp"] = 100.0 * df["sparsity"]
    df["sp_all"] = 100.0 * df["sparsity_all"]
    return df


def _settings(cfg, row):
    """What identifies a setting across seeds: the config without seed and paths."""
    if cfg:
        s = {k: v for k, v in cfg.items() if k not in IGNORED and k != "init_from"}
    else:  # no config.yaml: the hyperparameters runs.csv has
        s = {k: row[k] for k in ("epochs", "width") if k in row}
        for k in ("lam", "final_threshold", "max_factor"):
            if k in row and not _nan(row[k]):
                s[f"optim.{k}"] = row[k]
        if not _nan(row.get("target_sparsity")):
            s["optim.target"] = row["target_sparsity"]
    s["init"] = _init_tag(cfg.get("init_from", row["init_from"]) if cfg else row["init_from"],
                          row["dataset"], row["model"])
    s["method"], s["mode"] = row["method"], row["mode"]
    return s


def _nan(v):
    return v is None or (isinstance(v, float) and math.isnan(v)) or v == ""


def _knob(s, row):
    """(value along the method's sweep, its label)."""
    t = s.get("optim.target", row.get("target_sparsity"))
    if not _nan(t):
        return float(t), f"target {100 * float(t):.4g}%"
    d = s.get("optim.final_threshold", row.get("final_threshold"))
    if not _nan(d) and d:
        return float(d), f"D={float(d):.3g}"
    lam = s.get("optim.lam", row.get("lam"))
    if not _nan(lam) and lam:
        return float(lam), f"λ={float(lam):.3g}"
    return 0.0, "—"


def _method_defaults(method):
    try:
        from optim import get_method
        return {f"optim.{k}": v for k, v in get_method(method).defaults.items()}
    except Exception:
        return {}


def _variants(df):
    """Label each run's setting by what differs from the most common value among the settings
    of the same model, method and mode (ties: the default). '' is the main variant."""
    import config as C

    labels = [""] * len(df)
    for _, idx in df.groupby(["dataset", "model", "width", "epochs", "method", "mode"], sort=False).groups.items():
        rows = list(idx)
        uniq = {}
        for i in rows:
            uniq.setdefault(df.at[i, "setting"], df.at[i, "settings"])
        keys = sorted({k for s in uniq.values() for k in s if k not in KNOBS})
        defaults = {**C.DEFAULTS, **_method_defaults(df.at[rows[0], "method"]), "init": ""}
        modal = {}
        for k in keys:
            vals = [json.dumps(s.get(k), sort_keys=True, default=str) for s in uniq.values()]
            counts = {v: vals.count(v) for v in vals}
            best = max(counts.values())
            tied = [v for v in counts if counts[v] == best]
            dflt = json.dumps(defaults.get(k), sort_keys=True, default=str)
            modal[k] = dflt if dflt in tied else tied[0]
        for i in rows:
            s = df.at[i, "settings"]
            diff = []
            for k in keys:
                if json.dumps(s.get(k), sort_keys=True, default=str) != modal[k]:
                    v = s.get(k)
                    diff.append(f"from {v}" if k == "init" and v else
                                "from scratch" if k == "init" else f"{k.removeprefix('optim.')}={_short(v)}")
            labels[i] = ", ".join(diff)
    return labels


def _short(v):
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ",".join(_short(x) for x in v) + "]" if len(v) <= 4 else f"[{len(v)} values]"
    return str(v)


def aggregate(df):
    """One row per setting: mean and std (ddof 1) over seeds."""
    keys = ["dataset", "model", "width", "epochs", "method", "mode", "variant", "setting"]
    g = df.groupby(keys, sort=False, dropna=False)
    out = g.agg(n=("run", "size"), knob=("knob", "first"), point=("point", "first"), init=("init", "first"),
                acc=("acc", "mean"), acc_sd=("acc", "std"), sp=("sp", "mean"), sp_sd=("sp", "std"),
                sp_all=("sp_all", "mean"), nnz=("nnz", "mean"), nnz_sd=("nnz", "std"),
                n_weights=("n_weights", "first"), compression=("compression", "mean"),
                compression_sd=("compression", "std"), flops_kept=("flops_kept", "mean"),
                flops_kept_sd=("flops_kept", "std"), train_acc=("train_acc", "mean"),
                kernels_removed=("kernels_removed", "mean"), kernels_removed_sd=("kernels_removed", "std"),
                filters_removed=("filters_removed", "mean"), filters_removed_sd=("filters_removed", "std"),
                runs=("run", list), seeds=("seed", list)).reset_index()
    return out


# ----------------------------------------------------------------------------- selection

def _label(r, with_mode=True):
    name = r["method"]
    if with_mode and r["mode"] not in ("elementwise", "dense"):
        name += f" ({r['mode']})"
    if r["variant"]:
        name += f" [{r['variant']}]"
    return name


def _order(method):
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def groups(agg):
    """(dataset, model, width) in a stable, readable order."""
    keys = agg[["dataset", "model", "width", "epochs"]].drop_duplicates()
    fam = {p: i for i, (p, _) in enumerate(FAMILIES)}
    return sorted(map(tuple, keys.values.tolist()),
                  key=lambda k: (k[0], next((fam[p] for p in fam if str(k[1]).startswith(p)), 9), str(k[1]), k[2]))


def _in(agg, g):
    return agg[(agg["dataset"] == g[0]) & (agg["model"] == g[1]) & (agg["width"] == g[2]) & (agg["epochs"] == g[3])]


def dense_of(sub, epochs=None):
    """The dense baseline of a model: sgd's main variant (same epochs when there is one)."""
    d = sub[(sub["method"] == DENSE) & (sub["variant"] == "")]
    if epochs is not None and (d["epochs"] == epochs).any():
        d = d[d["epochs"] == epochs]
    return d.iloc[0] if len(d) else None


MODES = {"dense": 0, "elementwise": 1, "kernel": 2, "channel": 3}


def xrda_points(sub, mode=None):
    x = sub[(sub["method"] == XRDA) & (sub["variant"] == "")]
    if mode is not None:
        x = x[x["mode"] == mode]
    x = x.assign(_m=x["mode"].map(lambda m: MODES.get(m, 9)))
    return x.sort_values(["_m", "knob", "sp"]).drop(columns="_m")


# What "matched sparsity" means per mode: zero weights, or whole kernels / filters removed.
MATCH_ON = {"elementwise": ("sp", "%"), "kernel": ("kernels_removed", "% kernels"),
            "channel": ("filters_removed", "% filters")}


def matched(sub, method, mode, ref):
    """The point of `method`'s main sweep (in `mode`) nearest to the reference point `ref` in
    sparsity (elementwise) or in the fraction of kernels / filters removed (kernel / channel)."""
    m = sub[(sub["method"] == method) & (sub["mode"] == mode) & (sub["variant"] == "")]
    if not len(m):
        return None
    col = MATCH_ON.get(mode, ("sp", ""))[0]
    m = m.sort_values([col, "sp", "knob"])
    return m.iloc[int((m[col] - ref[col]).abs().values.argmin())]


def match_note(mode, ref):
    col, unit = MATCH_ON.get(mode, ("sp", "%"))
    return f"nearest {ref[col]:.2f}{unit}"


def baselines(sub, mode):
    ms = sub[(sub["mode"] == mode) & (sub["variant"] == "") &
             ~sub["method"].isin([DENSE, XRDA, *ABLATION])]["method"].unique()
    return sorted(ms, key=lambda m: (_order(m), m))


def sections(agg):
    """Main-table sections: for each model, mode and xRDA point, the dense run and every
    baseline's matched point. Yields (group, mode, xrda row, dense row, [(method, row)])."""
    for g in groups(agg):
        sub = _in(agg, g)
        for _, x in xrda_points(sub).iterrows():
            dense = dense_of(sub, x["epochs"])
            rows = [(m, matched(sub, m, x["mode"], x)) for m in baselines(sub, x["mode"])]
            yield g, x["mode"], x, dense, rows


def reference(sub):
    """One xRDA point per model for the figures: the median-sparsity point of the main
    elementwise sweep (chosen by sparsity, never by accuracy)."""
    for mode in ("elementwise", "kernel", "channel"):
        x = xrda_points(sub, mode).sort_values("sp")
        if len(x):
            return x.iloc[(len(x) - 1) // 2]
    return None


def figure_settings(sub):
    """The settings the per-model figures show: dense, the xRDA reference, and every other
    method's main-sweep point nearest to it (same mode), in method order."""
    ref = reference(sub)
    out = []
    d = dense_of(sub, ref["epochs"] if ref is not None else None)
    if d is not None:
        out.append(d)
    if ref is None:
        return out, None
    out.append(ref)
    methods = sub[(sub["mode"] == ref["mode"]) & (sub["variant"] == "") &
                  ~sub["method"].isin([DENSE, XRDA])]["method"].unique()
    for m in sorted(methods, key=lambda m: (_order(m), m)):
        out.append(matched(sub, m, ref["mode"], ref))
    return out, ref


# ----------------------------------------------------------------------------- formatting

def pm(mean, sd, digits=2):
    if mean is None or _nan(mean):
        return "—"
    s = f"{mean:.{digits}f}"
    return s if sd is None or _nan(sd) else f"{s} ± {sd:.{digits}f}"


def _int(v):
    return "—" if _nan(v) else f"{int(round(v)):,}"


def _ds(name):
    return {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}.get(name, name)


def _model(g):
    return f"{g[1]} (" + (f"width {g[2]:g}, " if g[2] != 1 else "") + f"{int(g[3])} epochs)"


def md_table(header, rows, align=None):
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


_TEX = {"%": r"\%", "_": r"\_", "&": r"\&", "#": r"\#", "±": r"$\pm$", "×": r"$\times$",
        "λ": r"$\lambda$", "—": "--", "→": r"$\to$", "Δ": r"$\Delta$", "≈": r"$\approx$"}


def tex_escape(text):
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def tex_table(header, rows, align=None, caption=""):
    align = align or ["l"] + ["r"] * (len(header) - 1)
    out = [r"\begin{table}[t]", r"\centering", r"\small"]
    if caption:
        out.append(r"\caption{" + tex_escape(caption) + "}")
    out += [r"\begin{tabular}{" + "".join(align) + "}", r"\toprule",
            " & ".join(tex_escape(h) for h in header) + r" \\", r"\midrule"]
    for r in rows:
        if r and r[0] == "\\midrule":
            out.append(r"\midrule")
        else:
            out.append(" & ".join(tex_escape(c) for c in r) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def _write(path, text):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- tables

MAIN_HEADER = ["model", "mode", "method", "point", "seeds", "test acc (%)", "sparsity (%)",
               "nonzero weights", "compression (×)", "nonzero FLOPs (%)"]


def _main_row(g, mode, label, r, point=None):
    return [_model(g), mode, label, point or r["point"], int(r["n"]), pm(r["acc"], r["acc_sd"]),
            pm(r["sp"], r["sp_sd"]), _int(r["nnz"]), pm(r["compression"], r["compression_sd"], 1),
            pm(r["flops_kept"], r["flops_kept_sd"], 1)]


def main_tables(agg):
    """{dataset: (markdown, latex, rows)}: a block per model, mode and xRDA point."""
    out = {}
    for ds in sorted(agg["dataset"].unique()):
        rows, tex_rows = [], []
        for g, mode, x, dense, others in sections(agg[agg["dataset"] == ds]):
            block = []
            if dense is not None:
                block.append(_main_row(g, "dense", "sgd (dense)", dense))
            block.append(_main_row(g, mode, "xrda", x, f"{x['point']} (reference)"))
            for m, r in others:
                if r is not None:
                    block.append(_main_row(g, mode, m, r, f"{r['point']} ({match_note(mode, x)})"))
            rows += block + [[""] * len(MAIN_HEADER)]
            tex_rows += block + [["\\midrule"]]
        if rows:
            rows, tex_rows = rows[:-1], tex_rows[:-1]
        out[ds] = (md_table(MAIN_HEADER, rows, ["l", "l", "l", "l"] + ["r"] * 6),
                   tex_table(MAIN_HEADER, tex_rows, ["l", "l", "l", "l"] + ["r"] * 6,
                             f"{_ds(ds)}: final-epoch test accuracy, mean ± std over seeds; each "
                             f"method at the point of its sweep nearest the xRDA sparsity."),
                   rows)
    return out


def layer_stats(df):
    """Per run: kernels and filters removed (conv layers), from layers.csv."""
    stats = {}
    for _, r in df.iterrows():
        path = os.path.join(r["folder"], "layers.csv")
        lay = _read_csv(path, ["layer", "type", "n_weights", "nnz", "kernels", "zero_kernels",
                               "filters", "zero_filters"], "the run's layer table")
        lay = _numeric(lay, ["n_weights", "nnz", "kernels", "zero_kernels", "filters", "zero_filters"], path)
        conv = lay[lay["type"] == "Conv2d"]
        stats[r["run"]] = {
            "kernels_removed": 100.0 * conv["zero_kernels"].sum() / max(1, conv["kernels"].sum()),
            "filters_removed": 100.0 * conv["zero_filters"].sum() / max(1, conv["filters"].sum()),
            "layers": lay}
    return stats


STRUCT_HEADER = ["model", "method", "mode", "point", "seeds", "test acc (%)", "sparsity (%)",
                 "kernels removed (%)", "filters removed (%)", "nonzero FLOPs (%)"]


def structured_table(agg, stats):
    """Every kernel/channel-mode setting, plus xRDA elementwise of the same models for contrast."""
    rows = []
    for g in groups(agg):
        sub = _in(agg, g)
        sub = sub[(sub["variant"] == "") & (sub["method"] != DENSE)]
        if not (sub["mode"].isin(["kernel", "channel"])).any():
            continue
        pick = sub[sub["mode"].isin(["kernel", "channel"]) | (sub["method"] == XRDA)]
        pick = pick.assign(o=pick["method"].map(_order)).sort_values(["o", "mode", "sp"])
        for _, r in pick.iterrows():
            k = [stats[run]["kernels_removed"] for run in r["runs"]]
            f = [stats[run]["filters_removed"] for run in r["runs"]]
            rows.append([_model(g) + f", {_ds(g[0])}", r["method"], r["mode"], r["point"], int(r["n"]),
                         pm(r["acc"], r["acc_sd"]), pm(r["sp"], r["sp_sd"]), pm(*_msd(k), 1),
                         pm(*_msd(f), 1), pm(r["flops_kept"], r["flops_kept_sd"], 1)])
    return rows


def _msd(vals):
    n = len(vals)
    m = sum(vals) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1)) if n > 1 else None
    return m, sd


ABL_HEADER = ["model", "method", "variant", "point", "seeds", "test acc (%)", "sparsity (%)",
              "nonzero weights", "compression (×)"]


def ablation_rows(agg):
    """xRDA (main) next to the ablation methods and xRDA's variants at the same λ."""
    import pandas as pd

    rows = []
    for g in groups(agg):
        sub = _in(agg, g)
        abl = sub[sub["method"].isin(ABLATION) | ((sub["method"] == XRDA) & (sub["variant"] != ""))]
        if not len(abl):
            continue
        keys = set(zip(abl["mode"], abl["knob"].round(12)))
        main = sub[(sub["method"] == XRDA) & (sub["variant"] == "")]
        main = main[[k in keys for k in zip(main["mode"], main["knob"].round(12))]]
        both = pd.concat([main, abl])
        both = both.assign(o=both["method"].map(_order)).sort_values(["mode", "knob", "o", "variant"])
        for _, r in both.iterrows():
            method = r["method"] + (f" ({r['mode']})" if r["mode"] != "elementwise" else "")
            rows.append([_model(g) + f", {_ds(g[0])}", method, r["variant"] or "main", r["point"], int(r["n"]),
                         pm(r["acc"], r["acc_sd"]), pm(r["sp"], r["sp_sd"]), _int(r["nnz"]),
                         pm(r["compression"], r["compression_sd"], 1)])
    return rows


# ----------------------------------------------------------------------------- figures

def _style():
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.15)
    return sns


MARKERS = {"sgd": "", "xrda": "o", "soft_threshold": "s", "gmp": "^", "magnitude_finetune": "v",
           "filter_prune": "D", "rda_l1": "P", "prox_sgd": "X", "sgd_l1": "*"}


def _look(label):
    """Colour by method, marker by method, open marker and dashes for a mode or variant."""
    import seaborn as sns

    method = label.split(" ")[0]
    base = sns.color_palette("tab10", 10)
    i = _order(method)
    color = base[i] if i < len(METHOD_ORDER) else base[(hash(method) % 3) + 7]
    other = "(" in label or "[" in label
    return dict(color=color, marker=MARKERS.get(method, "o") or None,
                ls=(0, (4, 2)) if other else "-", mfc="white" if other else color)


def _key(label):
    return (_order(label.split(" ")[0]), label)


SP_TICKS = [0.0, 0.9, 0.99, 0.999, 0.9999]


def sp_x(s):
    """Sparsity (fraction) -> -log10(1 - s): 90%, 99%, 99.9% one unit apart."""
    import numpy as np

    return -np.log10(np.clip(1.0 - np.asarray(s, dtype=float), 1e-5, 1.0))


def _sp_axis(ax, top, axis="x"):
    """Ticks of a log-spaced sparsity axis, up to a little past the largest value (fraction)."""
    above = [t for t in SP_TICKS if t >= min(top, 0.9999) - 1e-9]
    hi = max(float(sp_x(above[0] if above else 0.9999)) + 0.12, 1.12)
    half = [0.5] if axis == "y" or hi <= 3.2 else []  # 50% is close to 0% on a wide axis
    ticks = [t for t in SP_TICKS[:1] + half + SP_TICKS[1:] if sp_x(t) <= hi]
    labels = [f"{100 * t:g}%" for t in ticks]
    if axis == "x":
        ax.set_xticks(sp_x(ticks), labels)
        ax.set_xlim(-0.08, hi)
    else:
        ax.set_yticks(sp_x(ticks), labels)
        ax.set_ylim(-0.08, hi)


def _save(fig, figures, name):
    os.makedirs(figures, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = os.path.join(figures, f"{name}.{ext}")
        fig.savefig(p, dpi=150 if ext == "png" else None, bbox_inches="tight")
        paths.append(p)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def _grid(n, ncols, w=4.2, h=3.2):
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _legend(fig, axes):
    handles = {}
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    labels = sorted(handles, key=lambda l: (l != "sgd (dense)", _key(l)))
    if labels:
        fig.legend([handles[l] for l in labels], labels, loc="center left", bbox_to_anchor=(1.0, 0.5),
                   frameon=False, title="method")


def fig_tradeoff(agg, figures):
    """Test accuracy against sparsity per model: one line per method over its grid."""
    _style()
    gs = groups(agg)
    fig, axes = _grid(len(gs), 3 if len(gs) > 4 else 2)
    top = (agg["sp"] + agg["sp_sd"].fillna(0)).max() / 100.0
    for ax, g in zip(axes, gs):
        sub = _in(agg, g)
        d = dense_of(sub)
        if d is not None:
            ax.axhline(d["acc"], color="0.3", ls=":", lw=1.4, label="sgd (dense)")
            if not _nan(d["acc_sd"]):
                ax.axhspan(d["acc"] - d["acc_sd"], d["acc"] + d["acc_sd"], color="0.5", alpha=0.15, lw=0)
        sparse = sub[sub["method"] != DENSE]
        for lab, part in sorted(sparse.groupby(sparse.apply(_label, axis=1)), key=lambda kv: _key(kv[0])):
            part = part.sort_values("sp")
            s = part["sp"].values / 100.0
            sd = part["sp_sd"].fillna(0).values / 100.0
            x = sp_x(s)
            xerr = [x - sp_x(s - sd), sp_x(s + sd) - x]
            ax.errorbar(x, part["acc"], yerr=part["acc_sd"].fillna(0), xerr=xerr, ms=5, lw=1.4,
                        capsize=2, label=lab, **_look(lab))
        _sp_axis(ax, top)
        ax.margins(y=0.12)
        ax.set_title(f"{_ds(g[0])}, {_model(g)}", fontsize=10)
        ax.set_xlabel("sparsity of conv + linear weights (%, log-spaced)")
        ax.set_ylabel("test accuracy (%)")
    _legend(fig, axes)
    fig.suptitle("Accuracy against sparsity (mean ± std over seeds; final epoch)", y=1.0)
    fig.tight_layout()
    return _save(fig, figures, "tradeoff")


def load_metrics(df):
    """Each run's metrics.csv (all of them, so a malformed one is caught whatever is plotted)."""
    out = {}
    for run, folder in zip(df["run"], df["folder"]):
        path = os.path.join(folder, "metrics.csv")
        m = _read_csv(path, ["epoch", "test_acc", "sparsity"], "the run's per-epoch metrics")
        out[run] = _numeric(m, ["epoch", "test_acc", "sparsity"], path).assign(run=run)
    return out


def fig_dynamics(agg, metrics, figures):
    """Test accuracy and sparsity against epoch; per model the settings of figure_settings."""
    sns = _style()
    gs = [g for g in groups(agg)]
    import matplotlib.pyplot as plt
    import pandas as pd

    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(gs), 2, figsize=(10, 2.8 * len(gs)), squeeze=False)
    for (ax_acc, ax_sp), g in zip(axes, gs):
        rows, ref = figure_settings(_in(agg, g))
        top = 0.0
        for r in rows:
            if r is None:
                continue
            lab = _label(r) if r["method"] != DENSE else "sgd (dense)"
            m = pd.concat([metrics[run] for run in r["runs"]])
            m = m.assign(spx=sp_x(m["sparsity"]))
            top = max(top, float(m["sparsity"].max()))
            look = _look(lab)
            kw = dict(color=look["color"], dashes=False, label=lab, errorbar="sd", lw=1.4,
                      marker=look["marker"], markersize=4, markevery=max(1, int(m["epoch"].max()) // 8),
                      mfc=look["mfc"], mec=look["color"])
            if r["method"] == DENSE:
                kw.update(color="0.3", ls=":", marker=None)
            elif look["ls"] != "-":
                kw.update(ls="--")
            sns.lineplot(data=m, x="epoch", y="test_acc", ax=ax_acc, **kw)
            sns.lineplot(data=m, x="epoch", y="spx", ax=ax_sp, **kw)
        title = f"{_ds(g[0])}, {_model(g)}" + (f"; methods near xRDA {ref['point']} ({ref['sp']:.1f}%)"
                                                if ref is not None else "")
        ax_acc.set_title(title, fontsize=9, loc="left")
        ax_acc.set_ylabel("test accuracy (%)")
        ax_sp.set_ylabel("sparsity (%, log-spaced)")
        _sp_axis(ax_sp, top, "y")
        for ax in (ax_acc, ax_sp):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.get_legend():
                ax.get_legend().remove()
    _legend(fig, list(axes.flat))
    fig.tight_layout()
    return _save(fig, figures, "dynamics")


def _layer_picks(agg):
    """(family, group) for one model of each family: the one with the most runs."""
    picks = []
    for prefix, fam in FAMILIES:
        cands = [g for g in groups(agg) if str(g[1]).startswith(prefix) and reference(_in(agg, g)) is not None]
        if cands:
            picks.append((fam, max(cands, key=lambda g: (int(_in(agg, g)["n"].sum()), -cands.index(g)))))
    return picks or [("", g) for g in groups(agg)[:1]]


def fig_layers(agg, stats, figures):
    """Sparsity per layer for one model of each family (the one with the most runs)."""
    _style()
    picks = _layer_picks(agg)
    from matplotlib.ticker import MaxNLocator

    fig, axes = _grid(len(picks), len(picks), w=5.0, h=3.6)
    for ax, (fam, g) in zip(axes, picks):
        rows, ref = figure_settings(_in(agg, g))
        rows = [r for r in rows if r is not None and r["method"] != DENSE]
        top = 0.0
        for r in rows:
            lay = [stats[run]["layers"] for run in r["runs"]]
            sp = sum(1 - l["nnz"].values / l["n_weights"].values for l in lay) / len(lay)
            top = max(top, float(sp.max()))
            ax.plot(range(1, len(sp) + 1), sp_x(sp), ms=4, lw=1.2, label=_label(r), **_look(_label(r)))
        _sp_axis(ax, top, "y")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("conv/linear layer, input → output")
        ax.set_ylabel("sparsity of the layer (%, log-spaced)")
        ax.set_title(f"{_ds(g[0])}, {_model(g)}" + (f"\nnear xRDA {ref['point']} ({ref['sp']:.1f}%)"
                                                     if ref is not None else ""), fontsize=9)
    _legend(fig, axes)
    fig.tight_layout()
    return _save(fig, figures, "layers")


# ----------------------------------------------------------------------------- REPORT.md

def _verdict(good, total, what):
    if not total:
        return "**no evidence**", f"no {what} in these results"
    frac = good / total
    v = "**supported**" if frac >= 0.75 else "**partly supported**" if frac >= 0.25 else "**not supported**"
    return v, f"{good} of {total} {what}"


def claims(df, agg, stats):
    """The paper's four claims, each with a verdict and the numbers behind it."""
    out = []
    comps = []
    for g, mode, x, dense, others in sections(agg):
        for m, r in others:
            if r is not None:
                comps.append((g, mode, x, m, r))
    n_seeds = int(agg["n"].min()) if len(agg) else 0

    # 1. sparser and more accurate
    def meas(mode):
        return MATCH_ON.get(mode, ("sp", "%"))

    better = [c for c in comps if c[2]["acc"] >= c[4]["acc"] and
              c[2][meas(c[1])[0]] >= c[4][meas(c[1])[0]] - 0.5]
    close = [c for c in comps if abs(c[2]["acc"] - c[4]["acc"]) <= TOL]
    v, line = _verdict(len(better), len(comps), "comparisons with a baseline at matched sparsity")
    lines = [f"Verdict: {v}. In {line}, xRDA is at least as accurate and at least as sparse (within "
             f"0.5 pp; for kernel/channel modes in kernels/filters removed). The accuracies are within "
             f"±{TOL:g} pp of each other in {len(close)} of {len(comps)}."]
    for g, mode, x, m, r in comps:
        col, unit = meas(mode)
        lines.append(f"- {_ds(g[0])} {_model(g)} ({mode}), xRDA {x['point']}: {x['acc']:.2f}% at "
                     f"{x[col]:.2f}{unit} vs {m} {r['point']}: {r['acc']:.2f}% at {r[col]:.2f}{unit} "
                     f"(Δacc {x['acc'] - r['acc']:+.2f} pp, Δ{'sparsity' if col == 'sp' else unit.split()[-1]} "
                     f"{x[col] - r[col]:+.2f} pp)")
    out.append(("1. Sparser and more accurate than the baselines", lines))

    # 2. structured sparsity
    st = agg[(agg["method"] == XRDA) & agg["mode"].isin(["kernel", "channel"]) & (agg["variant"] == "")]
    lines, good = [], 0
    for _, r in st.iterrows():
        sub = _in(agg, (r["dataset"], r["model"], r["width"], r["epochs"]))
        d = dense_of(sub, r["epochs"])
        key = "kernels_removed" if r["mode"] == "kernel" else "filters_removed"
        removed = sum(stats[run][key] for run in r["runs"]) / len(r["runs"])
        drop = (d["acc"] - r["acc"]) if d is not None else float("nan")
        ok = removed >= 50 and (not _nan(drop) and drop <= TOL)
        good += ok
        unit = "kernels" if r["mode"] == "kernel" else "filters"
        lines.append(f"- {_ds(r['dataset'])} {_model((r['dataset'], r['model'], r['width'], r['epochs']))}, "
                     f"{r['mode']} mode {r['point']}: {removed:.1f}% of {unit} removed, "
                     f"{r['flops_kept']:.1f}% of FLOPs kept (nonzero), {r['acc']:.2f}% accuracy"
                     + (f" vs dense {d['acc']:.2f}% (Δ {-drop:+.2f} pp)" if d is not None else ""))
        for m in baselines(sub, r["mode"]):
            b = matched(sub, m, r["mode"], r)
            if b is not None:
                bk = sum(stats[run][key] for run in b["runs"]) / len(b["runs"])
                lines.append(f"  - {m} {b['point']}: {bk:.1f}% of {unit} removed, {b['acc']:.2f}% accuracy")
    v, line = _verdict(good, len(st), "structured xRDA settings")
    lines.insert(0, f"Verdict: {v}. Rule: at least 50% of kernels (kernel mode) or filters (channel "
                    f"mode) removed with at most {TOL:g} pp accuracy loss against dense: {line}.")
    out.append(("2. Structured sparsity (whole kernels or filters removed)", lines))

    # 3. from scratch
    lines, good, total = [], 0, 0
    for g, mode, x, dense, others in sections(agg):
        for m, r in others:
            if m == "magnitude_finetune" and r is not None:
                total += 1
                good += x["acc"] - r["acc"] > -TOL
                lines.append(f"- {_ds(g[0])} {_model(g)}: xRDA from scratch {x['point']} {x['acc']:.2f}% at "
                             f"{x['sp']:.2f}% vs dense training + prune + fine-tune {r['acc']:.2f}% at "
                             f"{r['sp']:.2f}% (Δ {x['acc'] - r['acc']:+.2f} pp)")
    for g in groups(agg):
        sub = _in(agg, g)
        var = sub[(sub["method"] == XRDA) & sub["variant"].str.contains("from ")]
        for _, r in var.iterrows():
            base = sub[(sub["method"] == XRDA) & (sub["variant"] == "") & (sub["mode"] == r["mode"]) &
                       (sub["knob"].round(12) == round(r["knob"], 12))]
            if len(base):
                b = base.iloc[0]
                total += 1
                good += b["acc"] - r["acc"] > -TOL
                lines.append(f"- {_ds(g[0])} {_model(g)} {r['point']}: xRDA from scratch {b['acc']:.2f}% at "
                             f"{b['sp']:.2f}% vs xRDA {r['variant']} {r['acc']:.2f}% at {r['sp']:.2f}% "
                             f"(Δ {b['acc'] - r['acc']:+.2f} pp)")
    v, line = _verdict(good, total, "comparisons where training from scratch is at most "
                                    f"{TOL:g} pp behind starting from a trained dense model")
    lines.insert(0, f"Verdict: {v}. xRDA runs from random initialization in one run; {line}.")
    out.append(("3. Training from scratch, in one run", lines))

    # 4. regularizing effect
    lines, good, total = [], 0, 0
    for g in groups(agg):
        sub = _in(agg, g)
        for _, x in xrda_points(sub).iterrows():
            d = dense_of(sub, x["epochs"])
            if d is None:
                continue
            total += 1
            good += x["acc"] >= d["acc"]
            gap = x["train_acc"] - x["acc"]
            dgap = d["train_acc"] - d["acc"]
            lines.append(f"- {_ds(g[0])} {_model(g)} ({x['mode']}) {x['point']}: {x['acc']:.2f}% at "
                         f"{x['sp']:.2f}% sparse vs dense {d['acc']:.2f}% (Δ {x['acc'] - d['acc']:+.2f} pp); "
                         f"train−test accuracy gap {gap:.2f} vs {dgap:.2f} pp")
    v, line = _verdict(good, total, "xRDA points at least as accurate as the dense model")
    lines.insert(0, f"Verdict: {v}: {line}.")
    out.append(("4. A regularizing effect (sparse at least as accurate as dense)", lines))
    return out, n_seeds


def _span(vals, fmt="{:.1f}"):
    vals = [v for v in vals if not _nan(v)]
    if not vals:
        return "—"
    lo, hi = min(vals), max(vals)
    return fmt.format(lo) if abs(hi - lo) < 1e-9 else f"{fmt.format(lo)}–{fmt.format(hi)}"


def readings(agg, metrics, stats):
    """One line of reading per table and figure, computed from the numbers."""
    r = {}
    comps = [(g, mode, x, m, b) for g, mode, x, dense, others in sections(agg) for m, b in others
             if b is not None]
    if comps:
        d = [(x["acc"] - b["acc"], m, g) for g, mode, x, m, b in comps]
        best, worst = max(d, key=lambda t: t[0]), min(d, key=lambda t: t[0])
        wins = sum(1 for v, *_ in d if v >= 0)
        r["main"] = (f"Reading: at matched sparsity xRDA is at least as accurate as the baseline in {wins} "
                     f"of {len(d)} comparisons; the widest gaps are {best[0]:+.2f} pp against {best[1]} "
                     f"({_model(best[2])}) and {worst[0]:+.2f} pp against {worst[1]} ({_model(worst[2])}).")
    st = agg[(agg["method"] == XRDA) & agg["mode"].isin(["kernel", "channel"]) & (agg["variant"] == "")]
    if len(st):
        parts = []
        for mode, unit, col in (("kernel", "kernels", "kernels_removed"), ("channel", "filters", "filters_removed")):
            x = st[st["mode"] == mode]
            if len(x):
                drops = []
                for _, row in x.iterrows():
                    dn = dense_of(_in(agg, (row["dataset"], row["model"], row["width"], row["epochs"])))
                    if dn is not None:
                        drops.append(row["acc"] - dn["acc"])
                parts.append(f"xRDA's {mode} mode removes {_span(x[col])}% of {unit} and keeps "
                             f"{_span(x['flops_kept'])}% of the FLOPs (nonzero), at {_span(drops, '{:+.2f}')} pp "
                             f"accuracy against dense")
        r["structured"] = "Reading: " + "; ".join(parts) + "."
    parts = []
    for g in groups(agg):
        sub = _in(agg, g)
        main = sub[(sub["method"] == XRDA) & (sub["variant"] == "")]
        abl = sub[sub["method"].isin(ABLATION) | ((sub["method"] == XRDA) & (sub["variant"] != ""))]
        for _, a in abl.iterrows():
            ref = main[(main["mode"] == a["mode"]) & (main["knob"].round(12) == round(a["knob"], 12))]
            if len(ref):
                x = ref.iloc[0]
                parts.append(f"{a['method']}{' [' + a['variant'] + ']' if a['variant'] else ''} on "
                             f"{_model(g)}: {a['sp']:.1f}% sparse, {a['acc']:.2f}% (xRDA {x['sp']:.1f}%, {x['acc']:.2f}%)")
    if parts:
        r["ablation"] = "Reading, at the same λ: " + "; ".join(parts) + "."
    spans = []
    for g in groups(agg):
        sub = _in(agg, g)
        sp = sub[(sub["method"] != DENSE) & (sub["variant"] == "")]
        items = [f"{_label(row)} {_span(part['sp'])}%" for _, row in sp.drop_duplicates(["method", "mode"]).iterrows()
                 for part in [sp[(sp["method"] == row["method"]) & (sp["mode"] == row["mode"])]]]
        if items:
            spans.append(f"{_model(g)}: " + ", ".join(items))
    if spans:
        r["tradeoff"] = "Reading: the sparsity each method's grid spans, per model: " + "; ".join(spans) + "."
    parts = []
    for g in groups(agg):
        rows, ref = figure_settings(_in(agg, g))
        for row in rows:
            if row is None or row["method"] == DENSE:
                continue
            m = metrics[row["runs"][0]]
            final = float(m["sparsity"].iloc[-1])
            if final > 0:
                e = int(m.loc[m["sparsity"] >= 0.9 * final, "epoch"].iloc[0])
                parts.append(f"{row['method']} on {_model(g)} by epoch {e} of {int(m['epoch'].iloc[-1])}")
    if parts:
        r["dynamics"] = ("Reading: 90% of the final sparsity is reached " + "; ".join(parts) + ".")
    parts = []
    for fam, g in _layer_picks(agg):
        rows, _ = figure_settings(_in(agg, g))
        for row in rows:
            if row is not None and row["method"] in (XRDA, "gmp", "soft_threshold"):
                lay = stats[row["runs"][0]]["layers"]
                sp = 100.0 * (1 - lay["nnz"] / lay["n_weights"])
                parts.append(f"{row['method']} on {_model(g)} keeps layer {int(sp.values.argmin()) + 1} densest "
                             f"({sp.min():.1f}%) and prunes layer {int(sp.values.argmax()) + 1} most ({sp.max():.1f}%)")
    if parts:
        r["layers"] = "Reading: " + "; ".join(parts) + "."
    return r


def write_report(out_dir, results, df, agg, stats, tables, fig_paths, metrics):
    rel = lambda p: os.path.relpath(p, out_dir)
    datasets = sorted(df["dataset"].unique())
    seeds = sorted(agg["n"].unique())
    L = ["# Results", "",
         f"Generated by `report.py` from `{rel(os.path.join(results, 'runs.csv'))}`: "
         f"{len(df)} runs, {len(agg)} settings, data sets {', '.join(_ds(d) for d in datasets)}, "
         f"epochs {', '.join(str(int(e)) for e in sorted(df['epochs'].unique()))}, seeds per setting "
         f"{', '.join(str(int(s)) for s in seeds)}. Every number is the final-epoch test accuracy "
         f"(percent) or sparsity (percent of conv + linear weights that are exactly zero); nothing is "
         f"selected by test accuracy. Baselines are compared at matched sparsity: the point of their "
         f"sweep nearest the xRDA point's sparsity.", ""]
    if "digits" in datasets:
        L += ["> These include quick-profile runs on the bundled digits set (small widths, a few "
              "epochs, CPU): they check the pipeline end to end and show the shape of each curve; "
              "they are not evidence at paper scale. The `short` and `paper` profiles (GPU) give that.", ""]
    if max(seeds) <= 1:
        L += [f"> One seed per setting: differences below about {TOL:g} pp are within run-to-run noise.", ""]
    weak = []
    for g in groups(agg):
        d = dense_of(_in(agg, g))
        chance = 100.0 / CLASSES.get(g[0], 10)
        if d is not None and d["acc"] < 3 * chance:
            weak.append(f"{_ds(g[0])} {_model(g)} ({d['acc']:.1f}%)")
    if weak:
        L += [f"> The dense model is within 3× of chance accuracy for {', '.join(weak)}: these runs are "
              f"too short to train, and their accuracy comparisons carry no evidence.", ""]
    cl, _ = claims(df, agg, stats)
    L += ["## The paper's four claims and what these results say", ""]
    for title, lines in cl:
        L += [f"### {title}", ""] + lines + [""]

    read = readings(agg, metrics, stats)
    L += ["## Tables", ""]
    for ds, (md, _, rows) in tables["main"].items():
        L += [f"### Main table: {_ds(ds)}", "",
              f"`{rel(os.path.join(out_dir, 'tables', f'main_{ds}.md'))}` (and `.tex`). For each model "
              f"and xRDA point (reference), the dense model and each baseline at the point of its sweep "
              f"nearest that sparsity (kernel/channel modes: nearest in kernels/filters removed); "
              f"compression = weights / nonzero weights; nonzero FLOPs = multiply-adds of nonzero "
              f"weights over the dense count.", "", md]
    if read.get("main"):
        L += [read["main"], ""]
    if tables["structured"]:
        L += ["### Structured sparsity", "",
              "Kernels (3×3 slices) and filters (output channels) of conv layers that are entirely "
              "zero, and the nonzero FLOPs left; xRDA elementwise of the same models for contrast.", "",
              md_table(STRUCT_HEADER, tables["structured"], ["l", "l", "l", "l"] + ["r"] * 6),
              read.get("structured", ""), ""]
    if tables["ablation"]:
        L += ["### Ablations", "",
              "xRDA (main) against the same optimizer without reweighting (rda_l1, M = 1), without "
              "averaging (prox_sgd, a ≡ 0), plain SGD with an ℓ1 subgradient (sgd_l1), and xRDA's "
              "variants (schedule, start from a trained dense model), at the same λ.", "",
              md_table(ABL_HEADER, tables["ablation"], ["l", "l", "l", "l"] + ["r"] * 5),
              read.get("ablation", ""), ""]

    L += ["## Figures", ""]
    what = {
        "tradeoff": ("Accuracy against sparsity", "Test accuracy against sparsity, one line per method "
                     "over its λ/target grid (error bars: std over seeds); the sparsity axis is "
                     "−log10(1 − sparsity), so 90%, 99% and 99.9% are equally far apart; the dotted line "
                     "is the dense model. Further up and to the right is better."),
        "dynamics": ("Training dynamics", "Test accuracy and sparsity per epoch for the xRDA point of "
                     "median sparsity and each method's point nearest it (band: std over seeds)."),
        "layers": ("Layer-wise sparsity", "Where each method puts its zeros: sparsity of every "
                   "conv/linear layer (input to output) for one model of each family, at the xRDA "
                   "point of median sparsity and each method's point nearest it."),
    }
    for name, paths in fig_paths.items():
        png = [p for p in paths if p.endswith(".png")][0]
        title, text = what[name]
        L += [f"### {title}", "", f"![{title}]({rel(png)})", "", text, ""]
        if read.get(name):
            L += [read[name], ""]
    _write(os.path.join(out_dir, "REPORT.md"), "\n".join(L))


# ----------------------------------------------------------------------------- main

def build(results, out_dir, figures):
    df = load(results)
    agg = aggregate(df)
    stats = {r["run"]: {k: r[k] for k in ("layers", "kernels_removed", "filters_removed")}
             for _, r in df.iterrows()}
    metrics = load_metrics(df)
    tdir = os.path.join(out_dir, "tables")
    tables = {"main": main_tables(agg), "structured": structured_table(agg, stats),
              "ablation": ablation_rows(agg)}
    written = []
    for ds, (md, tex, _) in tables["main"].items():
        for ext, text in (("md", md), ("tex", tex)):
            written.append(os.path.join(tdir, f"main_{ds}.{ext}"))
            _write(written[-1], text)
    for name, header, rows, align, cap in (
            ("structured", STRUCT_HEADER, tables["structured"], ["l", "l", "l", "l"] + ["r"] * 6,
             "Structured sparsity: conv kernels and filters entirely zero, nonzero FLOPs."),
            ("ablation", ABL_HEADER, tables["ablation"], ["l", "l", "l", "l"] + ["r"] * 5,
             "Ablations of xRDA at the same penalty.")):
        if rows:
            texts = (("md", md_table(header, rows, align)), ("tex", tex_table(header, rows, align, cap)))
            for ext, text in texts:
                written.append(os.path.join(tdir, f"{name}.{ext}"))
                _write(written[-1], text)
    cols = ["dataset", "model", "width", "method", "mode", "variant", "point", "knob", "epochs", "n",
            "acc", "acc_sd", "sp", "sp_sd", "sp_all", "nnz", "n_weights", "compression", "flops_kept"]
    written.append(os.path.join(tdir, "points.csv"))
    _write(written[-1], agg[cols].to_csv(index=False))
    fig_paths = {"tradeoff": fig_tradeoff(agg, figures),
                 "dynamics": fig_dynamics(agg, metrics, figures),
                 "layers": fig_layers(agg, stats, figures)}
    write_report(out_dir, results, df, agg, stats, tables, fig_paths, metrics)
    written += [p for ps in fig_paths.values() for p in ps] + [os.path.join(out_dir, "REPORT.md")]
    return written


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="results", help="folder with runs.csv and runs/")
    p.add_argument("--out", help="where tables/ and REPORT.md go (default: --results)")
    p.add_argument("--figures", help="where figures go (default: figures/ for the default results "
                                     "folder, else OUT/figures)")
    args = p.parse_args(argv)
    out = args.out or args.results
    default = os.path.abspath(args.results) == os.path.join(REPO, "results") and not args.out
    figures = args.figures or (os.path.join(REPO, "figures") if default else os.path.join(out, "figures"))
    try:
        written = build(args.results, out, figures)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files: {os.path.join(out, 'REPORT.md')}, {os.path.join(out, 'tables')}/, "
          f"{figures}/")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    sys.exit(main())

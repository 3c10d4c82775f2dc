"""Tables as Markdown and LaTeX (booktabs), from points and curves.

    levels     per row and mode, one line per level: every method side by side, accuracy
               interpolated along its own sweep (mean ± std over seeds, seed count), "—"
               where the level lies outside the sweep; the header gives each method's
               total training epochs
    points     every point of every entry: seeds, accuracy, sparsity, compression, nonzero
               MACs, budget, calibration round
"""
import math

from . import claims as CL
from . import style


def pm(vals, digits=2):
    if not vals:
        return "—"
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return f"{m:.{digits}f} (1)"
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return f"{m:.{digits}f} ± {sd:.{digits}f} ({len(vals)})"


def md(header, rows, align=None):
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


_TEX = {"%": r"\%", "_": r"\_", "&": r"\&", "#": r"\#", "±": r"$\pm$", "×": r"$\times$",
        "ℓ": r"$\ell$", "—": "--", "≥": r"$\geq$", "[": "{[}", "]": "{]}"}


def tex_escape(text):
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def tex(header, rows, caption, label, align=None):
    """A booktabs table in \\small that fits a 7 in text width for up to ~8 columns."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    body = [r"\begin{table*}[t]", r"\centering", r"\small", r"\setlength{\tabcolsep}{4pt}",
            rf"\caption{{{tex_escape(caption)}}}", rf"\label{{{label}}}",
            r"\begin{tabular}{" + "".join(align) + "}", r"\toprule",
            " & ".join(tex_escape(h) for h in header) + r" \\", r"\midrule"]
    body += [" & ".join(tex_escape(c).replace(" (", "~(") for c in r) + r" \\" for r in rows]
    body += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
    return "\n".join(body) + "\n"


def _curve_groups(cv, roles):
    info = {k: CL._info(p) for k, p in cv.items()}
    out = {}
    for k, i in info.items():
        if i["role"] not in roles or i["role"] == "dense":
            continue
        kind = "macs" if i["mode"] in CL.STRUCTURED else "nnz"
        out.setdefault((i["row"], kind), []).append(k)
    return out, info


def levels(df, roles=("reference", "baseline")):
    """[(row, kind, header, rows)] of the levels table over curves with these roles."""
    cv = CL.curves(df)
    groups, info = _curve_groups(cv, roles)
    out = []
    for (row, kind), keys in groups.items():
        vals = {k: CL.at_levels(cv[k], kind) for k in keys}
        fell = {k: CL.collapse_note(cv[k], kind) for k in keys}
        dense = [k for k in cv if info[k]["row"] == row and info[k]["role"] == "dense"]
        dense.sort(key=lambda k: -info[k]["epochs"])
        header = ["nonzero MACs" if kind == "macs" else "sparsity"]
        header += [f"{style.label(info[k]['method'], k[1])}"
                   + (f" ({info[k]['mode']})" if kind == "macs" else "") + f", {info[k]['epochs']} ep"
                   for k in keys]
        lines = []
        if dense:
            d = cv[dense[0]]
            lines.append([f"dense, {info[dense[0]]['epochs']} ep"] + [pm(list(d["acc"]))] + [""] * (len(keys) - 1))
        for lv in CL.levels_of(kind):
            cells = [pm(vals[k][lv]) for k in keys]
            if any(c != "—" for c in cells):
                # a level a curve does not reach because it collapses first says so
                cells = [f"not reached ({fell[k]})" if c == "—" and fell[k] and _beyond(cv[k], kind, lv)
                         else c for c, k in zip(cells, keys)]
                lines.append([f"{100 * lv:g}%"] + cells)
        out.append((row, kind, header, lines))
    return out


def _beyond(part, kind, level):
    """Whether `level` lies on the sparse side of the curve's healthy points (where it collapsed)."""
    ok = part[~part["collapsed"]]
    if not len(ok):
        return True
    if kind == "macs":
        return level < ok["mac_frac"].min()
    return level > ok["sparsity"].max()


POINT_HEADER = ["row", "entry", "method", "mode", "swept", "epochs", "seeds", "test acc (%)",
                "sparsity (%)", "compression", "nonzero MACs (%)", "filters zero (%)", "round"]


def swept(p):
    """'lam=0.000305' from a point's swept key and value (4 significant digits)."""
    if not p["swept_key"]:
        return "—"
    v = p["swept_value"]
    try:
        v = f"{float(v):.4g}"
    except ValueError:
        pass
    return f"{p['swept_key'].split('.')[-1]}={v}"


def _f(v, fmt):
    return "—" if v != v else fmt.format(v)


def point_rows(pts):
    rows = []
    for _, p in pts.iterrows():
        rnd = "" if not p["calibration_round"] else (
            f"{int(p['calibration_round'])} (→{100 * p['calibration_target']:g}%)")
        acc = f"{p['acc']:.2f}" + (f" ± {p['acc_sd']:.2f}" if p["seeds"] > 1 else "")
        sp = f"{100 * p['sparsity']:.2f}" + (f" ± {100 * p['sparsity_sd']:.2f}" if p["seeds"] > 1 else "")
        epochs = str(int(p["epochs"])) if p["epochs"] == p["epochs_min"] else f"{int(p['epochs_min'])}–{int(p['epochs'])}"
        rows.append([p["row"], p["entry"], p["method"], p["mode"], swept(p), epochs, int(p["seeds"]), acc, sp,
                     f"{p['compression']:.1f}×", _f(100 * p["mac_frac"], "{:.1f}"),
                     _f(100 * p["filter_sparsity"], "{:.1f}"), rnd])
    return rows


POINT_COLUMNS = ["row", "entry", "method", "mode", "role", "swept_key", "swept_value", "epochs", "seeds",
                 "acc", "acc_sd", "sparsity", "sparsity_sd", "nnz", "n_weights", "compression", "mac_frac",
                 "filter_sparsity", "kernel_sparsity", "train_acc", "calibration_target", "calibration_round"]


PAIR_HEADER = ["row", "entry", "point", "test acc (%)", "sparsity (%)", "xRDA point", "xRDA acc (%)",
               "xRDA sparsity (%)", "matched", "outcome"]


def _acc_sp(p):
    acc = f"{p['acc']:.2f}" + (f" ± {p['acc_sd']:.2f}" if p["seeds"] > 1 else "") + f" ({int(p['seeds'])})"
    return acc, f"{100 * p['sparsity']:.2f}"


def pair_rows(pairs):
    """Rows of claims.point_pairs: a point against the reference point it is matched with."""
    rows = []
    for q in pairs:
        a = q["a"]
        pt = swept(a)
        if q["ref"] is None:
            rows.append([q["row"], q["entry"], pt, *_acc_sp(a), "—", "—", "—", q["match"], "not counted"])
            continue
        r = q["ref"]
        rpt = swept(r)
        rows.append([q["row"], q["entry"], pt, *_acc_sp(a), rpt, *_acc_sp(r), q["match"], q["outcome"]])
    return rows

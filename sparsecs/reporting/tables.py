"""Tables as Markdown and LaTeX (booktabs), from points and curves.

    level_tables  per row and kind (elementwise sparsity or structured MACs) and role set
                  (methods: xRDA and the baselines; ablations: xRDA and its ablations), one
                  line per level: every entry side by side, accuracy interpolated along its own
                  sweep (mean ± std over seeds, 4 significant digits; the seed count only where
                  it differs from the table's), "not reached" where the curve collapses first;
                  an entry with no value at any level is left out, a table with no level line
                  is not written. Bold: the highest mean of a level where it wins against every
                  other entry of that level by the report's test (reporting/compare.py: seed
                  spread and the test set's error, Holm over the level's comparisons), only in
                  profiles that draw verdicts.
    points        every point of every entry: seeds, accuracy, sparsity, compression ("all
                  zero" for a network with no nonzero weight), structural MACs, budget, round,
                  collapsed (how many of its seeds)

LaTeX tables are table* floats for a 7 in text width: \\small with 4 pt column separation,
headers broken over two lines; a table that would still be wider (estimated with Computer
Modern widths, reporting/latex.py) drops to \\footnotesize and 3 pt, then splits its columns over
stacked tabulars. tests/reporting/test_report_paper.py compiles every table with pdflatex where it is
installed and measures it.
"""
import math

from . import claims as CL
from . import compare as K
from . import style
from .envelope import at_levels, collapse_note, level_weights, levels_of, missed_note, short_note
from .latex import BOLD, FIT, FONTS, column_parts, tex_escape, tex_head, tex_width, text_width, two_lines



def digits(mean, sig=4):
    """Decimals that give `sig` significant digits to a number of this size (at least 0)."""
    if mean != mean or mean == 0:
        return 2
    return max(0, sig - 1 - int(math.floor(math.log10(abs(mean)))))


def pm(vals, digits_=None, count=True):
    """'92.03 ± 0.12 (3)' (mean, sample std, seeds) with 4 significant digits; '—' for none."""
    if not vals:
        return "—"
    m = sum(vals) / len(vals)
    d = digits(m) if digits_ is None else digits_
    if len(vals) < 2:
        return f"{m:.{d}f}" + (" (1)" if count else "")
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return f"{m:.{d}f} ± {sd:.{d}f}" + (f" ({len(vals)})" if count else "")


def md(header, rows, align=None):
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- level tables

def _curve_groups(cv, roles):
    info = {k: CL._info(p) for k, p in cv.items()}
    out = {}
    for k, i in info.items():
        if i["role"] not in roles or i["role"] == "dense":
            continue
        kind = "macs" if i["mode"] in CL.STRUCTURED else "nnz"
        out.setdefault((i["row"], kind), []).append(k)
    return out, info


def _beyond(part, kind, level):
    """Whether `level` lies on the sparse side of the curve's healthy points (where it collapsed)."""
    ok = part[~part["collapsed"]]
    if not len(ok):
        return True
    if kind == "macs":
        return level < ok["mac_frac"].min()
    return level > ok["sparsity"].max()


def _no_value(part, kind, level, fell):
    """A cell's note where the curve has no value at `level`: where it collapses (the level
    beyond it), else why its λ search for that level missed, else which seeds stop short of it
    while others span it, else '' (the sweep does not span it)."""
    if fell and _beyond(part, kind, level):
        return fell
    return missed_note(part, kind, level) or short_note(part, kind, level)


class LevelTable:
    """One levels table: `entries` [(label, epochs, mode)], `dense` (label, epochs, values) or
    None, `lines` [(level, [cell])] with cell = {"vals": [...], "note": str, "bold": bool}."""

    def __init__(self, row, kind, what, title, entries, dense, lines, marked, n_test):
        self.row, self.kind, self.what, self.title = row, kind, what, title
        self.entries, self.dense, self.lines, self.marked, self.n_test = entries, dense, lines, marked, n_test

    @property
    def seeds(self):
        """The seed count most cells have (stated once, in the caption)."""
        ns = [len(c["vals"]) for _, cells in self.lines for c in cells if c["vals"]]
        return max(set(ns), key=ns.count) if ns else 0

    @property
    def epochs(self):
        eps = {e for _, e, _ in self.entries}
        return eps.pop() if len(eps) == 1 else None

    def cell_text(self, c):
        if c["vals"]:
            return pm(c["vals"], count=len(c["vals"]) != self.seeds)
        return f"not reached ({human_keys(c['note'])})" if c["note"] else "—"

    def header(self):
        first = "structural MACs" if self.kind == "macs" else "sparsity"
        return [first] + [lab + ("" if self.epochs else f", {ep} ep") for lab, ep, _ in self.entries]

    def md_rows(self):
        rows = []
        for lv, cells in self.lines:
            out = [f"{100 * lv:g}%"]
            for c in cells:
                t = self.cell_text(c)
                out.append(f"**{t}**" if c["bold"] else t)
            rows.append(out)
        return rows

    def dense_text(self):
        if not self.dense:
            return ""
        lab, ep, vals = self.dense
        return f"{lab}, {ep} epochs: {pm(vals, count=False)}% ({len(vals)} seed{'s' if len(vals) != 1 else ''})"

    def md(self):
        head = f"Dense reference: {self.dense_text()}.\n\n" if self.dense else ""
        return head + md(self.header(), self.md_rows())

    def caption(self):
        """The caption in plain text (tex_escape makes it LaTeX)."""
        # structured: the entries the table has (a profile may run only some of them)
        what = {"methods": "xRDA and the baselines", "ablations": "xRDA and its ablations",
                "structured": "structured sparsity, " + " and ".join(lab for lab, _, _ in self.entries)}[self.what]
        at = "fractions of the dense multiply-adds left once all-zero filters are removed" if self.kind == "macs" \
            else "sparsity levels of the conv and linear weights"
        s = self.seeds
        spread = (f"mean ± std over {s} seeds (another seed count in brackets)" if s > 1 else
                  "one seed, so no spread (another seed count in brackets)")
        parts = [f"{self.title}, {what}: test accuracy (%) at fixed {at}, interpolated along each "
                 f"method's own sweep; {spread}; — outside the sweep."]
        if self.epochs:
            parts.append(f"Every entry trained {self.epochs} epochs in total.")
        if self.marked:
            parts.append("Bold: the highest mean at that level where it wins against every other entry "
                         "of the level (seed spread and test-set sampling error, Holm-corrected); no "
                         "bold: no entry is decisively best.")
        return " ".join(parts)

    def tex(self, label, profile=""):
        rows, notes = self._tex_rows()
        split = [two_lines(h) for h in self.header()]
        dense_cell = self._dense_cell()
        cols = self._measured_columns(split)
        font, size, sep = _fit_font(cols, dense_cell)
        cap = tex_escape(self.caption()) + (rf" Profile \texttt{{{tex_escape(profile)}}}." if profile else "")
        out = [r"\begin{table*}[t]", r"\centering", rf"\caption{{{cap}}}", rf"\label{{{label}}}",
               font, rf"\setlength{{\tabcolsep}}{{{sep:g}pt}}"]
        out += self._tabulars(column_parts(cols, size, sep), split, rows, dense_cell)
        if notes:
            out.append(r"\par\smallskip{\footnotesize " + "; ".join(
                f"$^{chr(ord('a') + i)}$\\,not reached: {tex_escape(human_keys(n))}" for i, n in enumerate(notes)) + ".}")
        out.append(r"\end{table*}")
        return "\n".join(out) + "\n"

    def _tex_rows(self):
        """The LaTeX cells of each level line, and the notes (in order of first use) that a
        'not reached' cell's letter points to."""
        notes = []

        def cell(c):
            if c["vals"]:
                t = tex_escape(pm(c["vals"], count=len(c["vals"]) != self.seeds)).replace(" (", "~(")
                return rf"\textbf{{{t}}}" if c["bold"] else t
            if c["note"]:
                if c["note"] not in notes:
                    notes.append(c["note"])
                return rf"n.\,r.$^{{{chr(ord('a') + notes.index(c['note']))}}}$"
            return "--"

        rows = [[tex_escape(f"{100 * lv:g}%")] + [cell(c) for c in cells] for lv, cells in self.lines]
        return rows, notes

    def _measured_columns(self, split):
        """The columns as the width estimate sees them: the header over its lines (`split`),
        each level's cells in plain text (bold ones marked BOLD, 'n. r.a' for no value), and
        'dense' under the levels."""
        cols = [["\n".join(h)] for h in split]
        for lv, cells in self.lines:
            for j, c in enumerate(cells):
                cols[j + 1].append((BOLD if c["bold"] else "") + self.cell_text(c) if c["vals"] else "n. r.a")
            cols[0].append(f"{100 * lv:g}%")
        if self.dense:
            cols[0].append("dense")
        return cols

    def _dense_cell(self):
        if not self.dense:
            return ""
        lab, ep, vals = self.dense
        return f"{lab}: {pm(vals, count=len(vals) != self.seeds)}"

    def _tabulars(self, parts, split, rows, dense_cell):
        """One tabular per part (its value columns), stacked."""
        out = []
        for n, cols in enumerate(parts):
            if n:
                out.append(r"\par\medskip")
            idx = [0] + cols
            out.append(r"\begin{tabular}{@{}l" + "r" * len(cols) + "@{}}")
            out.append(r"\toprule")
            out.append(" & ".join(tex_head(split[j]) for j in idx) + r" \\")
            out.append(r"\midrule")
            if self.dense:
                out.append(rf"dense & \multicolumn{{{len(cols)}}}{{c}}{{{tex_escape(dense_cell).replace(' (', '~(')}}} \\")
                out.append(r"\addlinespace")
            out += [" & ".join(r[j] for j in idx) + r" \\" for r in rows]
            out += [r"\bottomrule", r"\end{tabular}"]
        return out


def _fit_font(cols, dense_cell):
    """(command, size, tabcolsep) of the first of FONTS at which the table's estimated width
    fits FIT; the smallest when none does."""
    def width(size, sep):
        w = tex_width(cols, size, sep)
        if dense_cell:     # the dense row spans the value columns
            w = max(w, tex_width([cols[0]], size, sep) + 2 * sep + text_width(dense_cell, size))
        return w

    font, size, sep = FONTS[0]
    for font, size, sep in FONTS:
        if width(size, sep) <= FIT:
            break
    return font, size, sep


# the config keys a λ search turns, as a reader knows them (docs/methods.md)
KEY_NAMES = {"optim.final_threshold": "the final threshold D", "optim.s_weight_decay": "STR's threshold decay",
             "optim.lam": "λ", "optim.target": "the target sparsity"}


def human_keys(text):
    """`text` (a search's note) with config keys in the names a reader knows."""
    for key, name in KEY_NAMES.items():
        text = text.replace(key, name)
    return text


def _mark_best(cells, n_test, correct=None):
    """Bold the highest mean of one level where it wins against every other cell by the
    report's test (compare.verdict with the test-set size, paired where every run of both
    cells has its predictions (`correct`, claims.correct_of), Holm over these comparisons)."""
    have = [c for c in cells if c["vals"]]
    if len(have) < 2:
        return
    best = max(have, key=lambda c: sum(c["vals"]) / len(c["vals"]))
    rest = [c for c in have if c is not best]
    res = [K.verdict(best["vals"], c["vals"], n_test=n_test,
                     paired=CL.paired_diff(best.get("w"), c.get("w"), correct or {})) for c in rest]
    adj = K.holm([r[3] for r in res])
    if all(K.decide(r[2], p, r[0]) == K.WIN for r, p in zip(res, adj)):
        best["bold"] = True


def level_tables(df, roles=("reference", "baseline"), what="methods", marked=True, titles=None):
    """[LevelTable] over the curves with these roles: one per row and kind, none without a
    level line."""
    cv = CL.curves(df)
    groups, info = _curve_groups(cv, roles)
    titles = titles or style.row_titles(df)
    out = []
    for (row, kind), keys in groups.items():
        vals = {k: at_levels(cv[k], kind) for k in keys}
        weights = {k: level_weights(cv[k], kind) for k in keys}
        fell = {k: collapse_note(cv[k], kind) for k in keys}
        lines = []
        for lv in levels_of(kind):
            cells = [{"vals": list(vals[k][lv]), "w": weights[k][lv], "bold": False,
                      "note": _no_value(cv[k], kind, lv, fell[k]) if not vals[k][lv] else ""}
                     for k in keys]
            if any(c["vals"] for c in cells):
                lines.append((lv, cells))
        # an entry with no value at any level (only "—" or "not reached") is left out
        keep = [j for j, k in enumerate(keys) if any(cells[j]["vals"] for _, cells in lines)]
        # an ablations table without an ablation column repeats the methods table: not written
        if not keep or (what == "ablations" and all(info[keys[j]]["role"] != "ablation" for j in keep)):
            continue
        keys = [keys[j] for j in keep]
        lines = [(lv, [cells[j] for j in keep]) for lv, cells in lines]
        n_test = CL.n_test(cv[keys[0]])
        if marked:
            correct = CL.correct_of(*(cv[k] for k in keys))
            for _, cells in lines:
                _mark_best(cells, n_test, correct)
        dense = [k for k in cv if info[k]["row"] == row and info[k]["role"] == "dense"]
        budget = max(info[k]["epochs"] for k in keys)
        dense.sort(key=lambda k: (info[k]["epochs"] != budget, -info[k]["epochs"]))
        d = None
        if dense:
            i = info[dense[0]]
            d = (style.label(i["method"], dense[0][1]), i["epochs"], list(cv[dense[0]]["acc"]))
        entries = [(style.label(info[k]["method"], k[1]), info[k]["epochs"], info[k]["mode"]) for k in keys]
        out.append(LevelTable(row, kind, "structured" if kind == "macs" else what, titles.get(row, row),
                              entries, d, lines, marked, n_test))
    return out


def levels(df, roles=("reference", "baseline")):
    """[(row, kind, header, rows)] of the levels tables (Markdown cells) over these roles."""
    return [(t.row, t.kind, t.header(), t.md_rows()) for t in level_tables(df, roles, marked=False)]


# ------------------------------------------------------------------------- points and pairs

# structural MACs: what slim export keeps (all-zero filters and their inputs removed), not the
# nonzero MACs of elementwise zeros
POINT_HEADER = ["row", "entry", "method", "mode", "swept", "epochs", "seeds", "test acc (%)",
                "sparsity (%)", "compression", "structural MACs (%)", "filters zero (%)", "round",
                "collapsed"]


def collapsed_text(p):
    """'' for a point none of whose seeds collapsed, else 'yes' (every seed) or 'k of n'."""
    k, n = int(p["collapsed"]), int(p["seeds"])
    return "" if not k else "yes" if k >= n else f"{k} of {n}"


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


def compression(p):
    """'10.03×' (weights over nonzeros, 4 significant digits), 'all zero' with no nonzero."""
    if p["nnz"] == 0 or p["compression"] != p["compression"]:
        return "all zero" if p["nnz"] == 0 else "—"
    return f"{p['compression']:.4g}×"


def point_rows(pts):
    rows = []
    for _, p in pts.iterrows():
        rnd = "" if not p["calibration_round"] else (
            f"{int(p['calibration_round'])} (→{100 * p['calibration_target']:g}%)")
        if p.get("fill_in", False):      # a follower seed's own run past an end level
            rnd = f"fill-in (→{100 * p['calibration_target']:g}%)"
        d = digits(p["acc"])
        acc = f"{p['acc']:.{d}f}" + (f" ± {p['acc_sd']:.{d}f}" if p["seeds"] > 1 else "")
        sp = f"{100 * p['sparsity']:.2f}" + (f" ± {100 * p['sparsity_sd']:.2f}" if p["seeds"] > 1 else "")
        epochs = str(int(p["epochs"])) if p["epochs"] == p["epochs_min"] else f"{int(p['epochs_min'])}–{int(p['epochs'])}"
        rows.append([p["row"], p["entry"], style.label(p["method"], p["entry"]), p["mode"], swept(p), epochs,
                     int(p["seeds"]), acc, sp, compression(p), _f(100 * p["mac_frac"], "{:.4g}"),
                     _f(100 * p["filter_sparsity"], "{:.3g}"), rnd, collapsed_text(p)])
    return rows


POINT_COLUMNS = ["row", "entry", "method", "mode", "role", "swept_key", "swept_value", "epochs", "seeds",
                 "acc", "acc_sd", "sparsity", "sparsity_sd", "nnz", "n_weights", "compression", "mac_frac",
                 "filter_sparsity", "kernel_sparsity", "train_acc", "calibration_target", "calibration_round",
                 "collapsed"]   # collapsed: how many of the point's seeds collapsed (criteria.collapsed)


def pair_header(name):
    """The header of a point-by-point table against `name` (a papers.PointTable's)."""
    return ["row", "entry", "point", "test acc (%)", "sparsity (%)", f"{name} point", f"{name} acc (%)",
            f"{name} sparsity (%)", "matched", "outcome"]


def _acc_sp(p):
    d = digits(p["acc"])
    acc = f"{p['acc']:.{d}f}" + (f" ± {p['acc_sd']:.{d}f}" if p["seeds"] > 1 else "") + f" ({int(p['seeds'])})"
    return acc, f"{100 * p['sparsity']:.2f}"


def pair_rows(pairs):
    """Rows of pointwise.point_pairs: a point against the reference point it is matched with."""
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

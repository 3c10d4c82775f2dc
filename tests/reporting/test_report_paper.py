"""The report's tables and figures as a paper uses them (issue 21): LaTeX tables that compile
and fit a 7 in text width, figures saved at 3.5 in and 7 in with TrueType fonts, legends that
explain every mark, readable names, distinct colour-blind-safe colours, the dynamics figure on
the common budget, the per-layer / threshold / λ-search figures, and a pipeline-check report
without verdict tables.

The reports are built from the real `fashion` and `quick` profiles with synthetic run folders
(tests/synthetic.py: a stand-in launcher, nothing trained)."""
import math
import os
import re
import shutil
import subprocess
import tempfile

import pytest

import report
from sparsecs.reporting import compare as K
from sparsecs.reporting import fig_tradeoff as FT
from sparsecs.reporting import figures as F
from sparsecs.reporting import latex
from sparsecs.reporting import savings
from sparsecs.reporting import style
from sparsecs.reporting import tables as T
from tests import synthetic

PDFLATEX = shutil.which("pdflatex")
PAGE_PT = 7 * 72.27


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{profile: (out folder, DRAWN of its figures)} for the fashion and quick profiles."""
    out = {}
    for prof in ("fashion", "quick"):
        base = tmp_path_factory.mktemp(prof)
        path = os.path.join(report.REPO, "configs", "profiles", f"{prof}.yaml")
        if prof == "quick":      # its ResNet-20 and VGG-16 rows only (all its cases, half the time)
            text = open(path).read()
            trimmed = text.replace("all: &all [*densenet40, *resnet56, *resnet20, *vgg16]", "all: &all [*resnet20, *vgg16]")
            trimmed = trimmed.replace("      - {arch: [*densenet40, *resnet56], optim.lam: [1.0e-3]}\n", "")
            trimmed = trimmed.replace("      - {arch: [*densenet40, *resnet56], optim.lam: [3.0e-2]}\n", "")
            assert trimmed.count("densenet40, *resnet56") == 0 and trimmed != text
            path = str(base / "quick.yaml")
            with open(path, "w") as f:
                f.write(trimmed)
        results = synthetic.sweep_profile(path, base / "results")
        F.DRAWN.clear()
        report.build(path, results, str(base / "rep"))
        out[prof] = (base / "rep", dict(F.DRAWN), results)
    return out


def _files(folder, ext):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(ext))


# ----------------------------------------------------------------------------- LaTeX tables

def _tabulars(src):
    """(font command, tabcolsep line, [top-level tabular blocks]) of one table file."""
    lines = src.splitlines()
    font = next(x for x in lines if x in (r"\small", r"\footnotesize"))
    sep = next(x for x in lines if x.startswith(r"\setlength{\tabcolsep}"))
    blocks, cur = [], None
    for x in lines:
        if x.startswith(r"\begin{tabular}{"):
            cur = [x]
        elif cur is not None:
            cur.append(x)
            if x == r"\end{tabular}":
                blocks.append("\n".join(cur))
                cur = None
    return font, sep, blocks


def latex_widths(path):
    """Compile the table file in a 10 pt article with a 7 in text width; returns (return code,
    [width in pt of each tabular, measured in an \\sbox], whether TeX reported an overfull box,
    log)."""
    font, sep, blocks = _tabulars(open(path).read())
    body = "\n".join(rf"\sbox{{\tb}}{{{font}{sep}{b}}}\typeout{{TABWIDTH=\the\wd\tb}}" for b in blocks)
    doc = (r"\documentclass[10pt]{article}\usepackage{booktabs}"
           r"\usepackage[textwidth=7in,textheight=9in]{geometry}\newsavebox{\tb}\begin{document}"
           + body + "\n\\input{" + os.path.abspath(path) + "}\n\\end{document}\n")
    d = tempfile.mkdtemp()
    try:
        with open(os.path.join(d, "t.tex"), "w") as f:
            f.write(doc)
        p = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=d,
                           capture_output=True, text=True, timeout=120)
        log = open(os.path.join(d, "t.log"), errors="replace").read()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    widths = [float(w) for w in re.findall(r"TABWIDTH=([\d.]+)pt", log)]
    return p.returncode, widths, "Overfull \\hbox" in log, log


def wide_table():
    """A levels table wider than the page at \\small: nine entries, notes, two budgets."""
    names = ["xRDA", "xRDA (channel)", "soft threshold (LATS)", "GMP", "prune + fine-tune",
             "RDA ℓ₁ (M=1)", "prox. SGD (a=0)", "SGD + ℓ₁ subgrad.", "xRDA (from dense)"]
    entries = [(n, 160 if i < 8 else 80, "elementwise") for i, n in enumerate(names)]
    lines = []
    for lv in (0.9, 0.95, 0.98, 0.99):
        cells = [{"vals": [91.2 + i / 10, 91.4 + i / 10, 90.9], "note": "", "bold": False} for i in range(9)]
        cells[2] = {"vals": [], "note": "collapses at 98.49% sparse", "bold": False} if lv > 0.95 else cells[2]
        cells[4]["vals"] = [88.0] if lv == 0.9 else cells[4]["vals"]
        lines.append((lv, cells))
    return T.LevelTable("c10-vgg19-xrda", "nnz", "methods", "VGG-19, CIFAR-10", entries,
                        ("dense SGD", 160, [93.9, 94.0]), lines, True, 10_000)


def _all_tex(built, tmp_path):
    paths = [p for prof in ("fashion", "quick") for p in _files(built[prof][0] / "tables", ".tex")]
    wide = tmp_path / "levels_wide.tex"
    wide.write_text(wide_table().tex("tab:wide", "paper"))
    return paths + [str(wide)]


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex not installed (the width estimate is tested below)")
def test_every_latex_table_compiles_and_fits_a_7in_text_width(built, tmp_path):
    paths = _all_tex(built, tmp_path)
    assert len(paths) >= 5
    for p in paths:
        rc, widths, overfull, log = latex_widths(p)
        assert rc == 0, (p, log[-2000:])
        assert widths and not overfull, p
        assert max(widths) <= PAGE_PT, (p, widths)
    # the wide table needed the smaller font and two stacked tabulars, each of which fits
    src = open(paths[-1]).read()
    assert r"\footnotesize" in src.splitlines()[4:6] or src.count(r"\begin{tabular}{@{}l") > 1


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex not installed")
def test_the_width_estimate_agrees_with_pdflatex(built, tmp_path):
    """tables.tex_width (Computer Modern advance widths) within 6% of the measured width, so
    that the estimate the table writer fits by can be trusted where pdflatex is missing."""
    for p in _files(built["fashion"][0] / "tables", ".tex"):
        _, (measured, *_), _, _ = latex_widths(p)
        assert abs(_estimate(p) - measured) <= 0.06 * measured, (p, _estimate(p), measured)


def _estimate(path):
    """The estimate for a table file written by report.build (from its Markdown twin)."""
    md = open(path[:-4] + ".md").read().split("\n\n")[-1].strip().splitlines()
    # a **bold** cell is set in \textbf, which tex_width measures wider (latex.BOLD)
    # and a "not reached (...)" cell is n.\,r.$^a$ in LaTeX, measured as the writer does ("n. r.a"):
    # measuring its Markdown text made a one-tabular table look stacked (439 pt estimated for the
    # first of its parts against 469 pt measured for the whole)
    def cell(c):
        if c.startswith("not reached ("):
            return "n. r.a"
        return latex.BOLD + c[2:-2] if c.startswith("**") and c.endswith("**") else c
    cells = [[cell(c.strip()) for c in line.strip("|").split("|")] for line in md if not line.startswith("| :")]
    cols = [["\n".join(latex.two_lines(h))] + [r[j] for r in cells[1:]] for j, h in enumerate(cells[0])]
    if "Dense reference" in open(path[:-4] + ".md").read():
        cols[0].append("dense")
    size, sep = (9.0, 4.0) if r"\small" in open(path).read() else (8.0, 3.0)
    # a wide table is stacked as several tabulars, each the first column and a part of the rest;
    # the first tabular's width is the one compared (the dense row spans its value columns)
    first = [cols[0]] + [cols[j] for j in latex.column_parts(cols, size, sep)[0]]
    w = latex.tex_width(first, size, sep)
    dense = re.search(r"Dense reference: (.+?), \d+ epochs: (.+?)% \(", open(path[:-4] + ".md").read())
    if dense:
        w = max(w, latex.tex_width([cols[0]], size, sep) + 2 * sep
                + latex.text_width(f"{dense.group(1)}: {dense.group(2)}", size))
    return w


def test_table_widths_by_estimate(built, tmp_path):
    """Without pdflatex: every tabular's estimated width (Computer Modern metrics) fits 7 in."""
    for p in _all_tex(built, tmp_path)[:-1]:
        assert _estimate(p) <= PAGE_PT, p
    t = wide_table()
    src = t.tex("tab:wide")
    assert src.count(r"\begin{tabular}{@{}l") >= 1
    font = r"\footnotesize" if r"\footnotesize" in src else r"\small"
    size, sep = (8.0, 3.0) if font == r"\footnotesize" else (9.0, 4.0)
    assert font == r"\footnotesize"          # \small did not fit: the writer chose the smaller font


def test_latex_math_captions_columns_and_digits(built):
    tdir = built["fashion"][0] / "tables"
    methods = (tdir / "levels_fashion_mnist-resnet20-w0.5_methods.tex").read_text()
    ablations = (tdir / "levels_fashion_mnist-resnet20-w0.5_ablations.tex").read_text()
    assert r"$\ell_1$" in ablations and r"$\ell$1" not in ablations
    cap = lambda s: re.search(r"\\caption\{(.*)\}\n", s).group(1)
    assert cap(methods) != cap(ablations) and "baselines" in cap(methods) and "ablations" in cap(ablations)
    assert "ResNet-20 $\\times$0.5, Fashion-MNIST" in cap(methods)
    for src in (methods, ablations):
        assert "{[}" not in src and "xrda\\_" not in src      # no internal [entry] names
        _, _, blocks = _tabulars(src)
        for b in blocks:
            rows = [r.rstrip(r" \\").split(" & ") for r in b.splitlines()
                    if " & " in r and "multicolumn" not in r][1:]
            for j in range(1, len(rows[0])):
                assert any(r[j] != "--" for r in rows), f"an all-'--' column {j}"
        for num in re.findall(r"(\d+\.\d+) \$\\pm\$", src):
            assert len(num.replace(".", "").lstrip("0")) == 4, num          # 4 significant digits


def test_bold_marks_only_a_decisive_best():
    win = lambda: [{"vals": [92.0, 92.1, 92.2], "note": "", "bold": False},
                   {"vals": [89.0, 89.1, 89.2], "note": "", "bold": False},
                   {"vals": [88.0, 88.2, 88.1], "note": "", "bold": False}]
    cells = win()
    T._mark_best(cells, 10_000)
    assert [c["bold"] for c in cells] == [True, False, False]
    # 0.3 pp on 10,000 test images is below the set's resolution: nothing is marked
    close = [{"vals": [92.0, 92.1, 92.2], "note": "", "bold": False},
             {"vals": [91.7, 91.8, 91.9], "note": "", "bold": False}]
    T._mark_best(close, 10_000)
    assert not any(c["bold"] for c in close)
    assert K.verdict(close[0]["vals"], close[1]["vals"], n_test=10_000)[0] == K.UNMEASURABLE
    # the best must win against every other entry, not just the runner-up
    cells = win()
    cells[2]["vals"] = [91.9, 92.0, 92.1]
    T._mark_best(cells, 10_000)
    assert not any(c["bold"] for c in cells)
    # the same rule in a written table, and the caption says so
    t = wide_table()
    for _, cs in t.lines:
        cs[0]["vals"] = [95.0, 95.1, 95.2]
        T._mark_best(cs, t.n_test)
    assert "Bold: the highest mean" in t.caption()
    assert t.tex("tab:x").count(r"\textbf{95.10 $\pm$ 0.10}") == 4


def test_tex_escape_and_pipeline_tables(built):
    assert latex.tex_escape("RDA ℓ₁ (M=1)") == r"RDA $\ell_1$ (M=1)"
    assert latex.tex_escape("SGD + ℓ1 subgrad.") == r"SGD + $\ell_1$ subgrad."
    assert latex.tex_escape("50% & a_b") == r"50\% \& a\_b"
    # the quick profile (evidence: none): no point-by-point win/loss tables, no bold, and no
    # level table without a level line or with only xRDA in its ablations
    rep = built["quick"][0]
    names = os.listdir(rep / "tables")
    assert not [n for n in names if n.startswith("pairs_")]
    text = (rep / "REPORT.md").read_text()
    assert "point by point" not in text and "**win**" not in text and "**" not in text.split("## Tables")[1].split("### Every point")[0].replace("**Verdict", "")
    for n in names:
        if n.startswith("levels_") and n.endswith(".md"):
            body = (rep / "tables" / n).read_text().split("\n\n")[-1].strip().splitlines()
            assert len(body) >= 3 and len(body[0].split("|")) >= 4, n     # a level line, two entries
    # the ablations there have one point each, at no level: their tables would hold xRDA alone
    assert sorted(n for n in names if n.startswith("levels_") and n.endswith(".md")) == [
        "levels_digits-resnet20-w0.5_methods.md", "levels_digits-vgg16-w0.25_methods.md"]


def test_points_table_says_all_zero_and_savings_are_formatted(built, tmp_path):
    pts = (built["quick"][0] / "tables" / "points.md").read_text()
    line = next(x for x in pts.splitlines() if "vgg16" in x and "soft_threshold" in x and "lam=0.1" in x)
    assert "all zero" in line and "×" not in line.split("|")[10]
    assert not re.search(r"\d{7,}\.\d×", pts)
    # savings: SI sizes, 4 significant digits, "all zero" for a network with no MAC left
    header, rows = savings.display([
        {**{c: None for c in savings.COLUMNS}, "run": "a", "theoretical_speedup": 3.123456789,
         "slim_speedup_b1": 1.2345678, "dense_bytes": 1_234_567, "slim_bytes": 123_456, "csr_bytes": 999},
        {**{c: None for c in savings.COLUMNS}, "run": "b", "theoretical_speedup": math.inf}])
    a, b = rows
    assert a[header.index("MACs dense / nonzero")] == "3.123×" and a[header.index("slim, batch 1")] == "1.235×"
    assert a[header.index("dense file")] == "1.235 MB" and a[header.index("slim file")] == "123.5 kB"
    assert a[header.index("CSR file")] == "999 B" and a[header.index("CSR, batch 1")] == "—"
    assert b[header.index("MACs dense / nonzero")] == "all zero"
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text('{"run": "r", "flops_dense": 1000, "flops_nonzero": 0}')
    (run / "export.json").write_text('{"csr": {"bytes": 10, "dense_bytes": 100}}')
    assert savings.table([str(run)])[0]["theoretical_speedup"] == math.inf


def test_export_prints_larger_for_a_larger_file():
    import export

    assert export.size_ratio(1200, 1000) == "1.20x larger"
    assert export.size_ratio(400, 1000) == "2.50x smaller"
    assert export.size_ratio(1000, 1000) == "the same size as dense"


def test_report_names_the_results_folder_it_was_given(built):
    rep, _, results = built["fashion"]
    text = (rep / "REPORT.md").read_text()
    assert f"--results {results}" in text and f"`{results}/runs/`" in text
    assert "under `results/runs/`" not in text


# ----------------------------------------------------------------------------- figures

def _png_inches(path):
    from PIL import Image

    with Image.open(path) as im:
        (w, h), (dx, dy) = im.size, im.info["dpi"]
    return w / dx, h / dy


def _pdf_inches(path):
    data = open(path, "rb").read()
    x0, y0, x1, y1 = map(float, re.search(rb"/MediaBox\s*\[\s*([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+)", data).groups())
    return (x1 - x0) / 72, (y1 - y0) / 72


def test_figures_are_3_5_or_7_inches_wide_at_sensible_heights(built):
    seen = set()
    for prof in ("fashion", "quick"):
        fdir = built[prof][0] / "figures"
        for png in _files(fdir, ".png"):
            w, h = _png_inches(png)
            pw, ph = _pdf_inches(png[:-4] + ".pdf")
            want = 3.5 if "_col" in os.path.basename(png) else 7.0
            assert abs(w - want) < 0.01 and abs(pw - want) < 0.01, (png, w, pw)
            assert abs(h - ph) < 0.01, png
            assert 1.5 <= h <= (4.0 if want == 3.5 else 9.0), (png, h)
            seen.add(os.path.basename(png).split("_")[0])
    assert {"tradeoff", "ablation", "structured", "dynamics", "layers", "threshold", "search"} <= seen


def test_pdfs_embed_truetype_not_type3_fonts(built):
    pdfs = [p for prof in ("fashion", "quick") for p in _files(built[prof][0] / "figures", ".pdf")]
    assert pdfs
    for p in pdfs:
        data = open(p, "rb").read()
        assert b"/Type3" not in data, p
        assert b"/FontFile2" in data, p          # TrueType font programs embedded
    pdffonts = shutil.which("pdffonts")
    if pdffonts:
        for p in pdfs[:6]:
            out = subprocess.run([pdffonts, p], capture_output=True, text=True).stdout
            assert "Type 3" not in out and "TrueType" in out, out


def test_colours_are_okabe_ito_and_distinct_in_every_figure(built):
    # the eight Okabe-Ito colours and one neutral grey, handed out before yellow
    okabe_ito = {"#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
                 "#777777"}
    assert set(style.PALETTE) == okabe_ito
    assert style.PALETTE.index("#777777") < style.PALETTE.index(style.YELLOW)
    for prof in ("fashion", "quick"):
        drawn = built[prof][1]
        for stem, d in drawn.items():
            for panel in d.get("panels", [d.get("entries")]) if ("panels" in d or "entries" in d) else []:
                colours = [e[1] for e in panel]
                assert set(colours) <= okabe_ito, stem
                assert len(set(colours)) == len(colours), (stem, panel)
    # xRDA and its channel mode never share a colour, nor a marker
    looks = style.Looks([("sgd", "sgd"), ("xrda", "xrda"), ("xrda", "xrda_channel"), ("gmp", "gmp"),
                         ("filter_prune", "filter_prune"), ("prox_sgd", "prox_sgd")])
    a, b = looks.base[("xrda", "xrda")], looks.base[("xrda", "xrda_channel")]
    assert a["color"] != b["color"] and a["marker"] != b["marker"]
    assert looks.base[("sgd", "sgd")]["color"] == style.DENSE_COLOR
    assert all(v["color"] in okabe_ito for v in looks.base.values())
    # more entries than colours: one figure still gets distinct ones while the palette allows
    many = [("xrda", f"xrda_{i}") for i in range(12)]
    fig = style.Looks(many).figure(many[:7])
    assert len({v["color"] for v in fig.values()}) == 7


def test_names_and_titles_a_reader_understands(built):
    assert style.label("xrda", "xrda_channel") == "xRDA (channel)"
    assert style.label("xrda", "xrda_step") == "xRDA (step schedule)"
    assert style.label("sgd", "sgd_half") == "dense SGD (half budget)"
    assert style.label("rda_l1", "rda_l1") == "RDA ℓ₁ (M=1)"
    # a schedule variant is named by the method's registry (optim/soft_threshold.py `variants`),
    # not "soft threshold (LATS) (sine)"; an entry whose name says nothing takes the run's schedule
    assert style.label("soft_threshold", "soft_threshold") == "soft threshold (LATS)"
    assert style.label("soft_threshold", "soft_threshold_sine") == "soft threshold, sine schedule"
    assert style.label("soft_threshold", "soft_threshold_linear") == "soft threshold, linear schedule"
    assert style.label("soft_threshold", "st_x", "linear") == "soft threshold, linear schedule (st x)"
    assert style.label("soft_threshold", "soft_threshold_half") == "soft threshold (LATS) (half budget)"
    assert style.model_name("resnet20", 0.5) == "ResNet-20 ×0.5"
    assert style.model_name("densenet40", 1.0) == "DenseNet-40"
    assert style.model_name("mobilenet_v1", 1.0) == "MobileNet-v1"
    for prof in ("fashion", "quick"):
        for stem, d in built[prof][1].items():
            for t in d["titles"]:
                assert not re.search(r"fashion_mnist-|digits-\w", t), (stem, t)    # no row ids
            for lab in d["legend"]:
                assert "[" not in lab and "_" not in lab.replace("$\\ell_1$", ""), (stem, lab)
                assert "(LATS) (sine)" not in lab and "(LATS) (linear)" not in lab, (stem, lab)
    assert "ResNet-20 ×0.5, Fashion-MNIST, 8 epochs" in built["fashion"][1]["tradeoff_col"]["titles"]
    # the structured axis is the multiply-adds slim export keeps, not elementwise nonzero MACs
    assert built["fashion"][1]["structured_col"]["xlabels"][0].startswith("structural multiply-adds")


def test_accuracy_axis_zooms_and_legends_explain_every_mark(built):
    d = built["fashion"][1]["tradeoff_col"]
    lo, hi = d["ylims"][0]
    assert hi - lo < 6 and lo > 80          # the 0.2-2 pp differences, not 10-100%
    assert len(d["yticks"][0]) >= 4 and len(d["xticks"][0]) >= 3
    # a collapsed soft-threshold run (past the healthy points: on the right edge) and λ-search
    # rounds are drawn and explained
    assert "round" in d["marks"] and {"collapsed", "edge_collapsed"} & set(d["marks"])
    assert ({"collapsed run (lower edge)", "past the axis and collapsed"} & set(d["legend"])
            and "λ-search round (seed 0)" in d["legend"])
    # the all-zero network of the quick profile is drawn at the right edge, and says so
    q = built["quick"][1]
    edge = [s for s, v in q.items() if "edge_collapsed" in v.get("marks", [])]
    assert edge and all("past the axis and collapsed" in q[s]["legend"] for s in edge)
    for s in edge:      # inside the axis, at its right end
        assert all(any(lo < x <= hi for lo, hi in q[s]["xlims"]) for x, _, m in q[s]["edge_marks"])


def test_a_far_lower_healthy_point_is_marked_not_allowed_to_flatten_the_axis(built, tmp_path):
    from sparsecs.reporting import claims as CL
    from sparsecs.reporting import load

    df, _ = load.load("fashion", built["fashion"][2])
    pts = CL.points(df)
    i = pts.index[(pts["entry"] == "gmp")][0]
    pts.loc[i, "acc"] = 60.0                      # healthy (not collapsed), 32 pp below dense
    FT.tradeoff(pts, str(tmp_path), "nnz", "col", "low")
    d = F.DRAWN["low_col"]
    assert "below" in d["marks"] and "below the axis (lower edge)" in d["legend"]
    assert d["ylims"][0][0] > 85


def test_a_collapse_sparser_than_every_tick_is_an_edge_mark_inside_the_axis(built, tmp_path):
    from sparsecs.reporting import claims as CL
    from sparsecs.reporting import load

    df, _ = load.load("fashion", built["fashion"][2])
    pts = CL.points(df)
    i = pts.index[(pts["entry"] == "gmp")][0]
    pts.loc[i, "sparsity"] = 0.99997              # x = 4.52, past the last tick (99.99%, x = 4)
    pts.loc[i, "collapsed"] = 1
    FT.tradeoff(pts, str(tmp_path), "nnz", "col", "far")
    lo, hi = F.DRAWN["far_col"]["xlims"][0]
    # a collapse does not stretch the axis (issue 33): it sits on the right edge, inside it
    assert hi < 4.52
    assert any(m == "edge_collapsed" and lo < x < hi for x, _, m in F.DRAWN["far_col"]["edge_marks"])


def test_dynamics_shows_few_curves_on_the_total_budget_axis(built):
    d = built["fashion"][1]["dynamics_page"]
    assert all(n <= 5 for n in d["curves"])                   # xRDA, 2 nearest, LATS, dense
    assert any(lab.startswith("soft threshold (LATS)") for lab in d["legend"])
    title = d["titles"][0]
    import pandas as pd
    pts = pd.read_csv(built["fashion"][0] / "tables" / "points.csv")
    ref = pts[(pts["entry"] == "xrda") & (pts["seeds"] == 3)]
    shown = float(re.search(r"xRDA at ([\d.]+)% sparse", title).group(1)) / 100
    assert min(abs(ref["sparsity"] - shown)) < 5e-5            # the title names a point that exists
    assert "3 seeds" in title
    assert [t for t in d["xticks"][0] if t] == [str(i) for i in range(1, 9)]     # integer epochs
    # prune + fine-tune starts from a 4-epoch dense run: drawn on epochs 5-8 of the 8-epoch budget
    from sparsecs.reporting import claims as CL
    from sparsecs.reporting import fig_dynamics, load
    df, _ = load.load("fashion", built["fashion"][2])
    p = CL.points(df)
    mf = p[(p["entry"] == "magnitude_finetune")].iloc[0]
    eps = sorted({int(e) for m in fig_dynamics._epoch_metrics(df, mf, load.run_frames(df)["metrics"]) for e in m["epoch"]})
    assert eps == [5, 6, 7, 8]
    assert any("the dense run it starts from" in lab for lab in d["legend"])
    assert "± std over seeds (band)" in d["legend"]


def test_per_layer_threshold_and_search_figures(built):
    d = built["fashion"][1]
    layers = d["layers_page"]
    assert "sparsity overall: xRDA 94.65%" in layers["titles"][0]
    # the title, then the overall sparsities on lines that fit the page (not clipped at its edge)
    from sparsecs.reporting.fig_layers import TITLE_CHARS
    assert all(len(line) <= TITLE_CHARS for t in layers["titles"] for line in t.split("\n")[1:])
    assert layers["xticks"][0] == [str(i) for i in range(1, 20)] + ["fc"]      # ResNet-20: 19 convs, fc
    thr = d["threshold_col"]
    # LATS's healthy points every seed ran (λ: its 3 calibrated targets, and the cover point
    # its missed 99% search gives the other seeds), and the linear and sine schedules' (D)
    import pandas as pd
    pts = pd.read_csv(built["fashion"][0] / "tables" / "points.csv")
    lats = pts[(pts["entry"] == "soft_threshold") & (pts["seeds"] == 3)]
    assert len(lats) == 4
    # one legend entry per schedule, naming it; a curve per level (at most 4 of LATS's points)
    assert "soft threshold (LATS) (searched λ)" in thr["legend"]
    assert "soft threshold, linear schedule (searched D)" in thr["legend"]
    assert len(thr["legend"]) == len(set(thr["legend"])) and thr["curves"] <= 4 * len(thr["legend"])
    rep = (built["fashion"][0] / "REPORT.md").read_text()
    for stem in ("layers_page", "threshold_col", "dynamics_page", "tradeoff_page"):
        assert f"figures/{stem}.png" in rep


def test_search_figure(built):
    """One file per searched key of a row (λ of xRDA, LATS and the ablations;
    D of the linear and sine schedules; STR's threshold decay), each named by its key: three
    panels that once shared one file name and overwrote each other."""
    out, d = built["fashion"][0], built["fashion"][1]
    search = {k: v for k, v in d.items() if k.startswith("search_col")}
    row = F.slug("fashion_mnist-resnet20-w0.5")
    keys = {k: F.slug(k) for k in ("lam", "final_threshold", "s_weight_decay")}
    assert set(search) == {f"search_col_{row}_{k}" for k in keys.values()}
    for stem in search:
        assert (out / "figures" / f"{stem}.pdf").is_file() and (out / "figures" / f"{stem}.png").is_file()
    lam, thr, decay = (search[f"search_col_{row}_{k}"]["legend"] for k in keys.values())
    assert {"target sparsity", "round that reached its target", "collapsed round"} <= set(lam)
    assert {"xRDA", "soft threshold (LATS)"} <= set(lam)
    # channel xRDA is searched on MACs, not sparsity: the λ-search table shows it (% of MACs),
    # this sparsity axis does not
    assert "xRDA (channel)" not in set(lam)
    # each entry is drawn on the axis of the key it searched, and only there
    assert {"soft threshold, linear schedule", "soft threshold, sine schedule"} <= set(thr)
    assert not {"xRDA", "soft threshold (LATS)", "STR"} & set(thr)
    assert "STR" in decay and "xRDA" not in decay
    assert search[f"search_col_{row}_{keys['final_threshold']}"]["titles"][0].endswith("searches of D (seed 0)")
    rep = (out / "REPORT.md").read_text()
    assert all(f"figures/{stem}.png" in rep for stem in search)


def test_claim_a4_needs_a_dense_model_that_overfits(built):
    """Claim 4 (xRDA as a regularizer) is judged only where the dense model overfits: its
    training accuracy at least 1 pp above its test accuracy (papers.OVERFITS). The synthetic
    fashion profile's dense model trains to 99% against 92.5% test: in the regime. Brought to
    the committed fashion runs' numbers (92.59 against 92.11), the verdict is 'not testable at
    this budget' with the gap, never supported or refuted."""
    from sparsecs.reporting import claims as CL
    from sparsecs.reporting import compare as K
    from sparsecs.reporting import load

    df, _ = load.load("fashion", built["fashion"][2])
    dense = df["role"] == "dense"
    verdicts = {n: (v, mine) for n, _, _, v, mine in CL.claim_verdicts(CL.comparisons(df))}
    v4, mine = verdicts["4"]
    assert v4 in ("supported", "refuted", "inconclusive") and all(c["outcome"] != K.NOT_TESTABLE for c in mine)
    counted = [c for c in mine if c["levels"]]
    assert counted and counted[0]["regime"].startswith("in its regime")

    # the committed runs' gap: train 92.59, test 92.11 (0.48 pp): outside the regime; each seed's
    # gap is shown (here 0.30, 0.50, 0.64 pp, mean 0.48)
    low = df.copy()
    low.loc[dense, "train_acc_final"] = low.loc[dense, "test_acc"] + low.loc[dense, "seed"].map({0: 0.30, 1: 0.50, 2: 0.64})
    verdicts = {n: (v, mine) for n, _, _, v, mine in CL.claim_verdicts(CL.comparisons(low))}
    v4, mine = verdicts["4"]
    assert v4 == K.NOT_TESTABLE == "not testable at this budget"
    c = next(c for c in mine if c["levels"])
    assert c["outcome"] == K.NOT_TESTABLE and c["levels"]                  # the levels stay shown
    eq = low[dense & (low["total_epochs"] == c["b"]["epochs"])]
    want = (f"train_acc_final {eq['train_acc_final'].mean():.2f}% against test_acc "
            f"{eq['test_acc'].mean():.2f}% (mean of 3 seeds), a gap of 0.48 pp (per seed 0.30, 0.50, 0.64), under 1 pp")
    assert c["regime"].startswith("outside its regime") and c["regime"].endswith(want)
    # the other claims do not move
    assert verdicts["1"][0] == {n: v for n, _, _, v, _ in CL.claim_verdicts(CL.comparisons(df))}["1"]

    # runs from before train_acc_final: the last epoch's train_acc stands in; at 1.2 pp it is in
    old = df.copy()
    old.loc[dense, "train_acc_final"] = float("nan")
    old.loc[dense, "train_acc"] = old.loc[dense, "test_acc"] + 1.2
    c = next(c for c in CL.comparisons(old) if c["claim"] == "4" and c["levels"])
    assert c["outcome"] != K.NOT_TESTABLE and "train_acc " in c["regime"] and "a gap of 1.20 pp" in c["regime"]
    # nothing measured at all: not testable, and said so
    old.loc[dense, "train_acc"] = float("nan")
    c = next(c for c in CL.comparisons(old) if c["claim"] == "4" and c["levels"])
    assert c["outcome"] == K.NOT_TESTABLE and "not measured" in c["regime"]

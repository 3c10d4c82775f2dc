"""The figures a report writes (issues 33 and 37): every file exactly 3.5 or 7 in wide and
at most 9 in tall (read from the saved PDF), byte-identical from one build to the next, a
build removing the figures it no longer makes; trade-off axes that span the healthy points
with edge marks that never hide each other; constants drawn as constants.

One small synthetic report (tests/synthetic.py: nothing trained): ResNet-20 on digits with
dense SGD, xRDA, GMP and LATS, and a benchmark CSV for the speed-up figure."""
import os
import re

import numpy as np
import pytest

import pandas as pd
import yaml

from sparsecs import paths
import report
from sparsecs.reporting import fig_tradeoff as FT
from sparsecs.reporting import figures as F
from sparsecs.reporting import load
from sparsecs.reporting import style
from sparsecs.reporting import threshold_figure as TF
from tests import synthetic

PROFILE = """evidence: none
seeds: [0]
overrides: [epochs=3, batch_size=64]
defs:
  resnet20: &resnet20 {model: resnet20, width: 0.5}
runs:
  - name: sgd
    config: configs/quick/sgd.yaml
    grid: {arch: [*resnet20]}
  - name: xrda
    config: configs/quick/xrda.yaml
    grid: {arch: [*resnet20], optim.lam: [5.0e-4, 2.0e-3]}
  - name: gmp
    config: configs/quick/gmp.yaml
    overrides: [optim.prune_end=2]
    target_from: xrda
    grid: {arch: [*resnet20]}
  - name: soft_threshold
    config: configs/quick/soft_threshold.yaml
    grid: {arch: [*resnet20], optim.lam: [1.0e-2, 1.0e-1]}
"""
BENCH = ("run,model,sparsity,mac_ratio,threads,batch,variant,median_ms,q1_ms,q3_ms,min_ms,max_ms,repeats,"
         "speedup,speedup_q1,speedup_q3,load_average,measured_at\n"
         + "".join(f"r{i},resnet20,0.9,{m},1,{b},{v},1,1,1,1,1,30,{s},{s * 0.9},{s * 1.1},1,2026-01-01T00:00:0{i}\n"
                   for i, m in enumerate((5.0, 20.0)) for b in (1, 64)
                   for v, s in (("folded", 1.2), ("slim", 1.0), ("sparse", 2.0), ("slim+sparse", 2.2))))


def with_config(write_run):
    def write(results, name, cfg):
        shift = write_run(results, name, cfg)
        with open(paths.path(paths.run_dir(results, name), paths.CONFIG), "w") as f:
            f.write(yaml.safe_dump(cfg, sort_keys=False))
        return shift
    return write


def build(base, results, name):
    out = base / name
    out.mkdir()
    (out / "inference.csv").write_text(BENCH)
    F.DRAWN.clear()
    report.build(str(base / "small.yaml"), results, str(out))
    return out / "figures", dict(F.DRAWN)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    base = tmp_path_factory.mktemp("small")
    (base / "small.yaml").write_text(PROFILE)
    with pytest.MonkeyPatch.context() as mp:      # config.yaml beside each run: the threshold page
        mp.setattr(synthetic, "write_run", with_config(synthetic.write_run))
        results = synthetic.sweep_profile(str(base / "small.yaml"), base / "results")
    a, drawn = build(base, results, "a")
    b, _ = build(base, results, "b")
    return a, b, drawn, base, results


def pdf_inches(path):
    """(width, height) in inches from the PDF's MediaBox: what a reader's page gets."""
    data = open(path, "rb").read()
    box = re.search(rb"/MediaBox\s*\[\s*([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+)", data).groups()
    x0, y0, x1, y1 = map(float, box)
    return (x1 - x0) / 72, (y1 - y0) / 72


def test_every_figure_is_3_5_or_7_inches_wide_and_fits_a_page(small):
    a, _, drawn, _, _ = small
    pdfs = sorted(p for p in os.listdir(a) if p.endswith(".pdf"))
    stems = {p[:-4] for p in pdfs}
    # every kind the report makes from these runs, the speed-up and threshold pages included
    assert {"tradeoff_col", "tradeoff_page", "dynamics_page", "threshold_col", "thresholds_page",
            "speedup_page"} <= stems, stems
    for p in pdfs:
        w, h = pdf_inches(os.path.join(a, p))
        want = 3.5 if "_col" in p else 7.0
        assert abs(w - want) < 0.002, (p, w)           # exactly: MediaBox in points, 252 or 504
        assert 1.0 <= h <= 9.0, (p, h)
        assert os.path.isfile(os.path.join(a, p[:-4] + ".png"))
        if p[:-4] in drawn:                            # the figure object agrees
            fw, fh = drawn[p[:-4]]["size"]
            assert abs(fw - w) < 0.002 and abs(fh - h) < 0.002, p


def test_two_builds_write_byte_identical_files(small):
    a, b, _, _, _ = small
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b)) and any(n.endswith(".pdf") for n in names)
    differ = [n for n in names if (a / n).read_bytes() != (b / n).read_bytes()]
    assert not differ, differ
    assert b"CreationDate" not in (a / "speedup_page.pdf").read_bytes()


def test_a_build_removes_the_figures_it_no_longer_makes_and_nothing_else(small, tmp_path):
    a, _, _, base, results = small
    fdir = tmp_path / "figures"
    out = tmp_path / "rep"
    out.mkdir()
    report.build(str(base / "small.yaml"), results, str(out), str(fdir))
    made = sorted(n for n in os.listdir(fdir) if not n.startswith("."))
    assert (fdir / report.MANIFEST).read_text().split() == made
    # an earlier build's figure this one does not make, and a file no build wrote
    (fdir / "search_col_old.png").write_bytes(b"stale")
    (fdir / report.MANIFEST).write_text("search_col_old.png\n../escape.png\n" + "\n".join(made) + "\n")
    (fdir / "notes.png").write_bytes(b"mine")
    (tmp_path / "escape.png").write_bytes(b"outside")
    (out / "inference.csv").write_text(BENCH)       # this build makes one more figure
    report.build(str(base / "small.yaml"), results, str(out), str(fdir))
    left = set(os.listdir(fdir))
    assert "search_col_old.png" not in left
    assert "notes.png" in left and (tmp_path / "escape.png").exists()
    assert set(made) | {"speedup_page.png", "speedup_page.pdf"} <= left
    assert sorted((fdir / report.MANIFEST).read_text().split()) == sorted(made + ["speedup_page.pdf",
                                                                                  "speedup_page.png"])


def _pts(small):
    from sparsecs.reporting import claims as CL
    from sparsecs.reporting import load

    df, _ = load.load(str(small[3] / "small.yaml"), small[4])
    return CL.points(df)


def test_a_collapse_far_right_is_an_edge_mark_not_the_axis_end(small, tmp_path):
    pts = _pts(small)
    healthy_hi = float(F.sp_x(pts[pts["collapsed"] == 0]["sparsity"].max()))
    i = pts.index[pts["entry"] == "xrda"][-1]
    pts.loc[i, ["sparsity", "collapsed", "acc"]] = [0.99994, 1, 10.0]     # x = 4.22
    FT.tradeoff(pts, str(tmp_path), "nnz", "col", "far")
    d = F.DRAWN["far_col"]
    lo, hi = d["xlims"][0]
    # the axis ends one tick past the healthy points plus the edge column (0.3), not at 4.22
    assert hi < healthy_hi + 0.7 < 4.22
    edge = [m for m in d["edge_marks"] if m[2] == "edge_collapsed"]
    assert edge and all(lo < x < hi for x, _, _ in edge)
    assert len({round(y, 6) for _, y, _ in edge}) == len(edge)           # stacked, not covering
    assert "past the axis and collapsed" in d["legend"]


def test_edge_marks_at_one_sparsity_never_cover_each_other(small, tmp_path):
    pts = _pts(small)
    for e in ("xrda", "gmp", "soft_threshold"):                # three entries 60 pp down at 95%
        j = pts.index[pts["entry"] == e][0]
        pts.loc[j, ["sparsity", "acc", "collapsed"]] = [0.95, 30.0, 0]
    FT.tradeoff(pts, str(tmp_path), "nnz", "col", "stack")
    d = F.DRAWN["stack_col"]
    at = [(x, y) for x, y, m in d["edge_marks"] if m == "below" and abs(x - F.sp_x(0.95)) < 1e-9]
    assert len(at) == 3 and len({round(y, 6) for _, y in at}) == 3
    assert "below the axis (lower edge)" in d["legend"]


def test_one_marker_means_one_thing():
    entries = [("xrda", "xrda"), ("magnitude_finetune", "magnitude_finetune"), ("prox_sgd", "prox_sgd"),
               ("soft_threshold", "soft_threshold")] + [("xrda", f"xrda_{i}") for i in range(8)]
    markers = {e: v["marker"] for e, v in style.Looks(entries).base.items()}
    # the marks' symbols: collapse ×, right edge ▶, below-the-axis ↓ (not prune + fine-tune's ▼)
    assert not {"x", "X", "+", ">"} & set(markers.values())
    assert F.BELOW_MARK not in markers.values() and markers[("magnitude_finetune",) * 2] == "v"


def test_a_constant_coefficient_is_drawn_flat_on_a_linear_axis(tmp_path):
    from tests.reporting.test_threshold_figure import fake_run

    v = TF.flat([1.0, 1.0 + 3e-7, 1.0 - 2e-7])
    assert len(set(v)) == 1 and v[0] == pytest.approx(1.0 + 1e-7 / 3, rel=1e-12)
    assert list(TF.flat([0.5, 1.0, 40.0])) == [0.5, 1.0, 40.0]
    rows = []
    for schedule in ("lats", "linear"):
        folder, _, summary = fake_run(str(tmp_path), schedule)
        rows.append({"run": f"st-{schedule}", "method": "soft_threshold", "entry": f"st_{schedule}", "row": "digits-resnet20-w0.5",
                     "seed": 0, "swept_value": "x", "folder": folder, "model": "resnet20", "width": 0.5,
                     "dataset": "digits", **summary})
    # LATS alone (a constant λ, rounding noise of ~1e-7): a linear axis, one flat line, no
    # '1×10⁰' tick labels over a range of 1e-6
    one = pd.DataFrame(rows[:1])
    TF.figure(one, load.run_frames(one)["thresholds"], str(tmp_path / "one"))
    d = F.DRAWN["thresholds_page"]
    assert d["yscales"] == ["linear", "linear"]
    assert not any("10^" in t for ts in d["yticks"] for t in ts)
    assert d["titles"][0].startswith(f"ResNet-20 ×0.5, {style.dataset_name('digits')}")   # not the row id
    two = pd.DataFrame(rows)
    TF.figure(two, load.run_frames(two)["thresholds"], str(tmp_path / "two"))              # linear: λ grows ~10×
    assert F.DRAWN["thresholds_page"]["yscales"] == ["linear", "log"]
    assert F.DRAWN["thresholds_page"]["size"][0] == 7.0


def test_search_and_threshold_figures_read_in_words(small):
    drawn = small[2]
    for stem, d in drawn.items():
        for lab in d["xlabels"]:
            assert not lab.startswith("optim."), (stem, lab)
    thr = drawn["threshold_col"]
    assert thr["legend"] == ["soft threshold (LATS) (searched λ)"] and thr["curves"] >= 1


def test_end_labels_stay_apart_and_inside_the_panel():
    """threshold_col's end labels (hand-worked): pushed up from the lowest, then down from the
    top where the pile went past it (11 curves ending near the top spilled over the title)."""
    from sparsecs.reporting.fig_threshold import _readable, _spread

    assert _spread([0.0, 0.01, 0.02], 0.1, 1.0) == pytest.approx([0.0, 0.1, 0.2])
    assert _spread([0.9, 0.95, 1.0], 0.1, 1.0) == pytest.approx([0.8, 0.9, 1.0])
    ys = _spread([0.5] * 11, 0.075, 0.96)
    assert max(ys) <= 0.96 and min(b - a for a, b in zip(ys, ys[1:])) == pytest.approx(0.075)
    # Okabe-Ito yellow is darkened for text on white; blue stays as it is
    assert _readable("#F0E442") == pytest.approx((0.941 * 0.7, 0.894 * 0.7, 0.259 * 0.7), abs=2e-3)
    assert _readable("#0072B2") == "#0072B2"

"""report.py on a small hand-written results folder with known values: the tables hold exactly
the expected numbers, every figure is written, bad input gives a one-line error."""
import csv
import os
import subprocess
import sys

import pytest
import yaml

import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = [("conv1", "Conv2d", 432, 16, 144, 3), ("conv2", "Conv2d", 2304, 16, 256, 16),
          ("fc", "Linear", 160, 10, 0, 0)]  # name, type, weights, filters, kernels, -
N_WEIGHTS = sum(l[2] for l in LAYERS)
FLOPS = 100000


def _optim(method, mode, knob):
    o = {"lr": 1.0, "schedule": "cosine"}
    if method in ("xrda", "rda_l1", "prox_sgd", "sgd_l1"):
        o.update(lam=knob, mode=mode)
    elif method in ("gmp", "filter_prune"):
        o.update(target=knob)
    elif method == "soft_threshold":
        o.update(final_threshold=knob)
    return o


def _run(root, model, method, mode, seed, acc, sp, knob=0.0, width=0.25, extra=None, init_from=""):
    """Write one run folder (config.yaml, metrics.csv, layers.csv) and return its runs.csv row."""
    optim = _optim(method, mode, knob)
    optim.update(extra or {})
    tag = f"{method}-{mode}-{knob:g}-" + "-".join(f"{k}{v}" for k, v in (extra or {}).items()) + \
          ("-init" if init_from else "")
    name = f"digits-{model}-{tag}-s{seed}-{abs(hash((model, tag))) % 16**8:08x}"
    folder = root / "runs" / name
    folder.mkdir(parents=True)
    cfg = {"dataset": "digits", "model": model, "width": width, "epochs": 3, "seed": seed,
           "device": "cpu", "init_from": init_from, "method": method, "optim": optim}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    nnz = round(N_WEIGHTS * (1 - sp))
    with open(folder / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "sparsity", "nnz", "seconds"])
        for e in (1, 2, 3):
            w.writerow([e, 0.1, 1.0 / e, acc, 1.0 / e, acc - 3 + e, sp * e / 3, nnz, 1.0])
    with open(folder / "layers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "type", "shape", "n_weights", "nnz", "sparsity", "kernels", "zero_kernels",
                    "filters", "zero_filters", "flops_dense", "flops_nonzero"])
        for lname, typ, n, filters, kernels, _ in LAYERS:
            lnnz = round(n * (1 - sp))
            zf = filters // 2 if mode == "channel" and typ == "Conv2d" else 0
            zk = kernels // 4 if typ == "Conv2d" else 0
            w.writerow([lname, typ, "x", n, lnnz, 1 - lnnz / n, kernels, zk, filters, zf, 10, 10 * (1 - sp)])
    return {"run": name, "dataset": "digits", "model": model, "width": width, "method": method,
            "mode": mode, "seed": seed, "epochs": 3, "lam": knob if "lam" in optim else 0.0,
            "test_acc": acc, "train_acc": 99.0, "sparsity": sp, "sparsity_all": sp * 0.99, "nnz": nnz,
            "n_weights": N_WEIGHTS, "n_params": N_WEIGHTS + 100, "flops_dense": FLOPS,
            "flops_nonzero": FLOPS * (1 - sp), "train_seconds": 1.0, "config_hash": "0",
            "init_from": init_from, "target_sparsity": knob if "target" in optim else "",
            "run_dir": str(folder)}


def make_results(root):
    R = lambda *a, **k: _run(root, *a, **k)
    rows = [
        R("resnet20", "sgd", "dense", 0, 95.0, 0.0), R("resnet20", "sgd", "dense", 1, 97.0, 0.0),
        R("resnet20", "xrda", "elementwise", 0, 94.0, 0.90, 1e-4), R("resnet20", "xrda", "elementwise", 1, 96.0, 0.92, 1e-4),
        R("resnet20", "xrda", "elementwise", 0, 90.0, 0.98, 1e-3), R("resnet20", "xrda", "elementwise", 1, 92.0, 0.99, 1e-3),
        R("resnet20", "gmp", "elementwise", 0, 93.0, 0.91, 0.91), R("resnet20", "gmp", "elementwise", 1, 93.0, 0.91, 0.91),
        R("resnet20", "gmp", "elementwise", 0, 88.0, 0.985, 0.985), R("resnet20", "gmp", "elementwise", 1, 89.0, 0.985, 0.985),
        R("resnet20", "soft_threshold", "elementwise", 0, 96.0, 0.50, 0.01),
        R("resnet20", "soft_threshold", "elementwise", 0, 92.5, 0.95, 0.05),
        R("resnet20", "soft_threshold", "elementwise", 0, 80.0, 0.999, 0.2),
        R("resnet20", "xrda", "channel", 0, 93.0, 0.60, 1e-5),
        R("resnet20", "filter_prune", "channel", 0, 91.0, 0.60, 0.6),
        R("resnet20", "rda_l1", "elementwise", 0, 95.5, 0.50, 1e-4),
        R("resnet20", "xrda", "elementwise", 0, 93.5, 0.93, 1e-4, extra={"schedule": "step"}),
        R("vgg16", "sgd", "dense", 0, 96.0, 0.0, width=0.125),
        R("vgg16", "xrda", "elementwise", 0, 95.0, 0.95, 1e-4, width=0.125),
        R("vgg16", "gmp", "elementwise", 0, 94.0, 0.95, 0.95, width=0.125),
    ]
    with open(root / "runs.csv", "w", newline="") as f:
        cols = list(dict.fromkeys(k for r in rows for k in r))
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return rows


def _table(path):
    """Markdown table -> list of row dicts (blank separator rows dropped)."""
    lines = [l for l in open(path).read().splitlines() if l.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in l.strip("|").split("|")] for l in lines[2:]]
    return [dict(zip(head, r)) for r in rows if any(r)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    make_results(root)
    out, figs = root / "out", root / "figs"
    code = report.main(["--results", str(root), "--out", str(out), "--figures", str(figs)])
    assert code == 0
    return root, out, figs


def test_main_table_holds_means_stds_and_matched_points(built):
    _, out, _ = built
    rows = _table(out / "tables" / "main_digits.md")
    r20 = [r for r in rows if r["model"].startswith("resnet20")]
    dense = [r for r in r20 if r["method"] == "sgd (dense)"]
    assert dense[0]["test acc (%)"] == "96.00 ± 1.41" and dense[0]["seeds"] == "2"
    # two elementwise xRDA points (the step-schedule variant is not a reference) + one channel
    refs = [r for r in r20 if r["method"] == "xrda"]
    assert [r["point"] for r in refs] == ["λ=0.0001 (reference)", "λ=0.001 (reference)", "λ=1e-05 (reference)"]
    assert refs[0]["test acc (%)"] == "95.00 ± 1.41" and refs[0]["sparsity (%)"] == "91.00 ± 1.41"
    assert refs[1]["test acc (%)"] == "91.00 ± 1.41" and refs[1]["sparsity (%)"] == "98.50 ± 0.71"
    assert refs[2]["mode"] == "channel"
    # matched sparsity: each sweep's point nearest the xRDA point (91% -> gmp 91%, soft 95%;
    # 98.5% -> gmp 98.5%, soft 99.9%)
    gmp = [r for r in r20 if r["method"] == "gmp"]
    assert [r["point"] for r in gmp] == ["target 91% (nearest 91.00%)", "target 98.5% (nearest 98.50%)"]
    assert gmp[0]["test acc (%)"] == "93.00 ± 0.00" and gmp[1]["test acc (%)"] == "88.50 ± 0.71"
    soft = [r for r in r20 if r["method"] == "soft_threshold"]
    assert [r["point"] for r in soft] == ["D=0.05 (nearest 91.00%)", "D=0.2 (nearest 98.50%)"]
    assert soft[0]["test acc (%)"] == "92.50" and soft[0]["seeds"] == "1"   # one seed: no ±
    # ablation methods stay out of the main table; channel mode meets the channel baseline only
    assert not [r for r in r20 if r["method"] in ("rda_l1", "prox_sgd", "sgd_l1")]
    chan = [r for r in r20 if r["mode"] == "channel"]
    assert [r["method"] for r in chan] == ["xrda", "filter_prune"]
    assert chan[1]["point"] == "target 60% (nearest 50.00% filters)"   # structured: matched on filters
    # compression = weights / nonzeros, FLOPs kept = nonzero / dense
    n = N_WEIGHTS
    nnz = [round(n * 0.1), round(n * 0.08)]
    comp = [n / k for k in nnz]
    mean = sum(comp) / 2
    sd = (sum((c - mean) ** 2 for c in comp)) ** 0.5
    assert refs[0]["compression (×)"] == f"{mean:.1f} ± {sd:.1f}"
    assert refs[0]["nonzero weights"] == f"{round(sum(nnz) / 2):,}"
    assert refs[0]["nonzero FLOPs (%)"] == "9.0 ± 1.4"
    vgg = [r for r in rows if r["model"].startswith("vgg16")]
    assert [r["method"] for r in vgg] == ["sgd (dense)", "xrda", "gmp"]
    tex = (out / "tables" / "main_digits.tex").read_text()
    assert r"95.00 $\pm$ 1.41" in tex and r"\toprule" in tex


def test_ablation_structured_report_and_figures(built):
    _, out, figs = built
    abl = _table(out / "tables" / "ablation.md")
    assert [(r["method"], r["variant"], r["test acc (%)"]) for r in abl] == [
        ("xrda", "main", "95.00 ± 1.41"), ("xrda", "schedule=step", "93.50"), ("rda_l1", "main", "95.50")]
    st = _table(out / "tables" / "structured.md")
    chan = [r for r in st if r["mode"] == "channel"]
    # conv filters: 16 + 16, half of each zero in channel mode; kernels: 144 + 256, a quarter zero
    assert [(r["method"], r["filters removed (%)"], r["kernels removed (%)"]) for r in chan] == [
        ("xrda", "50.0", "25.0"), ("filter_prune", "50.0", "25.0")]
    for name in ("tradeoff", "dynamics", "layers"):
        for ext in ("png", "pdf"):
            assert (figs / f"{name}.{ext}").stat().st_size > 1000
    text = (out / "REPORT.md").read_text()
    for claim in ("1. Sparser and more accurate", "2. Structured sparsity", "3. Training from scratch",
                  "4. A regularizing effect"):
        assert claim in text
    # claim 4: no xRDA point reaches its dense model's accuracy
    assert "**not supported**: 0 of 4 xRDA points" in text
    assert "../figs/tradeoff.png" in text
    pts = list(csv.DictReader(open(out / "tables" / "points.csv")))
    assert len(pts) == 15


def test_selection_never_uses_test_accuracy(tmp_path):
    """Changing a baseline's accuracy does not change which point is matched."""
    rows = make_results(tmp_path)
    df = report.aggregate(report.load(str(tmp_path)))
    before = [(m, r["point"]) for *_, others in report.sections(df) for m, r in others if r is not None]
    for r in rows:
        if r["method"] == "soft_threshold":
            r["test_acc"] = 10.0 if r["sparsity"] == 0.95 else 99.0
    with open(tmp_path / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    df = report.aggregate(report.load(str(tmp_path)))
    assert [(m, r["point"]) for *_, others in report.sections(df) for m, r in others if r is not None] == before


@pytest.mark.parametrize("case", ["missing", "empty", "columns", "number", "metrics"])
def test_bad_input_gives_one_line_error(tmp_path, capsys, case):
    if case != "missing":
        make_results(tmp_path)
    runs = tmp_path / "runs.csv"
    if case == "empty":
        runs.write_text("")
    elif case == "columns":
        runs.write_text("run,dataset\nx,digits\n")
    elif case == "number":
        text = runs.read_text().splitlines()
        text[1] = text[1].replace(",95.0,", ",ninety,", 1)
        runs.write_text("\n".join(text) + "\n")
    elif case == "metrics":
        next((tmp_path / "runs").glob("*/metrics.csv")).write_text("epoch,test_acc\n1,\"oops\n")
    args = ["--results", str(tmp_path), "--out", str(tmp_path / "o")]
    if case == "missing":  # once through the command line
        p = subprocess.run([sys.executable, os.path.join(REPO, "report.py"), *args],
                           capture_output=True, text=True, cwd=REPO)
        code, err = p.returncode, p.stderr
    else:
        code, err = report.main(args), capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not (tmp_path / "o" / "REPORT.md").exists()

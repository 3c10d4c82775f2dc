"""The threshold figure (reporting/threshold_figure.py): the per-epoch threshold of a
soft_threshold run and the ℓ1 coefficient it implies, recomputed from metrics.csv and the
run's config, against the values the method itself produced."""
import math
import os

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from sparsecs import config as C
from sparsecs import fileio
from sparsecs import paths
from sparsecs.optim import get_method
from sparsecs.reporting import load
from sparsecs.reporting import threshold_figure as TF
from sparsecs.reporting import thresholds as TH
from tests import REPO

EPOCHS, BATCH = 3, 128           # digits: 1,437 training images -> 12 steps an epoch
CONFIG = os.path.join(REPO, "configs", "quick", "soft_threshold.yaml")


def fake_run(results, schedule, warmup=0):
    """A run folder as train.py leaves it (config.yaml, metrics.csv, summary.json), its
    thresholds from the real method stepped through the run's schedule (no data: only the
    schedule and the threshold move). Returns (folder, per-epoch λ from the lr actually used)."""
    knob = ["optim.lam=0.002"] if schedule == "lats" else ["optim.lam=0", "optim.final_threshold=0.05"]
    cfg = C.build(CONFIG,
                  [f"epochs={EPOCHS}", f"batch_size={BATCH}", f"warmup_epochs={warmup}",
                   f"optim.threshold_schedule={schedule}", *knob])
    steps = TH.steps_per_epoch(cfg)
    assert steps == math.ceil(1437 / BATCH)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    hp = {**cfg["optim"], "warmup_epochs": warmup}
    method = get_method("soft_threshold")(model, hp, steps, EPOCHS)
    rows, want, prev = [], [], 0.0
    for e in range(EPOCHS):
        used = 0.0
        for _ in range(steps):
            used += method.optimizer.param_groups[0]["lr"]
            method.step()
        d = method.threshold_at(method.t, method.lr_sum)
        want.append((d - prev) / used)
        prev = d
        rows.append({"epoch": e + 1, "lr": method.lr, "test_acc": 50.0, **method.end_epoch(e)})
    folder = paths.run_dir(results, f"st-{schedule}-w{warmup}")
    os.makedirs(folder, exist_ok=True)
    with open(paths.path(folder, paths.CONFIG), "w") as f:
        f.write(yaml.safe_dump(cfg, sort_keys=False))
    fileio.save_csv(rows, paths.path(folder, paths.METRICS))
    summary = {"method": "soft_threshold", **method.summary()}
    fileio.save_json(summary, paths.path(folder, paths.SUMMARY))
    return folder, want, summary


@pytest.mark.parametrize("warmup", [0, 1])
def test_implied_lambda_is_recomputed_exactly(tmp_path, warmup):
    for schedule in ("lats", "linear", "sine"):
        folder, want, summary = fake_run(str(tmp_path), schedule, warmup)
        c = load.threshold_curve(folder, summary)
        assert list(c["epoch"]) == [1, 2, 3]
        assert list(c["lam"]) == pytest.approx(want, rel=1e-5)
        if schedule == "lats":       # a constant coefficient: λ every epoch
            assert list(c["lam"]) == pytest.approx([0.002] * EPOCHS, rel=1e-5)
        elif not warmup:             # growing as the cosine lr falls
            assert c["lam"].is_monotonic_increasing and c["lam"].iloc[-1] > 2 * c["lam"].iloc[0]
        assert c.attrs["D"] == pytest.approx(summary["final_threshold"])


def test_the_figure_is_drawn_from_the_report_table(tmp_path):
    rows = []
    for i, schedule in enumerate(("lats", "linear", "sine")):
        folder, _, summary = fake_run(str(tmp_path), schedule)
        rows.append({"run": f"st-{schedule}", "method": "soft_threshold", "entry": f"st_{schedule}", "row": "digits-resnet20",
                     "seed": 0, "swept_value": "x", "folder": folder, **summary})
    rows.append({"run": "sgd", "method": "sgd", "entry": "sgd", "row": "digits-resnet20", "seed": 0, "swept_value": "",
                 "folder": "", "threshold_schedule": float("nan")})
    df = pd.DataFrame(rows)
    curves = {r["run"]: load.threshold_curve(r["folder"], r) for r in rows if r["method"] == "soft_threshold"}
    paths = TF.figure(df, curves, str(tmp_path / "fig"))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["thresholds_page.png", "thresholds_page.pdf"]
    assert all((tmp_path / "fig" / p.rsplit("/", 1)[1]).stat().st_size > 1000 for p in paths)
    assert TF.figure(df[-1:], {}, str(tmp_path / "none")) == []


def test_several_rows_a_page_name_the_row_in_the_legend(tmp_path, monkeypatch):
    """Quick's page has one LATS curve in each of three rows, one colour: its legend said
    "soft threshold (LATS): D = ..." three times without saying which row each D is."""
    rows, curves = [], {}
    for row in ("digits-resnet20", "digits-vgg16"):
        folder, _, summary = fake_run(str(tmp_path / row), "lats")
        rows.append({"run": f"st-{row}", "method": "soft_threshold", "entry": "soft_threshold", "row": row,
                     "seed": 0, "swept_value": "x", "folder": folder, **summary})
        curves[f"st-{row}"] = load.threshold_curve(folder, rows[-1])
    legends = []
    real = TF.F._legend
    monkeypatch.setattr(TF.F, "_legend", lambda fig, handles, *a, **k: (legends.append(list(handles)),
                                                                          real(fig, handles, *a, **k)))
    titles = {"digits-resnet20": "ResNet-20", "digits-vgg16": "VGG-16"}
    TF.figure(pd.DataFrame(rows), curves, str(tmp_path / "two"), titles=titles)
    assert len(legends) == 1 and len(legends[0]) == 2
    assert legends[0][0].startswith("ResNet-20, ") and legends[0][1].startswith("VGG-16, ")
    # one row: the title says the row already, the legend does not repeat it
    legends.clear()
    TF.figure(pd.DataFrame(rows[:1]), curves, str(tmp_path / "one"), titles=titles)
    assert len(legends[0]) == 1 and not legends[0][0].startswith("ResNet-20")

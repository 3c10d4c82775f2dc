"""scripts/backfill_train_acc_final.py: the number train.py would have written, added to an
older run's summary and index row, and nothing else touched."""
import csv
import json
import os

import pytest

from sparsecs import config as C
from sparsecs import fileio
from sparsecs import paths
from sparsecs import runindex
import train
from scripts import backfill_train_acc_final as B


def test_backfill_writes_what_training_measured_and_leaves_the_rest(tmp_path, capsys):
    cfg = C.build(None, ["model=resnet20", "width=0.25", "epochs=1", "device=cpu", "train_subset=256"])
    s = train.train(cfg, results=str(tmp_path), quiet=True)
    out = paths.run_dir(str(tmp_path), s["run"])
    # as a run from before the field existed: summary and index row without it
    older = {k: v for k, v in s.items() if k != "train_acc_final"}
    fileio.save_json(older, os.path.join(out, "summary.json"))
    runindex.upsert_row(os.path.join(str(tmp_path), "runs.csv"), older)
    older = json.load(open(os.path.join(out, "summary.json")))   # as the file holds it (NaN: null)
    before = {f: open(os.path.join(out, f), "rb").read() for f in os.listdir(out) if f != "summary.json"}
    assert B.main([out]) == 0
    again = json.load(open(os.path.join(out, "summary.json")))
    assert again["train_acc_final"] == pytest.approx(s["train_acc_final"], abs=1e-9)
    assert set(again) == set(s)
    assert {k: v for k, v in again.items() if k != "train_acc_final"} == older
    assert {f: open(os.path.join(out, f), "rb").read() for f in before} == before
    with open(os.path.join(str(tmp_path), "runs.csv"), newline="") as f:
        row = [r for r in csv.DictReader(f) if r["run"] == s["run"]]
    assert float(row[0]["train_acc_final"]) == pytest.approx(s["train_acc_final"], abs=1e-9)
    # a second pass, and a folder without weights, are left alone and said so
    assert B.main([out]) == 0 and "has train_acc_final already" in capsys.readouterr().out
    os.unlink(os.path.join(out, "model.pt"))
    assert B.main([out]) == 0 and "no finished run with its weights here" in capsys.readouterr().out
    assert B.main([]) == 2

"""The dynamics figure draws from the per-epoch frames it is given (reporting/load.py
run_frames), never from the run folders: a run that starts from another is shifted onto the
total-epoch axis, and its parent's metrics come from the same frames."""
import pandas as pd

from sparsecs.reporting import fig_dynamics as FD


def test_epochs_are_shifted_onto_the_total_budget_from_the_frames():
    # the folders do not exist: only the frames can give the numbers
    df = pd.DataFrame([
        {"run": "dense", "folder": "/nowhere/dense", "epochs": 4, "total_epochs": 4, "init_from": ""},
        {"run": "ft", "folder": "/nowhere/ft", "epochs": 4, "total_epochs": 8,
         "init_from": "results/runs/dense/model.pt"}])
    metrics = {"dense": pd.DataFrame({"epoch": [1, 2, 3, 4], "test_acc": [50.0, 60, 70, 80]}),
               "ft": pd.DataFrame({"epoch": [1, 2, 3, 4], "test_acc": [75.0, 78, 79, 81]})}
    point = {"runs": ["ft"]}
    (m,) = FD._epoch_metrics(df, point, metrics)
    assert list(m["epoch"]) == [5, 6, 7, 8]              # 8 total - 4 own = 4 epochs earlier
    assert list(m["test_acc"]) == [75.0, 78, 79, 81]
    assert list(metrics["ft"]["epoch"]) == [1, 2, 3, 4]   # the frame itself is left as it was
    (parent,) = FD._parent_metrics(df, point, metrics)
    assert list(parent["test_acc"]) == [50.0, 60, 70, 80]
    assert FD._parent_metrics(df, {"runs": ["dense"]}, metrics) == []

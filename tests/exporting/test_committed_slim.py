"""The committed slim exports of `fashion`'s structured runs (results/fashion/weights/<run>/
model.slim.pt, written by `python export.py --profile fashion`): what "structured savings are
what slim export removes" rests on. Each file must match its sha256 records, be the network its
run's summary.json describes (the multiply-adds torch's FlopCounterMode counts on it, an
independent measure, within 1% of the run's `macs_structural`, which the report's MACs levels
read), and, where Fashion-MNIST is on the machine, give the run's own per-image predictions
evaluated as the run was (so its test accuracy exactly; another CPU may differ at fp32 ties)."""
import glob
import hashlib
import json
import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sparsecs.exporting.slim import load_slim

from tests import REPO
from tests.exporting.test_committed_weights import fashion_data  # noqa: F401 (fixture)

WEIGHTS = os.path.join(REPO, "results", "fashion", "weights")
FILES = sorted(glob.glob(os.path.join(WEIGHTS, "*", "model.slim.pt")))


def run_of(file):
    return os.path.basename(os.path.dirname(file))


def _json(*parts):
    with open(os.path.join(*parts)) as f:
        return json.load(f)


def test_every_structured_run_of_the_profile_at_its_levels_is_exported():
    # export_macs_levels [0.5, 0.3, 0.2, 0.1] x (xRDA channel, filter pruning) x 3 seeds
    assert len(FILES) == 24
    from collections import Counter
    kinds = Counter((s["method"], s["mode"], s["calibration_target"])
                    for s in (_json(REPO, "results", "runs", run_of(f), "summary.json") for f in FILES))
    assert kinds == {(m, "channel", lv): 3 for m in ("filter_prune", "xrda") for lv in (0.5, 0.3, 0.2, 0.1)}


@pytest.mark.parametrize("file", FILES, ids=run_of)
def test_slim_file_is_its_record_and_its_run(file):
    sha = hashlib.sha256(open(file, "rb").read()).hexdigest()
    assert open(file + ".sha256").read() == f"{sha}  model.slim.pt\n"
    rec = _json(os.path.dirname(file), "export.json")["slim"]
    assert rec["sha256"] == sha and rec["bytes"] == os.path.getsize(file)
    summary = _json(REPO, "results", "runs", run_of(file), "summary.json")

    model = load_slim(file)
    assert sum(p.numel() for p in model.parameters()) == rec["params_after"] < rec["params_before"]
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    macs = fc.get_total_flops() / 2            # a multiply-add is two FLOPs to the counter
    assert macs == pytest.approx(summary["macs_structural"], rel=0.01)
    assert summary["macs_structural"] / summary["flops_dense"] == pytest.approx(rec["macs_fraction"], rel=0.01)
    assert rec["test_acc_export"] == summary["test_acc"]


@pytest.mark.parametrize("file", FILES, ids=run_of)
def test_slim_file_gives_the_runs_own_predictions(file, fashion_data):  # noqa: F811
    from sparsecs.exporting import accuracy as A

    run_dir = os.path.join(REPO, "results", "runs", run_of(file))
    cfg = A.run_config(run_dir, {})
    recorded = A.recorded_predictions(run_dir, 10_000)
    assert cfg["precision"] == "fp32" and recorded is not None
    # evaluated as the run was (its precision, memory format and eval batches of 500): with a
    # plain fp32 forward at batch 1,000, an AMD EPYC (AVX-512) scored one image of the xRDA
    # channel run at λ 8.49e-5 seed 1 differently from the Intel AMX CPU it trained on (72.96
    # against 72.95%); evaluated the run's way, all 24 give every one of its predictions there.
    # Another CPU's fp32 kernels may still sum in another order: a prediction may differ only
    # at a tie (export's own fp32 margin), and the accuracy only by those images.
    logits, y = A.test_logits(load_slim(file), fashion_data, cfg)
    pred = logits.argmax(1)
    differ = pred != torch.as_tensor(recorded)
    assert not (differ & ~A.ties(logits, A.MARGIN_RTOL["fp32"])).any()
    summary = _json(REPO, "results", "runs", run_of(file), "summary.json")
    acc = 100.0 * int((pred == y).sum()) / len(y)
    assert len(y) == 10_000 and acc == pytest.approx(summary["test_acc"], abs=0.01 * int(differ.sum()) + 1e-9)

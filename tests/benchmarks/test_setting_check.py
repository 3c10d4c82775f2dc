"""benchmarks/setting_check.py: the paired comparison of two settings, on hand-computed cases."""
import math

from benchmarks import setting_check as S


def _s(acc, seed=0):
    return {"test_acc": acc, "sparsity": 0.95, "train_seconds": 80.0, "epochs": 8,
            "dataset": "fashion_mnist", "seed": seed}


def test_paired_interval_by_hand():
    # old 90.0, 91.0, 92.0 (sd 1.0); differences +0.1, -0.2, +0.4: mean 0.1, sd 0.3,
    # 95% half-width t(0.975, 2) * 0.3 / sqrt(3) = 4.303 * 0.17321 = 0.7453
    ps = [(0, _s(90.0), _s(90.1)), (1, _s(91.0), _s(90.8)), (2, _s(92.0), _s(92.4))]
    lines, inside = S.describe("xrda", ps)
    text = "\n".join(lines)
    assert "paired difference new − old +0.10 pp, 95% interval [-0.65, +0.85]" in text
    assert "seed sd (old) 1.00 pp" in text
    # binomial sd of one run at 91%: sqrt(0.91 * 0.09 / 10000) = 0.286 pp
    assert "test-set sd 0.29 pp" in text
    assert inside   # |0.10| + 0.75 <= 1.00


def test_a_shift_beyond_seed_noise_is_not_called_within_it():
    ps = [(0, _s(90.0), _s(91.0)), (1, _s(90.2), _s(91.3)), (2, _s(90.4), _s(91.3))]
    _, inside = S.describe("sgd", ps)
    assert not inside   # mean +1.0 pp against a seed sd of 0.2


def test_pairs_match_configs_that_differ_only_in_the_setting():
    base = {"dataset": "fashion_mnist", "epochs": 8, "precision": "fp32", "channels_last": True,
            "compile": False, "optim": {"lam": 1e-4}, "identity": {"profile": "a"}}
    bf16 = {**base, "precision": "bf16", "identity": {"profile": "b"}}
    other_lam = {**bf16, "optim": {"lam": 2e-4}}
    old = {("xrda", 0): [(_s(90.0), base)]}
    new = {("xrda", 0): [(_s(90.5), bf16), (_s(80.0), other_lam)]}
    got = S.pairs(old, new, "xrda")
    assert [(seed, a["test_acc"], b["test_acc"]) for seed, a, b in got] == [(0, 90.0, 90.5)]
    assert math.isclose(S.T975[2], 4.303)

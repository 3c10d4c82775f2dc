"""The fashion_vgg16 and fashion_densenet profiles (issue 39): they expand, validate and
dry-run into an empty results folder with the runs and cost their YAML states; VGG-16 x0.25
builds for 1x28x28 with a hand-counted parameter count; and kernel sparsity alone leaves the
slim export's MACs where they were (why kernel mode is calibrated on the slim MACs)."""
import pytest
import torch

from sparsecs import final_eval
from sparsecs import models
import sweep
from sparsecs.sweeping.plan import spec_cfg

MACS = "macs_structural_fraction"


def _specs(name):
    return sweep.expand(sweep.find_profile(name))


def test_vgg16_x025_builds_for_fashion_mnist_with_the_hand_counted_parameters():
    m = models.get_model("vgg16", 10, 0.25, input_shape=(1, 28, 28)).eval()
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # channels 16 16 | 32 32 | 64 64 64 | 128 x 6: 3x3 convs, BN (2 per channel), Linear 128 -> 10
    conv = 9 * (1 * 16 + 16 * 16 + 16 * 32 + 32 * 32 + 32 * 64 + 64 * 64 + 64 * 64 + 64 * 128
                + 5 * 128 * 128)
    bn = 2 * (16 + 16 + 32 + 32 + 64 * 3 + 128 * 6)
    assert sum(p.numel() for p in m.parameters()) == conv + bn + 128 * 10 + 10 == 922_842


def test_fashion_vgg16_expands_to_its_entries_levels_and_setting():
    specs = _specs("fashion_vgg16")
    assert len(specs) == 66
    for s in specs:
        cfg = spec_cfg(s)
        assert (cfg["dataset"], cfg["model"], cfg["width"], cfg["epochs"], cfg["batch_size"]) == \
            ("fashion_mnist", "vgg16", 0.25, 8, 128)
        assert (cfg["precision"], cfg["channels_last"]) == ("bf16", True)
    by = {}
    for s in specs:
        by.setdefault(s.entry, []).append(s)
    assert list(by) == ["sgd", "xrda", "soft_threshold", "gmp", "rigl",
                        "xrda_kernel", "xrda_channel", "filter_prune"]
    assert sorted(s.seed for s in by["sgd"]) == [0, 1, 2]
    for e in ("gmp", "rigl"):
        assert sorted(s.point["optim.target"] for s in by[e]) == [0.95] * 3 + [0.98] * 3 + [0.99] * 3
    for e in ("xrda", "soft_threshold"):
        searches = [s.search for s in by[e] if s.search is not None]
        assert [x.level for x in searches] == pytest.approx([0.95, 0.98, 0.99])
        assert all(x.metric == "sparsity" for x in searches)
    modes = {"xrda_kernel": "kernel", "xrda_channel": "channel"}
    for e in ("xrda_kernel", "xrda_channel", "filter_prune"):
        searches = [s.search for s in by[e] if s.search is not None]
        assert [x.level for x in searches] == pytest.approx([0.5, 0.3, 0.2])
        assert all(x.metric == MACS for x in searches)
        assert len(by[e]) == 9
        if e in modes:
            assert all(spec_cfg(s)["optim"]["mode"] == modes[e] for s in by[e])


@pytest.mark.parametrize("name, runs, epochs, extra", [("fashion_vgg16", 66, 528, 480),
                                                       ("fashion_densenet", 21, 168, 192)])
def test_profile_dry_runs_into_an_empty_results_folder(tmp_path, capsys, name, runs, epochs, extra):
    assert sweep.main([name, "--dry-run", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert f"{runs} runs: 0 finished" in out
    # 3 seeds x 8 epochs a point; the searches' later rounds: up to 4 more of seed 0 each
    assert f"cost: {epochs} run-epochs to train" in out
    assert f"may add up to {extra} run-epochs" in out


def test_fashion_densenet_is_channel_mode_against_filter_pruning_on_macs():
    specs = _specs("fashion_densenet")
    assert {spec_cfg(s)["model"] for s in specs} == {"densenet40"}
    assert {spec_cfg(s)["width"] for s in specs} == {0.5}
    structured = [s for s in specs if s.entry != "sgd"]
    assert {s.entry for s in structured} == {"xrda_channel", "filter_prune"}
    assert all((s.search or s.after).metric == MACS for s in structured)


def test_scattered_zero_kernels_leave_the_slim_macs_unchanged():
    """Kernel mode's savings are not what slim export removes: every conv after the first keeps
    one kernel per filter (filter o reads input o mod C_in), so 15/16 to 127/128 of the kernels
    are zero, yet no filter is all zero and every input channel is still read: the slim MACs
    stay the dense model's. A whole zero filter does lower them."""
    torch.manual_seed(0)
    m = models.get_model("vgg16", 10, 0.25, input_shape=(1, 28, 28)).eval()
    dense = final_eval.structural_macs(m)
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    with torch.no_grad():
        for c in convs[1:]:
            keep = torch.zeros(c.weight.shape[:2], dtype=torch.bool)
            keep[torch.arange(c.out_channels), torch.arange(c.out_channels) % c.in_channels] = True
            c.weight[~keep] = 0
    assert final_eval.structural_macs(m) == dense
    with torch.no_grad():
        convs[1].weight[:8] = 0           # half the filters of conv 2 (16 -> 8)
    assert final_eval.structural_macs(m) < dense

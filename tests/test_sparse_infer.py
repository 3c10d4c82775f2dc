"""sparse_infer: every kernel against torch's dense conv / linear on random sparse layers of the
shapes the models use, the fall-back to dense without the optional kernels, and whole
networks (BatchNorm folded, ReLU fused) against the model they came from."""
import os
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsecs import models
from sparsecs import sparse_infer as S
from sparsecs import sparse_kernels as K

# (in, out, kernel, stride, padding, groups, input size): the layer shapes of models/
CONVS = {
    "stem 1->8 3x3": (1, 8, 3, 1, 1, 1, 28),
    "3x3 s1": (8, 8, 3, 1, 1, 1, 28),
    "3x3 s2": (8, 16, 3, 2, 1, 1, 28),
    "3x3 s2 odd": (16, 32, 3, 2, 1, 1, 7),
    "1x1 s1": (16, 24, 1, 1, 0, 1, 14),
    "1x1 s2 projection": (16, 32, 1, 2, 0, 1, 14),
    "depthwise 3x3 s1": (16, 16, 3, 1, 1, 16, 14),
    "depthwise 3x3 s2": (16, 16, 3, 2, 1, 16, 14),
    "7x7 s2 p3 (ResNet-50 stem)": (3, 8, 7, 2, 3, 1, 30),
}
SPARSITIES = (0.0, 0.5, 0.99)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


def sparse_(t, sparsity, gen):
    """Zero a random `sparsity` share of t's entries (at least one stays nonzero below 100%)."""
    with torch.no_grad():
        keep = torch.rand(t.shape, generator=gen) >= sparsity
        keep.view(-1)[0] = True
        t.mul_(keep)
    return t


def conv_layer(spec, sparsity, bias, seed=0):
    c_in, c_out, k, s, p, g, _ = spec
    gen = torch.Generator().manual_seed(seed)
    m = nn.Conv2d(c_in, c_out, k, s, p, groups=g, bias=bias)
    with torch.no_grad():
        m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
        if bias:
            m.bias.copy_(torch.randn(c_out, generator=gen))
    sparse_(m.weight, sparsity, gen)
    return m


def reference(m, x, relu):
    """torch's dense op, written out from the layer's parameters."""
    if isinstance(m, nn.Linear):
        y = F.linear(x, m.weight, m.bias)
    else:
        y = F.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)
    return F.relu(y) if relu else y


def assert_close(y, ref):
    assert y.shape == ref.shape
    tol = S.RTOL * max(1.0, float(ref.detach().abs().max()))
    assert float((y - ref).detach().abs().max()) <= tol


needs_direct = pytest.mark.skipif(K.direct_library() is None, reason="no C compiler here")


@needs_direct
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("name", list(CONVS))
def test_direct_conv_equals_dense_conv(name, sparsity, relu):
    spec = CONVS[name]
    m = conv_layer(spec, sparsity, bias=relu)        # with and without bias
    k = K.Direct(m, relu, K.direct_library())
    for batch in (1, 3):
        x = torch.randn(batch, spec[0], spec[6], spec[6], generator=torch.Generator().manual_seed(batch))
        assert_close(k(x), reference(m, x, relu))
        assert_close(k(x.contiguous(memory_format=torch.channels_last)), reference(m, x, relu))


@needs_direct
@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_direct_linear_equals_dense_linear(sparsity):
    gen = torch.Generator().manual_seed(1)
    m = nn.Linear(32, 10)
    sparse_(m.weight, sparsity, gen)
    x = torch.randn(5, 32, generator=gen)
    assert_close(K.Direct(m, False, K.direct_library())(x), reference(m, x, False))
    assert_close(K.CSRLinear(m, True)(x), reference(m, x, True))


@needs_direct
def test_direct_conv_of_an_all_zero_filter_is_its_bias():
    m = conv_layer(CONVS["3x3 s1"], 0.0, bias=True)
    with torch.no_grad():
        m.weight[2].zero_()
    y = K.Direct(m, False, K.direct_library())(torch.randn(2, 8, 28, 28))
    assert torch.equal(y[:, 2], m.bias[2].expand(2, 28, 28))


@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("name", [n for n, s in CONVS.items() if s[5] == 1 and s[3] in (1, 2)])
def test_sparseprop_conv_equals_dense_conv_at_a_batch_of_8(name, sparsity):
    mods = pytest.importorskip("sparseprop.modules")
    spec = CONVS[name]
    m = conv_layer(spec, sparsity, bias=True)
    x = torch.randn(8, spec[0], spec[6], spec[6], generator=torch.Generator().manual_seed(0))
    cands = K.candidates(m, relu=True, kernels=("sparseprop",))
    assert "sparseprop" in cands and mods is not None
    for k in cands.values():
        assert_close(k(x), reference(m, x, True))
        # strides other than NCHW (what its own permuted outputs are): read as values, not memory
        assert_close(k(x.contiguous(memory_format=torch.channels_last)), reference(m, x, True))


def test_sparseprop_wrong_at_batch_1_is_caught_by_the_output_check():
    """sparseprop 0.1.14's batch-vectorized conv needs batch % 8 == 0; build must notice."""
    pytest.importorskip("sparseprop.modules")
    m = nn.Sequential(conv_layer(CONVS["3x3 s2"], 0.9, bias=False)).eval()
    x = torch.randn(1, 8, 28, 28)
    cand = K.candidates(m[0], relu=False, kernels=("sparseprop",))["sparseprop"]
    if torch.allclose(cand(x), m(x), atol=1e-4):
        pytest.skip("this sparseprop computes batch 1 right")
    net = S.build(m, {1: x}, kernels=("sparseprop",), repeats=1, margin=float("inf"))
    assert net.plan[0]["wrong"] == ["sparseprop"] and net.plan[0]["kernel"] == "dense"
    assert_close(net(x), m(x))


# ----------------------------------------------------------------------------- fall-back

def _absent(monkeypatch, tmp_path, sparseprop=True, compiler=True):
    """Simulate a machine without sparseprop and / or without a C compiler."""
    monkeypatch.setattr(K, "_missing_said", set())
    monkeypatch.setattr(K, "_sparseprop", {})
    monkeypatch.setattr(K, "_lib", {})
    if sparseprop:
        monkeypatch.setitem(sys.modules, "sparseprop", None)        # import raises ImportError
        monkeypatch.setitem(sys.modules, "sparseprop.modules", None)
    if compiler:
        monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
        monkeypatch.setattr(K, "CACHE", str(tmp_path / "cache"))


def tiny_resnet(sparsity, seed=0):
    torch.manual_seed(seed)
    m = models.get_model("resnet20", width=0.5, input_shape=(1, 28, 28)).eval()
    gen = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            sparse_(mod.weight, sparsity, gen)
        if isinstance(mod, nn.BatchNorm2d):      # running stats and affine away from 0 / 1
            with torch.no_grad():
                mod.running_mean.uniform_(-0.5, 0.5, generator=gen)
                mod.running_var.uniform_(0.5, 2.0, generator=gen)
                mod.weight.uniform_(0.5, 1.5, generator=gen)
                mod.bias.uniform_(-0.2, 0.2, generator=gen)
    return m


def test_without_optional_kernels_every_conv_runs_dense_and_it_is_said_once(monkeypatch, tmp_path, capsys):
    _absent(monkeypatch, tmp_path)
    assert K.available() == {"dense": True, "direct": False, "sparseprop": False, "csr": True}
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "direct" in err[0] and "sparseprop" in err[1]
    assert "requirements-sparse.txt" in err[1]
    m = tiny_resnet(0.99)
    x = torch.randn(4, 1, 28, 28)
    net = S.build(m, {4: x}, repeats=1, margin=float("inf"))     # any working sparse kernel would win
    kernels = {p["layer"]: p["kernel"] for p in net.plan}
    assert all(k == "dense" for n, k in kernels.items() if n != "fc")
    assert kernels["fc"] in ("dense", "csr")                  # torch's own CSR needs nothing
    assert_close(net(x), m(x))
    S.build(m, {4: x}, repeats=1)
    assert capsys.readouterr().err == ""                      # said once, not per build


@needs_direct
def test_without_sparseprop_the_direct_kernel_still_runs(monkeypatch, tmp_path, capsys):
    _absent(monkeypatch, tmp_path, sparseprop=True, compiler=False)
    m = tiny_resnet(0.99)
    x = torch.randn(2, 1, 28, 28)
    net = S.build(m, {2: x}, repeats=1, margin=float("inf"))
    assert {p["kernel"] for p in net.plan if p["layer"] != "fc"} == {"direct"}
    assert capsys.readouterr().err.count("\n") == 1
    assert_close(net(x), m(x))


# ----------------------------------------------------------------------------- networks

@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_network_logits_equal_the_models_at_measured_and_unmeasured_batches(sparsity):
    m = tiny_resnet(sparsity)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(8, 1, 28, 28, generator=gen)
    net = S.build(m, {1: x[:1], 8: x}, repeats=1, margin=float("inf"))
    assert net.folded and not any(isinstance(q, nn.BatchNorm2d) for q in net.modules())
    for xb in (x[:1], x, x[:3]):                             # 3: not measured, runs dense
        d, tol = S.check(m, net, xb)
        assert d <= tol
    layers = [q for q in net.modules() if isinstance(q, S.SparseLayer)]
    assert len(layers) == 20 and sum(q.relu for q in layers) == 10   # stem + each block's conv1
    assert all(3 not in q.choice for q in layers)


def test_folding_keeps_the_zeros_where_they_were():
    m = tiny_resnet(0.9)
    net, folded = S.prepare(m)
    assert folded
    before = {n: q.weight == 0 for n, q in m.named_modules() if isinstance(q, nn.Conv2d)}
    after = {n: q.dense.weight == 0 for n, q in net.named_modules() if isinstance(q, S.SparseLayer)}
    for n, zero in before.items():         # BatchNorm scales are nonzero: no zero added or lost
        assert torch.equal(after[n], zero), n


@needs_direct
def test_depthwise_network_mobilenet():
    torch.manual_seed(0)
    m = models.get_model("mobilenet_v1", width=0.25, input_shape=(3, 32, 32)).eval()
    gen = torch.Generator().manual_seed(0)
    for q in m.modules():
        if isinstance(q, (nn.Conv2d, nn.Linear)):
            sparse_(q.weight, 0.9, gen)
    x = torch.randn(2, 3, 32, 32, generator=gen)
    net = S.build(m, {2: x}, kernels=("direct",), repeats=1, margin=float("inf"))
    dw = [p for p in net.plan if "groups" not in p and p["shape"][1] == 1 and p["shape"][2] == 3]
    assert dw and all(p["kernel"] == "direct" for p in dw)      # depthwise layers on the direct kernel
    d, tol = S.check(m, net, x)
    assert d <= tol


# ----------------------------------------------------------------------------- CLI, figure

def test_cli_bad_run_folder_is_one_line(tmp_path, capsys):
    assert S.main([str(tmp_path / "nope")]) == 2      # a missing path: usage, as train.py's
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such run folder" in err


def test_speedup_figure_from_a_benchmark_csv(tmp_path):
    from sparsecs.reporting import load, speedup_figure

    assert load.inference(str(tmp_path / "missing.csv")) is None
    assert speedup_figure.figure(None, str(tmp_path)) == []
    csv = tmp_path / "inference.csv"
    head = "run,model,sparsity,mac_ratio,threads,batch,variant,speedup,speedup_q1,speedup_q3,measured_at\n"
    rows = ["a,resnet20,0.98,40.0,1,1,dense,1,1,1,2026-01-01T00:00:00",
            "a,resnet20,0.98,40.0,1,1,sparse,1.5,1.4,1.6,2026-01-01T00:00:00",
            "a,resnet20,0.98,40.0,1,1,sparse,2.5,2.4,2.6,2026-01-02T00:00:00",   # the later one counts
            "a,resnet20,0.98,40.0,1,64,sparse,3.0,2.9,3.1,2026-01-02T00:00:00"]
    csv.write_text(head + "\n".join(rows) + "\n")
    df = load.inference(str(csv))
    assert sorted(zip(df["batch"], df["speedup"])) == [(1, 2.5), (64, 3.0)]
    paths = speedup_figure.figure(df, str(tmp_path / "fig"))
    assert [os.path.basename(p) for p in paths] == ["speedup_page.png", "speedup_page.pdf"]
    assert all(os.path.getsize(p) > 0 for p in paths)

import math

import pytest
import torch
import torch.nn as nn

from sparsecs import models


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", models.names())
@pytest.mark.parametrize("num_classes", [10, 100])
def test_forward_shape(name, num_classes):
    torch.manual_seed(0)
    m = models.get_model(name, num_classes=num_classes, width=0.25).eval()
    with torch.no_grad():
        y = m(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, num_classes)
    assert torch.isfinite(y).all()


# Exact counts at width 1, 10 classes. Conv layers have no bias (BatchNorm follows).
# CIFAR ResNets are option A; 1x1 projection shortcuts (option B) would add 2,752
# (e.g. resnet20 272,474), which this test is meant to catch.
EXACT = {
    "vgg11": 9_228_362,
    "vgg13": 9_413_066,
    "vgg16": 14_724_042,
    "vgg19": 20_035_018,
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "resnet18": 11_173_962,
    "densenet40": 1_059_298,
    "densenet_bc100": 769_162,
    # torchvision's 25,557,032 with a 10-class head: - 2048*990 - 990
    "resnet50": 23_528_522,
    # 4,231,976 at 1000 classes (BN included), with a 10-class head: - 1024*990 - 990
    "mobilenet_v1": 3_217_226,
    # as STR / LATS build them: the same, with a bias-free classifier (10 biases fewer)
    "resnet50_str": 23_528_512,
    "mobilenet_v1_str": 3_217_216,
}

# Published figures; 2% is loose enough for rounding, tight enough to catch a missing
# stage, a fifth pool, extra FC layers or a projection shortcut.
PUBLISHED = {
    "vgg16": 14.7e6, "vgg19": 20.0e6, "resnet20": 0.27e6, "resnet56": 0.85e6,
    "resnet110": 1.7e6, "resnet18": 11.2e6, "densenet40": 1.0e6, "densenet_bc100": 0.8e6,
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_param_count_exact(name):
    assert n_params(models.get_model(name)) == EXACT[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_param_count_published(name):
    tol = 0.07 if name.startswith("densenet") else 0.02  # papers round these to 1 digit
    assert abs(n_params(models.get_model(name)) / PUBLISHED[name] - 1) < tol


def test_registry_covers_exact_counts():
    assert set(EXACT) == set(models.names())


def test_width_scales_quadratically():
    ratio = n_params(models.get_model("resnet20", width=0.5)) / n_params(models.get_model("resnet20"))
    assert 0.2 < ratio < 0.3


# difflib breaks score ties by the larger string, so either near miss is a fair answer.
@pytest.mark.parametrize("bad, hints", [("resnet2", {"resnet20", "resnet32"}),
                                        ("vgg61", {"vgg16", "vgg19"})])
def test_unknown_name(bad, hints):
    with pytest.raises(ValueError) as e:
        models.get_model(bad)
    msg = str(e.value)
    assert "\n" not in msg and f"unknown model '{bad}'; known: " in msg
    assert any(msg.endswith(f"; did you mean '{h}'?") for h in hints), msg


def test_unknown_name_without_close_match():
    with pytest.raises(ValueError, match="known: densenet40") as e:
        models.get_model("zzzzzz")
    assert "did you mean" not in str(e.value)


@pytest.mark.parametrize("width", [0, -1.0, float("nan")])
def test_bad_width(width):
    with pytest.raises(ValueError, match="width"):
        models.get_model("resnet20", width=width)


def test_option_a_shortcut_has_no_parameters():
    m = models.get_model("resnet20")
    assert not any(c.kernel_size == (1, 1) for c in m.modules() if isinstance(c, nn.Conv2d))
    # 19 convs + 1 linear, each followed by BN except the linear: nothing else has weights.
    assert sum(isinstance(c, nn.Conv2d) for c in m.modules()) == 19


def test_vgg_init():
    torch.manual_seed(0)
    m = models.get_model("vgg16")
    fc = [c for c in m.modules() if isinstance(c, nn.Linear)]
    assert len(fc) == 1
    assert abs(fc[0].weight.std().item() - 0.01) < 0.001
    assert (fc[0].bias == 0).all()
    conv = [c for c in m.modules() if isinstance(c, nn.Conv2d)][-1]
    assert abs(conv.weight.std().item() - (2 / (9 * 512)) ** 0.5) < 0.001  # fan-in
    assert all((b.weight == 1).all() and (b.bias == 0).all()
               for b in m.modules() if isinstance(b, nn.BatchNorm2d))


def test_densenet_init():
    for name in ("densenet40", "densenet_bc100"):
        bns = [b for b in models.get_model(name, width=0.25).modules()
               if isinstance(b, nn.BatchNorm2d)]
        assert bns and all((b.weight == 0.5).all() and (b.bias == 0).all() for b in bns)


def test_channels_last_bf16_autocast():
    torch.manual_seed(0)
    m = models.get_model("resnet20", width=0.25).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    y.float().sum().backward()
    assert y.shape == (2, 10) and torch.isfinite(y.float()).all()


def test_compiles_without_graph_breaks():
    # fullgraph=True fails on any data-dependent Python control flow; the eager backend
    # keeps this to a Dynamo trace, no C++ compile. resnet20 has the most Python in its
    # forward (the option-A slice and pad); every model passed this check by hand.
    torch._dynamo.reset()
    m = models.get_model("resnet20", width=0.25).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(torch.compile(m, backend="eager", fullgraph=True)(x), m(x))


# ---- ImageNet models ------------------------------------------------------------------------

IMAGENET = ("resnet50", "mobilenet_v1", "resnet50_str", "mobilenet_v1_str")


def test_input_shapes():
    """A model's input_shape is the data set's when given; without one, only the ImageNet
    models have their own, and a probe of any other says so instead of guessing CIFAR's."""
    from sparsecs import data
    from sparsecs import metrics

    fashion = data.get("fashion_mnist").input_shape
    for name in models.names():
        m = models.get_model(name, width=0.25, input_shape=fashion)
        assert m.input_shape == fashion, name
        assert next(m.parameters()).shape[1] == fashion[0], name     # the stem reads 1 channel
        bare = models.get_model(name, width=0.25)
        if name in IMAGENET:
            assert bare.input_shape == (3, 224, 224), name
        else:
            assert not hasattr(bare, "input_shape"), name
            with pytest.raises(ValueError, match="no input_shape"):
                metrics.counts(bare)


def test_resnet50_is_torchvisions():
    import torchvision
    from sparsecs.models.resnet50 import ScaledResNet50

    tv = models.get_model("resnet50", num_classes=1000)
    assert type(tv) is torchvision.models.ResNet            # torchvision.models.resnet50 itself
    assert n_params(tv) == 25_557_032                       # torchvision's documented count
    # the scaled build at width 1 is the same network: same modules, same function
    s = ScaledResNet50(1000, 1.0)
    assert str(s).replace("ScaledResNet50", "ResNet") == str(tv)
    assert [(k, v.shape) for k, v in s.state_dict().items()] == [(k, v.shape) for k, v in tv.state_dict().items()]
    s.load_state_dict(tv.state_dict())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(s.eval()(x), tv.eval()(x), atol=1e-5)


def test_mobilenet_v1_structure():
    m = models.get_model("mobilenet_v1", num_classes=1000, width=0.25)
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert len(convs) == 27                     # 3x3 stem + 13 x (depthwise, pointwise)
    dw, pw = convs[1::2], convs[2::2]
    assert all(c.groups == c.in_channels == c.out_channels and c.kernel_size == (3, 3) for c in dw)
    assert all(c.groups == 1 and c.kernel_size == (1, 1) for c in pw)
    assert [c.stride[0] for c in convs[::2]] == [2] + [1] * 13 and [c.stride[0] for c in dw] == \
        [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert convs[0].out_channels == 8 and pw[-1].out_channels == 256     # 32α ... 1024α
    assert sum(isinstance(b, nn.BatchNorm2d) for b in m.modules()) == 27
    with torch.no_grad():
        assert m(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
        assert m.features(torch.zeros(1, 3, 224, 224)).shape == (1, 256, 7, 7)


@pytest.mark.parametrize("name", ["resnet50_str", "mobilenet_v1_str"])
def test_str_initialization_is_the_stated_rule(name):
    """Freshly built, every layer's weights have the spread the stated rule gives for its
    fan-in (docs/methods.md §4, models/resnet50.py, models/mobilenet.py): Kaiming normal
    std sqrt(2 / fan_in) for ResNet-50's convs and both classifiers; PyTorch's default
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), std 1/sqrt(3 fan_in), for MobileNet-V1's convs. The
    sample std of n draws is off by about sqrt((kurtosis - 1) / 4n) relatively (normal 3,
    uniform 1.8): each layer must be within 5 of those, its mean within 5 standard errors of 0."""
    torch.manual_seed(0)
    m = models.get_model(name, num_classes=1000)
    plain = models.get_model(name.removesuffix("_str"), num_classes=1000)
    assert n_params(plain) - n_params(m) == 1000 and m.fc.bias is None
    layers = [mod for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    assert len(layers) == (54 if name.startswith("resnet") else 28)
    fan_out_fits = 0
    for mod in layers:
        w = mod.weight.detach().double()
        n, fan_in = w.numel(), w[0].numel()            # fan-in: (in / groups) x kh x kw
        fan_out = w.shape[0] * w[0, 0].numel()
        uniform = name.startswith("mobilenet") and mod is not m.fc
        want, kurt = (1 / math.sqrt(3 * fan_in), 1.8) if uniform else (math.sqrt(2 / fan_in), 3.0)
        sd = w.std().item()
        assert abs(sd / want - 1) < 5 * math.sqrt((kurt - 1) / (4 * n)), (mod, sd, want)
        assert abs(w.mean().item()) < 5 * want / math.sqrt(n)
        if uniform:
            assert w.abs().max().item() <= 1 / math.sqrt(fan_in)
        assert mod.bias is None
        gain = 1 / math.sqrt(3) if uniform else math.sqrt(2)
        fan_out_fits += abs(sd / (gain / math.sqrt(fan_out)) - 1) < 5 * math.sqrt((kurt - 1) / (4 * n))
    # the fan-out rule (the default builds') does not describe these layers
    assert fan_out_fits < len(layers) / 2


@pytest.mark.parametrize("name, params, macs", [
    ("resnet50", 25.557e6, 4.09e9),       # torchvision: 25,557,032 params, 4.09 GMACs at 224
    ("mobilenet_v1", 4.2e6, 569e6),       # Howard et al. Table 4: 4.2M params, 569M mult-adds
])
def test_imagenet_published_counts(name, params, macs):
    from sparsecs import metrics

    m = models.get_model(name, num_classes=1000)
    assert abs(n_params(m) / params - 1) < 0.01
    c = metrics.counts(m)                 # probes at the model's input_shape, 224x224
    assert abs(c["flops_dense"] / macs - 1) < 0.01
    assert c["n_params"] == n_params(m)


def test_imagenet_width_scales_quadratically():
    for name in IMAGENET:
        ratio = n_params(models.get_model(name, width=0.5)) / n_params(models.get_model(name))
        assert 0.2 < ratio < 0.3, name


@pytest.mark.parametrize("name", IMAGENET)
@pytest.mark.parametrize("method, hp", [
    ("xrda", {"mode": "elementwise"}), ("xrda", {"mode": "kernel"}), ("xrda", {"mode": "channel"}),
    ("soft_threshold", {"final_threshold": 1e-3}), ("gmp", {}), ("filter_prune", {})])
def test_methods_step_on_imagenet_models(name, method, hp, one_thread):
    """Each method builds (shape probes at the model's 224x224), takes a step on 64x64 inputs
    and the exported weights count; gmp and filter_prune then prune to their targets."""
    from sparsecs import metrics
    from sparsecs.optim import get_method
    from sparsecs.optim.magnitude import conv_bn_pairs

    torch.manual_seed(0)
    model = models.get_model(name, num_classes=5, width=1 / 16).to(memory_format=torch.channels_last)
    cls = get_method(method)
    hp = {**cls.defaults, **hp}
    cls.validate(hp)
    meth = cls(model, hp, 2, 2)          # 2 epochs of 2 steps: a step size > 0 at step 1
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(2, 3, 64, 64).to(memory_format=torch.channels_last)
    meth.zero_grad()
    nn.functional.cross_entropy(model(x), torch.tensor([0, 3])).backward()
    meth.step()
    meth.end_epoch(0)
    meth.end_epoch(1)                      # gmp and filter_prune reach their targets here
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before))
    plain = models.get_model(name, num_classes=5, width=1 / 16)
    plain.load_state_dict(meth.export())
    c = metrics.counts(plain)
    rows = metrics.layer_table(plain)
    assert c["flops_dense"] == sum(r["flops_dense"] for r in rows) > 0
    if method == "gmp":
        assert abs(c["sparsity"] - 0.9) < 0.01
    if method == "filter_prune":
        assert sum(r["zero_filters"] for r in rows if r["type"] == "Conv2d") > 0
    convs = [m for m in plain.modules() if isinstance(m, nn.Conv2d)]
    assert len(conv_bn_pairs(plain, convs)) == sum(isinstance(b, nn.BatchNorm2d) for b in plain.modules())

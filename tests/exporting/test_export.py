"""export.py (slim, csr, dense), hubconf.sparse_model and the export CLI's errors.

Models are small (width 0.25 or less) with filters zeroed by hand and BatchNorms given
nonzero shifts and running statistics, so that a removed channel still passes a constant
that must be folded into the next layer for the logits to stay the same.
"""
import io
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import yaml

from sparsecs import data
import export
from sparsecs import fileio
from sparsecs import modelfile
from sparsecs import models
from sparsecs import paths

from tests import REPO

SHAPE = data.get("digits").input_shape       # what the models here are built for (make_run's data set)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def trained_like(name, width, seed=0, shape=SHAPE):
    """A model whose BatchNorms look trained: gamma in [0.5, 1.5], beta of either sign, running
    statistics away from (0, 1)."""
    torch.manual_seed(seed)
    m = models.get_model(name, num_classes=10, width=width, input_shape=shape).eval()
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.weight.data = torch.rand(c, generator=g) + 0.5
            mod.bias.data = torch.randn(c, generator=g) * 0.5 + 0.2
            mod.running_mean = torch.randn(c, generator=g) * 0.3
            mod.running_var = torch.rand(c, generator=g) + 0.5
    return m


def zero_filters(conv, idxs):
    with torch.no_grad():
        conv.weight[idxs] = 0


def bn_constant(bn, idxs):
    """What a BatchNorm passes on for a channel whose input is exactly zero."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (bn.bias - bn.running_mean * scale)[idxs]


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def out_channels(m):
    return {n: (mod.in_channels, mod.out_channels) for n, mod in m.named_modules()
            if isinstance(mod, nn.Conv2d)}


def assert_same_logits(a, b, n=6, seed=1):
    x = torch.randn(n, *a.input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ya, yb = a(x), b(x)
    tol = 1e-4 * max(1.0, float(ya.abs().max()))
    assert ya.shape == yb.shape
    assert float((ya - yb).abs().max()) <= tol


def without_fold(model, bns_and_channels):
    """A copy where the zeroed channels' BatchNorms pass 0 (what removal without folding
    computes); used to show that the fold is needed."""
    import copy
    m = copy.deepcopy(model)
    names = dict(m.named_modules())
    with torch.no_grad():
        for bn, idxs in bns_and_channels:
            b = names[bn]
            b.bias[idxs] = 0
            b.running_mean[idxs] = 0
    return m


def differs(a, b):
    x = torch.randn(4, *a.input_shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ya, yb = a(x), b(x)
    return float((ya - yb).abs().max()) > 1e-3 * max(1.0, float(ya.abs().max()))


# ----------------------------------------------------------------------------- slim

def vgg_params(chans, num_classes=10):
    """VGG-BN parameters from its conv widths: 3x3 convs without bias, BN (2 per channel), Linear."""
    total, c_in = 0, 3
    for c in chans:
        total += c * c_in * 9 + 2 * c
        c_in = c
    return total + c_in * num_classes + num_classes


def test_slim_vgg_removes_zero_filters_and_folds_their_constant():
    m = trained_like("vgg11", 0.25)
    convs = [n for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d)]
    assert convs == ["features.0", "features.4", "features.8", "features.11", "features.15",
                     "features.18", "features.22", "features.25"]
    names = dict(m.named_modules())
    zero_filters(names["features.4"], [1, 5, 7])          # followed by a max-pool
    zero_filters(names["features.11"], [0, 63])           # conv -> conv, no pool between
    zero_filters(names["features.25"], [2])               # the last conv, read by the Linear
    # the constants are not zero after ReLU, so a plain removal would change the logits
    assert (bn_constant(names["features.5"], [1, 5, 7]) > 0).any()
    assert differs(m, without_fold(m, [("features.5", [1, 5, 7]), ("features.12", [0, 63]),
                                       ("features.26", [2])]))

    slim = export.slim_model(m)
    assert_same_logits(m, slim)
    shapes = out_channels(slim)
    assert shapes["features.4"] == (16, 29) and shapes["features.8"] == (29, 64)
    assert shapes["features.11"] == (64, 62) and shapes["features.15"] == (62, 128)
    assert shapes["features.25"] == (128, 127)
    assert dict(slim.named_modules())["classifier"].in_features == 127
    assert n_params(m) == vgg_params([16, 32, 64, 64, 128, 128, 128, 128])
    # folds are buffers (or BatchNorm running means, or the Linear's bias): no new parameters
    assert n_params(slim) == vgg_params([16, 29, 64, 62, 128, 128, 128, 127])


def test_slim_vgg_removes_channels_no_layer_reads():
    m = trained_like("vgg11", 0.25)
    names = dict(m.named_modules())
    with torch.no_grad():
        names["features.11"].weight[:, [3, 9]] = 0       # inputs 3 and 9 of features.11 unread
    slim = export.slim_model(m)
    assert_same_logits(m, slim)
    assert out_channels(slim)["features.8"] == (32, 62)
    assert out_channels(slim)["features.11"] == (62, 64)


def test_slim_resnet_residual_branch_loses_filters():
    m = trained_like("resnet20", 0.25)                   # stages of 4, 8, 16 channels
    names = dict(m.named_modules())
    zero_filters(names["layers.1.conv1"], [0, 2])
    zero_filters(names["layers.7.conv1"], [5])
    assert differs(m, without_fold(m, [("layers.1.bn1", [0, 2]), ("layers.7.bn1", [5])]))
    before = out_channels(m)

    slim = export.slim_model(m)
    assert_same_logits(m, slim)
    after = out_channels(slim)
    assert after["layers.1.conv1"] == (4, 2) and after["layers.1.conv2"] == (2, 4)
    assert after["layers.7.conv1"] == (16, 15) and after["layers.7.conv2"] == (15, 16)
    changed = {"layers.1.conv1", "layers.1.conv2", "layers.7.conv1", "layers.7.conv2"}
    assert {n: s for n, s in after.items() if n not in changed} == \
           {n: s for n, s in before.items() if n not in changed}
    removed = (2 * 4 * 9 + 2 * 2 + 4 * 2 * 9) + (1 * 16 * 9 + 2 + 16 * 1 * 9)
    # the folds of padded 3x3 convs are buffers, not parameters; both forms are exercised here:
    # a one-channel kernel convolved with ones (map larger than the layer's weights) and a map
    assert n_params(slim) == n_params(m) - removed
    folds = {n for n, _ in slim.named_buffers() if "fold" in n}
    assert folds == {"layers_1_conv2_fold_kernel", "layers_7_conv2_fold"}


def test_slim_resnet_option_a_stream_only_what_is_constant():
    m = trained_like("resnet20", 0.25)
    names = dict(m.named_modules())
    # stage 1, channel 1: stem and every block's conv2 write nothing -> a constant, removable
    zero_filters(names["stem.0"], [1])
    for b in range(3):
        zero_filters(names[f"layers.{b}.conv2"], [1])
    # stage 1, channel 2: only one block's conv2 is zero -> still carries the input, stays
    zero_filters(names["layers.0.conv2"], [2])
    # stage 2 (8 channels, the option-A shortcut pads channels 0, 1, 6, 7 with zeros):
    # channel 0 is zero in the shortcut and in every conv2 -> removable;
    # channel 4 is stage-1 channel 2 through the shortcut -> stays although every conv2 is zero
    for b in range(3, 6):
        zero_filters(names[f"layers.{b}.conv2"], [0, 4])

    slim = export.slim_model(m)
    assert_same_logits(m, slim)
    s = out_channels(slim)
    assert s["stem.0"] == (3, 3)
    for b in range(3):
        assert s[f"layers.{b}.conv1"] == (3, 4) and s[f"layers.{b}.conv2"] == (4, 3)
    assert s["layers.3.conv1"] == (3, 8)                 # reads stage 1 (3 channels left)
    for b in range(3, 6):
        assert s[f"layers.{b}.conv2"] == (8, 7)
    assert s["layers.4.conv1"] == (7, 8) and s["layers.6.conv1"] == (7, 16)
    for b in range(6, 9):
        assert s[f"layers.{b}.conv2"] == (16, 16)


def test_slim_resnet18_projection_shortcut():
    m = trained_like("resnet18", 0.125)                  # stages of 8, 16, 32, 64 channels
    names = dict(m.named_modules())
    zero_filters(names["layers.2.conv1"], [3])
    # last stage, channel 7: block 6's conv2 and projection and block 7's conv2 all zero
    for n in ("layers.6.conv2", "layers.6.shortcut.0", "layers.7.conv2"):
        zero_filters(names[n], [7])
    # stage 2, channel 5: read by block 4's 1x1 stride-2 projection, then its BatchNorm
    for n in ("layers.2.conv2", "layers.2.shortcut.0", "layers.3.conv2"):
        zero_filters(names[n], [5])
    stream = {}
    names["layers.4"].register_forward_pre_hook(lambda mod, i: stream.__setitem__("x", i[0]))
    with torch.no_grad():
        m(torch.randn(2, *SHAPE))
    v = stream["x"][:, 5]
    assert torch.equal(v, v[:1, :1, :1].expand_as(v)) and float(v[0, 0, 0]) > 0   # a constant
    proj, proj_bn = names["layers.4.shortcut.0"], names["layers.4.shortcut.1"]
    expected_mean = proj_bn.running_mean - proj.weight[:, 5, 0, 0].detach() * v[0, 0, 0]

    slim = export.slim_model(m)
    assert_same_logits(m, slim)
    s = out_channels(slim)
    assert s["layers.2.conv1"] == (8, 15) and s["layers.2.conv2"] == (15, 15)
    assert s["layers.2.shortcut.0"] == (8, 15)
    assert s["layers.3.conv1"] == (15, 16) and s["layers.3.conv2"] == (16, 15)
    assert s["layers.4.shortcut.0"] == (15, 32) and s["layers.4.conv1"] == (15, 32)
    # a 1x1 conv without padding reads the constant the same everywhere: it is folded into the
    # next BatchNorm's running mean, no bias added
    sm = dict(slim.named_modules())
    assert sm["layers.4.shortcut.0"].bias is None
    assert torch.allclose(sm["layers.4.shortcut.1"].running_mean, expected_mean, atol=1e-6)
    assert s["layers.6.conv2"] == (64, 63) and s["layers.6.shortcut.0"] == (32, 63)
    assert s["layers.7.conv1"] == (63, 64) and s["layers.7.conv2"] == (64, 63)
    assert dict(slim.named_modules())["fc"].in_features == 63


def test_slim_densenet_channel_inside_a_dense_block():
    m = trained_like("densenet40", 0.25)                 # growth 3, 6 channels after the stem
    names = dict(m.named_modules())
    # features.1..12: block 1; features.3 appends stream channels 12..14
    zero_filters(names["features.3.body.2"], [1])
    zero_filters(names["features.15"], [5])              # transition 1 (42 -> 42, 1x1)
    zero_filters(names["features.44.body.2"], [0])       # the last layer, read by BN -> fc
    assert differs(m, without_fold(m, [("features.4.body.0", [13])]))

    slim = export.slim_model(m)
    assert_same_logits(m, slim)
    mods = dict(slim.named_modules())
    assert mods["features.3.body.2"].out_channels == 2
    for k in range(1, 13):                               # block 1 layer k reads 6 + 3(k-1) channels
        c = 6 + 3 * (k - 1) - (1 if k >= 4 else 0)
        assert mods[f"features.{k}.body.0"].num_features == c
        assert mods[f"features.{k}.body.2"].in_channels == c
    assert mods["features.13"].num_features == 41 and mods["features.15"].in_channels == 41
    assert mods["features.15"].out_channels == 41
    assert mods["features.17.body.2"].in_channels == 41
    assert mods["features.45"].num_features == mods["fc"].in_features == 113
    assert n_params(slim) < n_params(m)


def test_slim_file_loads_without_the_repository(tmp_path):
    m = trained_like("resnet20", 0.25)
    zero_filters(dict(m.named_modules())["layers.0.conv1"], [1])
    slim = export.slim_model(m)
    torch.save(slim, tmp_path / "slim.pt")
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    torch.save({"x": x, "y": m(x).detach()}, tmp_path / "xy.pt")
    for fake in ("sparsecs", "models", "export", "exporting", "paths", "modelfile", "torch_pruning"):  # any import fails
        (tmp_path / f"{fake}.py").write_text("raise ImportError('repository code used')\n")
    code = ("import torch; "
            "m = torch.load('slim.pt', weights_only=False); d = torch.load('xy.pt'); "
            "torch.set_grad_enabled(False); "
            "print(float((m(d['x']) - d['y']).abs().max()))")
    # -E -s: no PYTHONPATH, no user site; -c puts the folder of fakes first on sys.path
    r = subprocess.run([sys.executable, "-E", "-s", "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) < 1e-4


# ----------------------------------------------------------------------------- csr

def test_csr_round_trip_is_exact():
    m = trained_like("vgg11", 0.25)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, mod in m.named_modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                # a bitmask costs 1/8 byte an entry, CSR 6 bytes a nonzero: CSR wins above 93.75%
                p = 0.5 if n == "features.4" else 0.97
                mod.weight[torch.rand(mod.weight.shape, generator=g) < p] = 0
    saved = {"model": "vgg11", "width": 0.25, "num_classes": 10, "dataset": "digits",
             "state_dict": m.state_dict()}
    obj = export.csr_file(saved)
    kinds = {e["name"]: e["kind"] for e in obj["weights"]["tensors"]}
    assert kinds["features.8.weight"] == "csr" and kinds["features.4.weight"] == "mask"
    assert kinds["features.1.bias"] == "dense"
    buf = io.BytesIO()
    torch.save(obj, buf)
    dense = io.BytesIO()
    torch.save(saved, dense)
    assert len(buf.getvalue()) < 0.25 * len(dense.getvalue())
    back = export.load_csr(io.BytesIO(buf.getvalue()))
    sd, sd2 = m.state_dict(), back.state_dict()
    assert list(sd) == list(sd2)
    for k in sd:
        assert sd[k].dtype == sd2[k].dtype and torch.equal(sd[k], sd2[k]), k
    assert not back.training


# ----------------------------------------------------------------------------- run folders

def make_run(path, model, name, width, dataset="digits"):
    """A finished run folder without training: model.pt, summary.json, config.yaml."""
    cfg = {"dataset": dataset, "model": name, "width": width, "data_dir": "data"}
    path.mkdir(parents=True)
    fileio.save_torch(modelfile.model_file(cfg, 10, model.state_dict()), path / paths.MODEL)
    fileio.save_json({"run": path.name, "dataset": dataset, "model": name, "width": width,
                    "method": "xrda", "mode": "channel"}, path / paths.SUMMARY)
    (path / paths.CONFIG).write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def run_dir(tmp_path):
    m = trained_like("vgg11", 0.25)
    names = dict(m.named_modules())
    zero_filters(names["features.4"], list(range(0, 32, 2)))
    with torch.no_grad():
        w = names["features.18"].weight
        w[torch.rand(w.shape, generator=torch.Generator().manual_seed(0)) < 0.9] = 0
    return make_run(tmp_path / "run", m, "vgg11", 0.25)


def test_hub_load_from_another_directory(run_dir, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    model = torch.hub.load(REPO, "sparse_model", run="../run", source="local")
    saved = torch.load(run_dir / paths.MODEL, weights_only=True)
    assert not model.training
    sd = model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in saved["state_dict"].items())
    assert int((sd["features.4.weight"].flatten(1).abs().sum(1) == 0).sum()) == 16

    from hubconf import sparse_model
    assert torch.equal(sparse_model(str(run_dir)).state_dict()["features.4.weight"],
                       saved["state_dict"]["features.4.weight"])

    # a caller with modules of its own named `models` and `paths` gets ours, and keeps its own
    import types
    theirs = {n: types.ModuleType(n) for n in ("models", "paths")}
    for n, mod in theirs.items():
        mod.__file__ = str(elsewhere / f"{n}.py")
        monkeypatch.setitem(sys.modules, n, mod)
    model = torch.hub.load(REPO, "sparse_model", run=str(run_dir), source="local")
    assert type(model).__module__ == "sparsecs.models.vgg"
    assert all(sys.modules[n] is mod for n, mod in theirs.items())


def test_hub_missing_or_unfinished_run_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / paths.CONFIG).write_text("model: vgg11\n")
    for run, words in (("nope", "no such run"), ("unfinished", "not finished")):
        with pytest.raises(paths.RunFolderError) as e:
            torch.hub.load(REPO, "sparse_model", run=run, source="local")
        assert words in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- export CLI

def test_export_all_formats_check_and_record(run_dir, capsys):
    sizes = {}
    for fmt in ("dense", "csr", "slim"):
        assert export.main([str(run_dir), "--format", fmt, "--batch", "64"]) == 0
        out = capsys.readouterr().out
        assert "bytes (dense" in out
        sizes[fmt] = os.path.getsize(run_dir / export.DEFAULT_OUT[fmt])
    facts = json.loads((run_dir / export.EXPORT_JSON).read_text())
    assert set(facts) == {"dense", "csr", "slim"}                 # merged, one key per format
    for fmt, f in facts.items():
        assert f["bytes"] == sizes[fmt] and f["dense_bytes"] == sizes["dense"]
        assert f["max_logit_diff"] <= f["tolerance"] and f["test_images"] == 64
    assert facts["csr"]["max_logit_diff"] == 0.0 and facts["dense"]["max_logit_diff"] == 0.0
    assert facts["slim"]["channels"]["features.4"] == [32, 16]
    assert facts["slim"]["params_after"] < facts["slim"]["params_before"]
    assert sizes["slim"] < sizes["dense"] and sizes["csr"] < sizes["dense"]
    slim = export.load_slim(run_dir / export.DEFAULT_OUT["slim"])
    assert_same_logits(modelfile.load_model(str(run_dir)), slim)


def one_error_line(capsys, rc, expected_rc=1):
    err = capsys.readouterr().err
    assert rc == expected_rc
    assert err.count("\n") == 1 and err.startswith("export.py: error:"), err
    return err


def test_export_cli_bad_inputs(run_dir, tmp_path, capsys):
    # a missing path is a usage error, 2, as train.py's missing config (issue 37)
    err = one_error_line(capsys, export.main([str(tmp_path / "missing"), "--format", "slim"]), 2)
    assert "no such run folder" in err
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / paths.CONFIG).write_text("model: vgg11\n")
    err = one_error_line(capsys, export.main([str(tmp_path / "half"), "--format", "csr"]))
    assert "not finished" in err
    err = one_error_line(capsys, export.main([str(run_dir), "--format", "dense", "--out", str(tmp_path)]))
    assert "folder" in err
    with pytest.raises(SystemExit) as e:
        export.main([str(run_dir), "--format", "zip"])
    assert "invalid choice" in one_error_line(capsys, e.value.code, 2)
    assert not (run_dir / export.EXPORT_JSON).exists()


def test_export_failed_check_writes_nothing(run_dir, capsys, monkeypatch):
    real = export.slim_report

    def broken(model):
        gm, skipped = real(model)
        with torch.no_grad():
            dict(gm.named_modules())["classifier"].bias.add_(1.0)
        return gm, skipped

    monkeypatch.setattr(export, "slim_report", broken)
    err = one_error_line(capsys, export.main([str(run_dir), "--format", "slim", "--batch", "32"]))
    assert "changed the logits" in err
    assert not (run_dir / export.DEFAULT_OUT["slim"]).exists()
    assert not (run_dir / export.EXPORT_JSON).exists()


def test_export_cli_process_exit_codes(run_dir, tmp_path):
    ok = subprocess.run([sys.executable, "export.py", str(run_dir), "--format", "csr", "--batch", "32"],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "export.py", str(tmp_path / "nope"), "--format", "slim"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


# ----------------------------------------------------------------------------- measure, tabulate

def test_inference_benchmark_and_savings_table(run_dir, tmp_path, capsys):
    from benchmarks import bench_inference
    from sparsecs.reporting import savings

    for fmt in ("slim", "csr"):
        export.export(str(run_dir), fmt, batch=16)
    threads = torch.get_num_threads()
    assert bench_inference.main([str(run_dir), "--repeats", "5", "--batch", "8", "--layer-repeats", "1",
                                 "--batch-repeats", "5", "--warmup", "1"]) == 0
    torch.set_num_threads(threads)
    assert "theoretical speed-up" in capsys.readouterr().out
    inf = json.loads((run_dir / bench_inference.INFERENCE_JSON).read_text())
    assert set(inf["latency_b1_ms"]) == {"dense", "folded", "slim", "sparse", "slim+sparse"}
    assert inf["threads"] == 1 and inf["batch"] == 8
    assert all(d <= 1e-4 * 10 for d in inf["max_logit_diff"].values())

    (tmp_path / "bare").mkdir()
    rows = savings.table([str(run_dir), str(tmp_path / "bare")])
    assert len(rows) == 1
    r = rows[0]
    assert list(r) == list(savings.COLUMNS)
    facts = json.loads((run_dir / export.EXPORT_JSON).read_text())
    assert (r["run"], r["model"], r["method"], r["mode"]) == ("run", "vgg11", "xrda", "channel")
    assert r["slim_bytes"] == os.path.getsize(run_dir / "model.slim.pt") == facts["slim"]["bytes"]
    assert r["csr_bytes"] == facts["csr"]["bytes"] and r["dense_bytes"] == facts["csr"]["dense_bytes"]
    assert r["theoretical_speedup"] == pytest.approx(inf["flops_dense"] / inf["flops_nonzero"])
    assert r["theoretical_speedup"] > 1
    assert r["slim_speedup_b1"] == inf["speedup_b1"]["slim"]
    assert r["slim_speedup_b64"] is None and r["sparse_speedup_b64"] is None    # ran at batch 8


def test_slim_at_the_data_sets_own_shape():
    """A model built for Fashion-MNIST (the registry's 1x28x28) is probed and folded at that
    shape: a padded conv reading a zero filter's constant gets a map of 28x28, not a guess."""
    shape = data.get("fashion_mnist").input_shape
    m = trained_like("resnet20", 0.25, shape=shape)
    zero_filters(dict(m.named_modules())["layers.0.conv1"], [1, 2])
    slim = export.slim_model(m)
    assert slim.input_shape == shape == m.input_shape
    assert_same_logits(m, slim)
    maps = [b for n, b in slim.named_buffers() if n.endswith("_fold")]
    assert all(tuple(b.shape[-2:]) == shape[1:] for b in maps)


def test_a_model_without_an_input_shape_is_a_clear_error():
    m = models.get_model("vgg11", num_classes=10, width=0.25)     # no data set given
    assert not hasattr(m, "input_shape")
    with pytest.raises(ValueError, match="has no input_shape.*data.get"):
        export.slim_model(m)
    with pytest.raises(data.DataError, match="unknown data set 'mnist9'"):
        models.from_saved({"model": "vgg11", "num_classes": 10, "width": 0.25, "dataset": "mnist9"})


# ----------------------------------------------------------------------------- checksums

def tamper(path):
    """Change one byte of `path` in place (same size): a different, equally long file."""
    blob = bytearray(open(path, "rb").read())
    i = len(blob) // 2
    blob[i] ^= 0x01
    open(path, "wb").write(bytes(blob))
    return len(blob)


def test_every_export_records_its_sha256(run_dir, capsys):
    import hashlib
    import shutil

    facts = {fmt: export.export(str(run_dir), fmt, batch=16) for fmt in export.FORMATS}
    for fmt in export.FORMATS:
        f = run_dir / export.DEFAULT_OUT[fmt]
        want = hashlib.sha256(f.read_bytes()).hexdigest()
        side = run_dir / (export.DEFAULT_OUT[fmt] + export.SHA_SUFFIX)
        assert side.read_text() == f"{want}  {f.name}\n"               # sha256sum's own format
        assert facts[fmt]["sha256"] == want
        assert json.loads((run_dir / export.EXPORT_JSON).read_text())[fmt]["sha256"] == want
        if shutil.which("sha256sum"):                                  # the standard tool agrees
            r = subprocess.run(["sha256sum", "-c", side.name], cwd=run_dir, capture_output=True, text=True)
            assert r.returncode == 0 and r.stdout.strip() == f"{f.name}: OK", r.stdout + r.stderr
    files = [str(run_dir / export.DEFAULT_OUT[fmt]) for fmt in export.FORMATS]
    assert export.main(["--check", *files]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": ok (")[1].split()[0] for line in out] == list(export.FORMATS)
    # read_csr gives back model.pt's state dict exactly, in its order (for other inference code)
    saved = torch.load(run_dir / paths.MODEL, weights_only=True)
    back = export.read_csr(run_dir / "model.csr.pt")
    assert {k: back[k] for k in ("model", "width", "num_classes", "dataset")} == \
        {k: saved[k] for k in ("model", "width", "num_classes", "dataset")}
    assert list(back["state_dict"]) == list(saved["state_dict"])
    assert all(torch.equal(back["state_dict"][k], v) for k, v in saved["state_dict"].items())


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_an_export_altered_at_the_same_size_is_refused_in_one_line(run_dir, capsys, fmt):
    export.export(str(run_dir), fmt, batch=16)
    f = run_dir / export.DEFAULT_OUT[fmt]
    size = os.path.getsize(f)
    assert tamper(f) == size == os.path.getsize(f)
    load = {"slim": export.load_slim, "csr": export.load_csr, "dense": export.load_dense}[fmt]
    with pytest.raises(export.ExportError) as e:
        load(f)
    msg = str(e.value)
    assert "\n" not in msg and str(f) in msg and "altered or damaged (its sha256" in msg
    if fmt == "csr":
        with pytest.raises(export.ExportError, match="its sha256"):
            export.read_csr(str(f))
    before = f.read_bytes()
    err = one_error_line(capsys, export.main(["--check", str(f)]))
    assert "altered or damaged" in err and "export the run again" in err
    assert f.read_bytes() == before                                  # checking changes nothing
    # exporting again writes a file that matches its record
    export.export(str(run_dir), fmt, batch=16)
    assert export.main(["--check", str(f)]) == 0


def test_check_without_a_record_or_file_and_bad_usage(run_dir, tmp_path, capsys):
    export.export(str(run_dir), "dense", batch=16)
    f = run_dir / export.DEFAULT_OUT["dense"]
    os.unlink(str(f) + export.SHA_SUFFIX)
    # no record beside it: checked against the checksum inside it (issue 36)
    assert export.load_dense(f).training is False
    assert export.main(["--check", str(f)]) == 0
    capsys.readouterr()
    saved = torch.load(f, weights_only=True)
    del saved["content_sha256"]
    torch.save(saved, f)
    os.unlink(run_dir / export.EXPORT_JSON)       # no record anywhere: never read unchecked
    with pytest.raises(export.ExportError, match="no checksum to check it against"):
        export.load_dense(f)
    err = one_error_line(capsys, export.main(["--check", str(f)]))
    assert "no checksum to check it against" in err
    err = one_error_line(capsys, export.main(["--check", str(tmp_path / "none.pt")]))
    assert "no such export file" in err
    (tmp_path / "bad.pt").write_bytes(b"x" * 10)
    (tmp_path / "bad.pt.sha256").write_text("not-a-sha  bad.pt\n")
    err = one_error_line(capsys, export.main(["--check", str(tmp_path / "bad.pt")]))
    assert "not a sha256 record" in err
    for argv in (["--check", str(f), "--format", "csr"], [str(run_dir)]):
        with pytest.raises(SystemExit) as e:
            export.main(argv)
        one_error_line(capsys, e.value.code, 2)


def test_export_out_elsewhere_records_beside_it(run_dir, tmp_path):
    out = tmp_path / "deploy" / "net.pt"
    f = export.export(str(run_dir), "csr", out=str(out), batch=16)
    assert (tmp_path / "deploy" / "net.pt.sha256").read_text().startswith(f["sha256"] + "  net.pt")
    assert export.load_csr(out).state_dict().keys() == modelfile.load_model(str(run_dir)).state_dict().keys()

import re
import subprocess
import sys

import pytest

from sparsecs import config as C
import train


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_defaults_overrides_and_inherit(tmp_path):
    write(tmp_path, "dataset: digits\nepochs: 5\noptim: {lr: 0.05, momentum: 0.8}\n", "base.yaml")
    path = write(tmp_path, "inherit: base.yaml\nmodel: vgg16\noptim: {momentum: 0.7}\n")
    cfg = C.build(path, ["epochs=2", "optim.lr=1e-3", "width=0.5", "optim.schedule=step"])
    assert cfg["model"] == "vgg16" and cfg["epochs"] == 2 and cfg["width"] == 0.5
    # deep merge: lr from the override, momentum from the child, nesterov from the method default
    assert cfg["optim"]["lr"] == 1e-3 and isinstance(cfg["optim"]["lr"], float)
    assert cfg["optim"]["momentum"] == 0.7 and cfg["optim"]["nesterov"] is False
    assert cfg["optim"]["schedule"] == "step"
    assert cfg["batch_size"] == C.DEFAULTS["batch_size"]


def test_hash_and_name_depend_on_what_matters(tmp_path):
    a = C.build(None, ["model=resnet20", "seed=1"])
    b = C.build(None, ["model=resnet20", "seed=1", "data_dir=/elsewhere"])
    c = C.build(None, ["model=resnet20", "seed=2"])
    assert C.config_hash(a) == C.config_hash(b) != C.config_hash(c)
    assert C.run_name(a).startswith("digits-resnet20-sgd-s1-")
    assert C.run_name(C.build(None, ["width=0.5"])).startswith("digits-resnet20-w0.5-sgd-s0-")


@pytest.mark.parametrize("overrides, message", [
    (["epoch=3"], "unknown config key 'epoch' (did you mean 'epochs'?)"),
    (["optim.lrr=0.1"], "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
    (["epochs=two"], "config key 'epochs' must be int, got 'two'"),
    (["epochs=0"], "config key 'epochs' must be > 0, got 0"),
    (["augment=3"], "config key 'augment' must be bool, got 3"),
    (["device=tpu"], "config key 'device' must be one of auto, cpu, cuda, got 'tpu'"),
    (["optim.schedule=linear"], "config key 'optim.schedule' must be one of cosine, step, constant"),
    (["model=resnet21"], "unknown model 'resnet21'"),
    (["method=sgdd"], "unknown method 'sgdd'"),
    (["dataset=mnist"], "unknown dataset 'mnist'"),
    (["optim.lr=-1"], "config key 'optim.lr' must be > 0, got -1.0"),
    (["epochs"], "override 'epochs' is not KEY=VALUE"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, capsys, overrides, message):
    path = write(tmp_path, "epochs: 1\n")
    code = train.main([path, *overrides, "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("config error: ") and message in err
    assert not (tmp_path / "r").exists()  # nothing written


def test_bad_yaml_and_missing_file(tmp_path, capsys):
    assert train.main([str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read config" in capsys.readouterr().err
    path = write(tmp_path, "epochs: [1\n")
    assert train.main([path]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and err.count("\n") == 1


def test_cli_exit_code_in_a_real_process(tmp_path):
    path = write(tmp_path, "modell: vgg16\n")
    p = subprocess.run([sys.executable, "train.py", path], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip() == "config error: unknown config key 'modell' (did you mean 'model'?)"


@pytest.mark.parametrize("override, message", [
    ("width=nan", "'width' must be a finite number"),
    ("width=inf", "'width' must be a finite number"),
    ("optim.lr=nan", "'optim.lr' must be a finite number"),
    ("optim.lr=inf", "'optim.lr' must be a finite number"),
    ("optim.lr=0", "'optim.lr' must be > 0"),
    ("optim.weight_decay=nan", "'optim.weight_decay' must be a finite number"),
    ("optim.weight_decay=-1", "'optim.weight_decay' must be >= 0"),
    ("optim.momentum=1.5", "'optim.momentum' must be in [0, 1)"),
    ("optim.momentum=-1", "'optim.momentum' must be in [0, 1)"),
    ("optim.gamma=-1", "'optim.gamma' must be in (0, 1]"),
])
def test_values_that_cannot_train_are_refused(override, message):
    with pytest.raises(C.ConfigError, match=re.escape(message)):
        C.build(None, ["method=sgd", override])


def test_the_same_checks_serve_every_method():
    for method, bad in (("xrda", "optim.lam=-1e-3"), ("xrda", "optim.max_factor=0.5"),
                        ("gmp", "optim.target=1.5"), ("soft_threshold", "optim.lr=inf"),
                        ("xrda", "optim.milestones=[0, 3]")):
        with pytest.raises(C.ConfigError, match="must be"):
            C.build(None, [f"method={method}", bad])


@pytest.mark.parametrize("content, message", [
    (b"", "empty config file"),
    (b"method: sgd\nepochs: 2\nepochs: 3\n", "given twice"),
    (bytes(range(256)) * 2, "not a text file"),
])
def test_empty_duplicated_or_binary_config_files(tmp_path, content, message):
    p = tmp_path / "c.yaml"
    p.write_bytes(content)
    with pytest.raises(C.ConfigError, match=message):
        C.load_yaml(str(p))

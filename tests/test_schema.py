"""schema.py: every config key declared once. One message per bad value from every entry
point, the same checks for every method, run names and hashes as before, and README tables
that are generated, not written."""
import glob
import json
import os
import subprocess
import sys

import pytest

from sparsecs import config as C
from sparsecs import schema
import sweep
import train
from sparsecs.optim import METHODS

from tests import REPO
from scripts import readme_tables

SGD_YAML = os.path.join(REPO, "configs", "quick", "sgd.yaml")

# one bad value of each kind, and the one line every entry point must say about it
CASES = {
    "type": ("epochs=two", "config key 'epochs' must be int, got 'two'"),
    "range": ("optim.momentum=1.5", "config key 'optim.momentum' must be in [0, 1), got 1.5"),
    "unknown": ("optim.lrr=0.1", "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
}


@pytest.mark.parametrize("case", CASES)
def test_python_train_cli_and_a_profile_entry_say_the_same_line(case, tmp_path, capsys):
    override, message = CASES[case]
    with pytest.raises(C.ConfigError) as e:
        C.build(SGD_YAML, [override])
    assert str(e.value) == message

    p = subprocess.run([sys.executable, "train.py", SGD_YAML, override, "--results", str(tmp_path)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr == f"config error: {message}\n"

    profile = tmp_path / "p.yaml"
    profile.write_text(f"seeds: [0]\nruns:\n  - name: a\n    config: {SGD_YAML}\n"
                       f"    overrides: ['{override}']\n")
    capsys.readouterr()
    assert sweep.main([str(profile), "--dry-run", "--results", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == f"config error: {message}\n"


def test_non_finite_numbers_are_refused_by_the_one_finite_check():
    for override in ("width=nan", "width=.inf", "optim.lr=inf", "lr_scale=1e999"):
        with pytest.raises(C.ConfigError, match=rf"'{override.split('=')[0]}' must be a finite number"):
            C.build(None, [override])
    assert C.build(None, ["optim.lr=1"])["optim"]["lr"] == 1.0        # an int where a float is declared
    assert isinstance(C.build(None, ["optim.lr=1"])["optim"]["lr"], float)


def test_descending_milestones_are_refused_for_every_method_with_one_message():
    """Before schema.py, sgd accepted [3, 2] and six other methods refused it in two wordings."""
    have = [m for m in METHODS if "milestones" in METHODS[m].defaults]
    assert len(have) == len(METHODS) == 11
    said = set()
    for name in have:
        extra = ["init_from=some/run"] if getattr(METHODS[name], "needs_init_from", False) else []
        with pytest.raises(C.ConfigError) as e:
            C.build(None, [f"method={name}", "optim.schedule=step", "optim.milestones=[3, 2]"] + extra)
        said.add(str(e.value))
    assert said == {"config key 'optim.milestones' must be strictly increasing, each > 0, got [3, 2]"}


@pytest.mark.parametrize("text,inside,outside", [
    ("[0, 1)", [0, 0.5, 0.999], [1, -1e-9]), ("(0, 1]", [1e-9, 1], [0, 1.5]),
    ("> 0", [1e-12, 5], [0, -1]), (">= 1", [1, 500], [0.999]),
    ("[0, 2**32)", [0, 2 ** 32 - 1], [2 ** 32, -1]),
])
def test_ranges_include_and_exclude_their_bounds(text, inside, outside):
    assert all(schema.in_range(v, text) for v in inside)
    assert not any(schema.in_range(v, text) for v in outside)


def test_every_method_key_is_declared_with_the_type_of_its_default():
    """A default of the wrong type (1 for a float key) would change the hash of every run that
    uses it; every key of every method must have a declaration."""
    python = {"bool": bool, "int": int, "float": float, "str": str, "ints": list, "dict": dict}
    for method in METHODS.values():
        for name, spec in schema.method_keys(method).items():
            assert type(spec.default) is python[spec.type], (method.name, name)
            assert schema.check(spec, spec.default, name) == spec.default
    for spec in schema.CONFIG:
        if not spec.auto:
            assert type(spec.default) is python[spec.type], spec.name


def test_top_level_defaults_are_exactly_those_the_committed_runs_were_hashed_with():
    before = {"dataset": "digits", "data_dir": "data", "download": True, "model": "resnet20",
              "width": 1.0, "epochs": 10, "batch_size": 128, "eval_batch_size": 500,
              "augment": True, "crop_padding": "auto", "flip": "auto", "erase": 0.0,
              "train_subset": 0, "seed": 0, "device": "auto", "precision": "fp32",
              "channels_last": False, "compile": False, "lr_scale": 1.0, "warmup_epochs": 0,
              "label_smoothing": 0.0, "sync_bn": False, "workers": 8, "init_from": "",
              "bn_recal": 2000, "method": "sgd", "optim": {}, "identity": {}}
    assert list(C.DEFAULTS) == list(before)
    assert all(type(C.DEFAULTS[k]) is type(v) and C.DEFAULTS[k] == v for k, v in before.items())
    assert set(C.NOT_HASHED) == {"data_dir", "download", "device", "identity", "workers"}


def test_committed_run_folders_keep_their_names(monkeypatch):
    """Each committed run's resolved config gives its folder's name (readable part + hash).
    A run of an earlier method revision (its summary has no method_revision: 1) is named as
    that revision hashed."""
    monkeypatch.chdir(REPO)      # init_from paths are relative to the repository
    folders = sorted(glob.glob(os.path.join("results", "runs", "*", "config.yaml")))
    if not folders:
        pytest.skip("no committed run folders")
    current = C.method_revision
    for path in folders:
        folder = os.path.basename(os.path.dirname(path))
        cfg = C.resolve(C.load_yaml(path))
        name = C.run_name(cfg)
        if name != folder:
            summary = os.path.join(os.path.dirname(path), "summary.json")
            with open(summary) as f:
                recorded = json.load(f).get("method_revision", 1)
            assert recorded != current(cfg["method"], cfg["optim"]), folder
            monkeypatch.setattr(C, "method_revision", lambda *a: recorded)
            name = C.run_name(cfg)
            monkeypatch.setattr(C, "method_revision", current)
        assert name == folder


def test_run_name_tags_come_from_the_keys():
    def readable(overrides):
        return C.run_name(C.build(None, overrides)).rsplit("-", 1)[0]
    assert readable(["seed=3"]) == "digits-resnet20-sgd-s3"
    assert readable(["method=str", "width=0.5"]) == "digits-resnet20-w0.5-str-swd0.0005-s0"
    assert readable(["method=xrda", "optim.mode=channel", "optim.lam=2e-5"]) == \
        "digits-resnet20-xrda-channel-lam2e-05-s0"
    assert readable(["method=soft_threshold", "optim.threshold_schedule=linear",
                     "optim.final_threshold=0.3"]) == "digits-resnet20-soft_threshold-D0.3-s0"
    assert readable(["method=gmp", "optim.target=0.95"]) == "digits-resnet20-gmp-t0.95-s0"


def test_roles_give_the_epoch_and_target_keys():
    assert schema.keys_with(METHODS["gmp"], "epochs") == ("milestones", "prune_start", "prune_end")
    assert schema.keys_with(METHODS["xrda"], "epochs") == ("milestones",)
    assert [schema.target_key(METHODS[m]) for m in ("gmp", "rigl", "filter_prune", "xrda", "sgd")] == \
        ["target", "target", "target", None, None]


def test_help_config_lists_every_key(capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--help-config"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for spec in schema.CONFIG:
        assert f"\n  {spec.name} ({spec.type}, default " in out
    for spec in schema.IDENTITY:
        assert f"\n  identity.{spec.name} (" in out
    for name in schema.OPTIM:
        assert f"\n  optim.{name} (" in out
    assert "optim.momentum (float; in [0, 1))" in out


def test_readme_tables_are_the_generated_ones():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert readme_tables.stale(text) == []
    tables = readme_tables.generated()
    summary = tables["summary fields"]
    from sparsecs import summaries
    assert summary.count("\n") == len(summaries.SUMMARY_FIELDS) + 2   # every field, one row each
    # the check bites: a table with a row gone is stale
    row = "| `optim.lam` |"
    start = text.index(row)
    cut = text[:start] + text[text.index("\n", start) + 1:]
    assert readme_tables.stale(cut) == ["optim keys"]

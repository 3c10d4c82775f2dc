"""Every JSON file the repository writes is strict JSON (RFC 8259: no NaN, no Infinity), read
here by a parser that refuses those tokens, as jq, JavaScript or Go would."""
import glob
import json
import math
import os

import pytest

from sparsecs import config as C
import eval as E
import export
from sparsecs import fileio
from sparsecs import final_eval
from sparsecs import summaries
import train

from tests import REPO


def _refuse(token):
    raise ValueError(f"non-standard JSON token {token}")


def strict(text):
    return json.loads(text, parse_constant=_refuse)


def test_the_strict_parser_refuses_what_python_writes_by_default():
    with pytest.raises(ValueError, match="NaN"):
        strict(json.dumps({"x": math.nan}))


def test_save_json_writes_non_finite_numbers_as_null(tmp_path):
    target = tmp_path / "x.json"
    fileio.save_json({"a": math.nan, "b": [math.inf, 1.5, (2, -math.inf)], "c": {"d": -math.inf, "e": "NaN"}},
                   str(target))
    assert strict(target.read_text()) == {"a": None, "b": [None, 1.5, [2, None]], "c": {"d": None, "e": "NaN"}}
    with pytest.raises(TypeError):          # anything that is not JSON is refused, never written
        fileio.json_text({"x": object()})


def test_a_run_with_non_finite_values_writes_strict_json_and_reads_them_back(tmp_path, monkeypatch, capsys):
    # an ad-hoc run has no λ search (calibration_target NaN), and this one could not be slimmed
    monkeypatch.setattr(final_eval, "structural_macs", lambda model: math.nan)
    cfg = C.build(None, ["model=resnet20", "width=0.25", "epochs=1", "device=cpu", "train_subset=256",
                         "bn_recal=128"])
    assert math.isnan(cfg["identity"]["calibration_target"])
    train.train(cfg, results=str(tmp_path), quiet=True)
    run = tmp_path / "runs" / C.run_name(cfg)
    raw = strict((run / "summary.json").read_text())
    assert raw["calibration_target"] is None and raw["macs_structural"] is None
    assert raw["test_acc"] == raw["test_acc"] and 0 <= raw["test_acc"] <= 100
    # readers take null where NaN was: the summary reads back with NaN, the run is complete
    s = summaries.read_summary(str(run))
    assert math.isnan(s["calibration_target"]) and math.isnan(s["macs_structural"])
    assert summaries.complete_summary(str(run)) is not None and summaries.is_finished(str(tmp_path), run.name)
    # eval.py --json and export.json are strict too
    assert E.main([str(run), "--json", "--data-dir", cfg["data_dir"]]) == 0
    printed = strict(capsys.readouterr().out)
    assert printed["n_weights"] == s["n_weights"]
    export.export(str(run), "csr")
    facts = strict((run / "export.json").read_text())
    assert "csr" in facts
    for f in glob.glob(str(tmp_path / "**" / "*.json"), recursive=True):
        strict(open(f).read())


def test_every_committed_json_file_is_strict():
    files = glob.glob(os.path.join(REPO, "results", "**", "*.json"), recursive=True)
    assert files, "no committed JSON under results/"
    for f in files:
        with open(f) as fh:
            try:
                strict(fh.read())
            except ValueError as e:
                pytest.fail(f"{os.path.relpath(f, REPO)}: {e}")


def test_the_fixer_replaces_only_the_non_finite_tokens(tmp_path, capsys):
    from scripts import strict_json

    old = {"a": math.nan, "b": [1.0, -math.inf], "note": "x: NaN, y", "c": {"d": math.inf}}
    text = json.dumps(old, indent=2, sort_keys=True) + "\n"     # what train.py wrote before
    (tmp_path / "runs" / "r").mkdir(parents=True)
    f = tmp_path / "runs" / "r" / "summary.json"
    f.write_text(text)
    (tmp_path / "ok.json").write_text('{"x": 1}\n')
    assert strict_json.main(["--check", str(tmp_path)]) == 1 and f.read_text() == text
    assert strict_json.main([str(tmp_path)]) == 0
    assert "1 file(s) made strict" in capsys.readouterr().out
    new = f.read_text()
    assert strict(new) == {"a": None, "b": [1.0, None], "note": "x: NaN, y", "c": {"d": None}}
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines()) if a != b]
    assert len(text.splitlines()) == len(new.splitlines()) and len(changed) == 3
    assert all(a.replace("-Infinity", "null").replace("Infinity", "null").replace("NaN", "null") == b
               for a, b in changed)
    assert strict_json.main(["--check", str(tmp_path)]) == 0

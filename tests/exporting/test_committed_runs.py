"""Committed runs through their committed exports (issue 37, item 4): a run folder in
RESULTS/runs/<run> without model.pt (weights are not committed) is read by eval.py, export.py,
the hub and sparse_infer.py from RESULTS/<profile>/weights/<run>/model.csr.pt, after the
export's sha256 and the run's summary are checked, with one line saying so; the export file
itself is a source too (export.py FILE --format slim). A folder with neither stays "not
finished". Built on a tiny run trained here, made "committed" in a temporary layout."""
import json
import os
import pathlib
import shutil

import pytest
import torch

import eval as E
import export
import hubconf
from sparsecs import paths
from sparsecs import sparse_infer as S
from tests.test_bad_input import _one_thread, one_line, snapshot, trained  # noqa: F401 (fixtures)

from tests import REPO


@pytest.fixture(scope="module")
def layout(trained, tmp_path_factory):
    """A committed layout: RESULTS/runs/<run> without model.pt and checkpoint, its csr export in
    RESULTS/prof/weights/<run>/ (as results/fashion/weights/README.md made them); plus the
    original run's eval result, computed from its model.pt."""
    results = str(tmp_path_factory.mktemp("committed"))
    shutil.copytree(trained[0], results, dirs_exist_ok=True)
    run = os.path.basename(trained[1])
    folder = paths.run_dir(results, run)
    weights = os.path.join(results, "prof", "weights", run)
    os.makedirs(weights)
    export.export(folder, "csr", out=os.path.join(weights, "model.csr.pt"), batch=16)
    before, _ = E.evaluate_file(folder, device="cpu")
    for name in (paths.MODEL, paths.CHECKPOINT, paths.CHECKPOINT_PREV, export.EXPORT_JSON, paths.LOCK):
        if os.path.exists(os.path.join(folder, name)):
            os.unlink(os.path.join(folder, name))
    return results, folder, os.path.join(weights, "model.csr.pt"), before


@pytest.fixture
def committed(layout, tmp_path):
    """A private copy of the layout: (results, run folder, committed export, eval before)."""
    results = str(tmp_path / "res")
    shutil.copytree(layout[0], results)
    rel = lambda p: os.path.join(results, os.path.relpath(p, layout[0]))  # noqa: E731
    return results, rel(layout[1]), rel(layout[2]), layout[3]


def uses_the_export(err, file):
    """One line says the committed export is used (other lines: sparse_infer's kernel notes)."""
    lines = [line for line in err.strip().splitlines() if "committed export" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert file in lines[0] and "sha256 checked" in lines[0], err


def test_eval_reads_a_committed_run_from_its_export(committed, capsys):
    results, folder, file, before = committed
    kept = snapshot(results)
    assert E.main([folder, "--json"]) == 0
    cap = capsys.readouterr()
    uses_the_export(cap.err, file)
    result = json.loads(cap.out)
    # the same numbers as from the run's own model.pt before it went away
    for k in ("test_acc", "test_loss", "nnz", "n_weights", "sparsity", "flops_nonzero"):
        assert result[k] == before[k], k
    assert result["model_file"] == file
    assert snapshot(results) == kept            # nothing written anywhere


def test_eval_cli_says_it_uses_the_export_in_one_line(committed, capsys):
    _, folder, file, before = committed
    assert E.main([folder]) == 0
    cap = capsys.readouterr()
    uses_the_export(cap.err, file)
    assert f"test acc {before['test_acc']:.2f}%" in cap.out


def test_hub_and_sparse_infer_take_a_committed_run(committed, tmp_path, capsys):
    _, folder, file, _ = committed
    model = hubconf.sparse_model(folder)
    uses_the_export(capsys.readouterr().err, file)
    want = export.load_csr(file)
    assert not model.training
    assert all(torch.equal(v, want.state_dict()[k]) for k, v in model.state_dict().items())
    out = tmp_path / "plan.json"
    assert S.main([folder, "--batch", "2", "--repeats", "1", "--json", str(out)]) == 0
    uses_the_export(capsys.readouterr().err, file)
    plan = json.loads(out.read_text())
    assert plan["run"] == os.path.basename(folder) and plan["max_logit_diff"] <= plan["tolerance"]


def test_export_slim_from_a_committed_run_and_from_the_export_file(committed, tmp_path, monkeypatch, capsys):
    results, folder, file, _ = committed
    kept = snapshot(results)
    out = tmp_path / "a.slim.pt"
    assert export.main([folder, "--format", "slim", "--batch", "16", "--out", str(out)]) == 0
    uses_the_export(capsys.readouterr().err, file)
    slim = export.load_slim(out)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = export.load_csr(file)(x)
        assert (slim(x) - ref).abs().max() <= export.RTOL * max(1.0, float(ref.abs().max()))
    # the export file itself is a source; by default its exports go to scratch/, not beside it
    monkeypatch.chdir(tmp_path)
    assert export.main([file, "--format", "slim", "--batch", "16"]) == 0
    capsys.readouterr()
    made = tmp_path / paths.SCRATCH / "exports" / os.path.basename(folder)
    facts = json.loads((made / export.EXPORT_JSON).read_text())["slim"]
    assert facts["file"] == "model.slim.pt" and (made / facts["source"]).resolve() == pathlib.Path(file).resolve()
    assert export.verify(str(made / "model.slim.pt"))[0] == "slim"
    # never over the file it reads
    assert export.main([file, "--format", "csr", "--out", file]) == 2
    assert "is the export being read" in one_line(capsys)
    assert snapshot(results) == kept            # committed folders untouched


def test_a_committed_export_that_fails_a_check_is_refused(committed, layout, tmp_path, capsys):
    results, folder, file, _ = committed
    blob = bytearray(open(file, "rb").read())
    blob[len(blob) // 2] ^= 0xFF
    open(file, "wb").write(bytes(blob))
    assert E.main([folder]) == 1
    assert "altered or damaged" in one_line(capsys)
    with pytest.raises(paths.RunFolderError, match="altered or damaged"):
        hubconf.sparse_model(folder)
    # the sha256 record gone: not read on the checksum inside it alone
    shutil.copy(layout[2], file)
    os.unlink(file + ".sha256")
    assert export.main([folder, "--format", "slim", "--out", str(tmp_path / "x.pt")]) == 1
    assert "has no model.csr.pt.sha256 beside it" in one_line(capsys)


def test_an_export_of_another_run_is_not_taken_for_this_one(committed, tmp_path, capsys):
    """A whole, checked export in the folder of a run it does not belong to (other weights:
    its nonzero count differs from the summary's)."""
    results, folder, file, _ = committed
    saved = export.read_csr(file)
    sd = dict(saved["state_dict"])
    k = next(k for k, v in sd.items() if v.dim() == 4)
    sd[k] = torch.zeros_like(sd[k])
    os.unlink(file)
    os.unlink(file + ".sha256")
    from sparsecs.exporting.csr import csr_file
    from sparsecs.exporting.files import write_export
    write_export(file, export._bytes(csr_file({**saved, "state_dict": sd})))
    assert E.main([folder]) == 1
    line = one_line(capsys)
    assert "not the export of run" in line and "nonzero parameters" in line


def test_an_unfinished_run_folder_keeps_its_message(committed, capsys):
    results, folder, file, _ = committed
    shutil.rmtree(os.path.dirname(file))           # no committed export: really unfinished
    assert export.main([folder, "--format", "csr"]) == 1
    assert "run not finished (no model.pt); finish it with train.py first" in one_line(capsys)
    with pytest.raises(paths.RunFolderError, match="run not finished"):
        hubconf.sparse_model(folder)
    assert E.main([folder]) == 1
    assert "not found" in one_line(capsys)


# ----------------------------------------------------------------------------- a real committed run

RUN = "fashion_mnist-resnet20-w0.5-xrda-lam8.51178e-05-s0-2689a4e5"
REAL_RUN = os.path.join(REPO, "results", "runs", RUN)
REAL_FILE = os.path.join(REPO, "results", "fashion", "weights", RUN, "model.csr.pt")


def test_the_committed_fashion_run_through_its_export(tmp_path, capsys):
    if not (os.path.isdir(REAL_RUN) and os.path.isfile(REAL_FILE)):
        pytest.skip(f"the committed run {RUN} or its export is not in this checkout")
    if os.path.exists(os.path.join(REAL_RUN, paths.MODEL)):
        pytest.skip(f"{REAL_RUN} has a model.pt here (trained again): not the committed layout")
    with open(os.path.join(REAL_RUN, paths.SUMMARY)) as f:
        summary = json.load(f)
    model = hubconf.sparse_model(REAL_RUN)
    uses_the_export(capsys.readouterr().err, REAL_FILE)
    params = list(model.parameters())
    assert sum(p.numel() for p in params) == summary["n_params"] == 67906
    assert sum(int(torch.count_nonzero(p)) for p in params) == round((1 - summary["sparsity_all"]) * 67906)
    data_dir = os.path.join(REPO, "data")
    if not os.path.isdir(os.path.join(data_dir, "FashionMNIST")):
        pytest.skip("Fashion-MNIST is not in data/: the accuracy is not checked here")
    result, _ = E.evaluate_file(REAL_RUN, data_dir=data_dir, device="cpu")
    capsys.readouterr()
    assert result["test_acc"] == pytest.approx(summary["test_acc"], abs=1e-9)   # 87.36, as recorded


# ----------------------------------------------------------------------------- a missing path: 2

@pytest.mark.parametrize("tool,extra", [(["eval.py"], []), (["export.py"], ["--format", "slim"]),
                                        (["-m", "sparsecs.sparse_infer"], [])])
def test_a_missing_path_exits_2_as_train_py_does(tool, extra, tmp_path):
    """issue 37, item 7: train.py exits 2 for a config that is not there (usage); the tools
    that read a run exited 1 for a run that is not there."""
    import subprocess
    import sys

    missing = str(tmp_path / "no-such-run")
    p = subprocess.run([sys.executable, *tool, missing, *extra], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and missing in p.stderr and "no such run folder" in p.stderr

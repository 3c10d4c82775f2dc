"""Hostile input (issue 20): every case a probe broke, in its smallest reproduction. Each
asserts the one line (a single stderr line, no traceback), the exit status, and that every
file that existed before is byte-identical after."""
import json
import os
import shutil

import pytest
import torch

import config as C
import runs
import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SGD = os.path.join(REPO, "configs", "quick", "sgd.yaml")
TINY = ["model=resnet20", "width=0.125", "epochs=1", "train_subset=64", "device=cpu"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def snapshot(root):
    """{path: bytes} of every file under `root` (a file or a folder)."""
    root = str(root)
    if os.path.isfile(root):
        return {root: open(root, "rb").read()}
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                out[p] = open(p, "rb").read()
    return out


def one_line(capsys):
    """The single line on stderr (asserting there is exactly one and no traceback)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished tiny run (results folder, run folder), trained once for the module."""
    results = tmp_path_factory.mktemp("trained")
    torch.set_num_threads(1)
    s = train.train(C.build(SGD, TINY), results=str(results), quiet=True)
    return str(results), runs.run_dir(str(results), s["run"])


@pytest.fixture
def run(trained, tmp_path):
    """A private copy of the trained run: (results, run folder)."""
    results = str(tmp_path / "res")
    shutil.copytree(trained[0], results)
    return results, runs.run_dir(results, os.path.basename(trained[1]))


def cli(*extra):
    return [SGD, *TINY, "--quiet", *extra]


# ----------------------------------------------------------------------------- --out

def test_out_into_a_folder_of_someone_elses_files_is_refused(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "metrics.csv").write_text("mine\n")
    (d / ".tmp-thesis.tex").write_text("draft\n")
    before = snapshot(tmp_path)
    assert train.main(cli("--out", str(d), "--results", str(tmp_path / "res"))) == 2
    line = one_line(capsys)
    assert line.startswith("error: ") and str(d) in line and "not a run folder" in line
    assert snapshot(tmp_path) == before and not (tmp_path / "res").exists()


def test_out_root_is_refused(tmp_path, capsys):
    existed = os.path.exists("/" + runs.LOCK)
    assert train.main(cli("--out", "/", "--results", str(tmp_path))) == 2
    assert "file system root" in one_line(capsys)
    assert os.path.exists("/" + runs.LOCK) == existed and list(tmp_path.iterdir()) == []


def test_out_empty_or_absent_gets_the_marker_and_can_be_used_again(tmp_path, capsys):
    d = tmp_path / "empty"
    d.mkdir()
    assert train.main(cli("--out", str(d), "--results", str(tmp_path))) == 0
    assert (d / runs.MARKER).exists() and (d / runs.SUMMARY).exists()
    assert train.main(cli("--out", str(d), "--results", str(tmp_path))) == 0   # ours: skipped
    assert train.main(cli("--out", str(tmp_path / "new" / "run"), "--results", str(tmp_path))) == 0


def test_committed_run_folder_without_marker_is_still_a_run_folder(run):
    results, folder = run
    os.unlink(os.path.join(folder, runs.MARKER))
    assert runs.out_problem(folder) is None
    for f in (runs.MODEL, runs.CHECKPOINT, runs.LOCK):   # as committed: no weights
        os.unlink(os.path.join(folder, f))
    assert runs.out_problem(folder) is None
    with open(os.path.join(folder, runs.CONFIG), "w") as f:
        f.write("my_own_key: 1\n")                       # a config.yaml that is not ours
    assert "not a run folder" in runs.out_problem(folder)


def test_only_our_own_stale_temp_files_are_removed(run):
    results, folder = run
    mine = os.path.join(folder, ".tmp-thesis.tex")
    open(mine, "w").write("draft")
    ours = os.path.join(folder, ".tmp-checkpoint.ptq1w2e3r_")
    open(ours, "w").write("half a checkpoint")
    with runs.run_lock(folder):
        pass
    assert open(mine).read() == "draft" and not os.path.exists(ours)


# ----------------------------------------------------------------------------- export

@pytest.mark.parametrize("name", [runs.MODEL, runs.SUMMARY, runs.METRICS, runs.CONFIG, "export.json"])
def test_export_onto_a_file_of_the_run_is_refused(run, capsys, name):
    import export

    results, folder = run
    if name == "export.json":
        open(os.path.join(folder, name), "w").write("{}\n")
    before = snapshot(results)
    assert export.main([folder, "--format", "dense", "--out", os.path.join(folder, name)]) == 2
    line = one_line(capsys)
    assert "a file of the run" in line and name in line
    assert snapshot(results) == before


def test_export_onto_a_link_to_the_weights_is_refused(run, tmp_path, capsys):
    import export

    results, folder = run
    link = tmp_path / "w.pt"
    os.symlink(os.path.join(folder, runs.MODEL), link)
    before = snapshot(results)
    assert export.main([folder, "--format", "dense", "--out", str(link)]) == 2
    assert "model.pt" in one_line(capsys) and snapshot(results) == before


@pytest.mark.parametrize("batch", ["0", "-1", "x"])
def test_export_batch_must_be_positive(run, capsys, batch):
    import export

    results, folder = run
    before = snapshot(results)
    with pytest.raises(SystemExit) as e:
        export.main([folder, "--format", "dense", "--batch", batch])
    assert e.value.code == 2 and "--batch" in one_line(capsys)
    assert snapshot(results) == before
    with pytest.raises(export.ExportError, match="--batch"):
        export.export(folder, "dense", batch=0)


# ----------------------------------------------------------------------------- model.pt checksum

def alter(folder):
    """model.pt changed at the same size (one byte of a weight flipped)."""
    m = os.path.join(folder, runs.MODEL)
    blob = bytearray(open(m, "rb").read())
    blob[-2000] ^= 0xFF
    open(m, "wb").write(bytes(blob))


def test_summary_records_the_model_checksum(run):
    import hashlib

    results, folder = run
    s = runs.read_summary(folder)
    blob = open(os.path.join(folder, runs.MODEL), "rb").read()
    assert s["model_sha256"] == hashlib.sha256(blob).hexdigest() and s["model_bytes"] == len(blob)
    assert runs.finished_summary(folder) is not None
    assert {"model_sha256", "model_bytes", "world_size"} <= set(runs.SUMMARY_FIELDS)


def test_altered_model_is_not_finished_and_train_reruns_it(run, capsys):
    results, folder = run
    good = open(os.path.join(folder, runs.MODEL), "rb").read()
    alter(folder)
    notes = []
    assert runs.finished_summary(folder, warn=notes.append) is None
    assert len(notes) == 1 and "altered" in notes[0] and runs.MODEL in notes[0]
    assert train.main(cli("--results", results)) == 0          # resumes at the end, rewrites
    assert open(os.path.join(folder, runs.MODEL), "rb").read() == good
    assert runs.finished_summary(folder) is not None


def test_altered_model_is_one_line_in_eval_export_and_hub(run, capsys):
    import eval as E
    import export
    import hubconf

    results, folder = run
    alter(folder)
    before = snapshot(results)
    assert E.main([folder]) == 1
    assert "altered" in one_line(capsys)
    assert export.main([folder, "--format", "dense"]) == 1
    assert "altered" in one_line(capsys)
    with pytest.raises(runs.RunFolderError, match="altered") as e:
        hubconf.sparse_model(folder)
    assert "\n" not in str(e.value)
    with pytest.raises(runs.RunFolderError, match="altered"):
        hubconf.sparse_model(os.path.join(folder, runs.MODEL))
    assert snapshot(results) == before


def test_old_summary_without_checksum_is_trusted_by_size(run):
    results, folder = run
    p = os.path.join(folder, runs.SUMMARY)
    s = json.load(open(p))
    del s["model_sha256"], s["world_size"]
    open(p, "w").write(json.dumps(s))
    assert runs.finished_summary(folder) is not None and runs.complete_summary(folder) is not None
    runs.load_model(folder)
    del s["model_bytes"]
    open(p, "w").write(json.dumps(s))
    assert runs.finished_summary(folder) is not None

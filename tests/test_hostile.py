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


# ----------------------------------------------------------------------------- validate on read

def set_field(folder, **fields):
    p = os.path.join(folder, runs.SUMMARY)
    s = json.load(open(p))
    s.update(fields)
    open(p, "w").write(json.dumps(s))


def profile_of_the_run(tmp_path):
    """A profile that expands to exactly the trained run (identity is not hashed)."""
    p = tmp_path / "p.yaml"
    p.write_text(f"evidence: none\nruns:\n  - name: sgd\n    config: {SGD}\n    overrides: [{', '.join(TINY)}]\n")
    return str(p)


BAD_FIELDS = [{"epochs": "two"}, {"epochs": None}, {"sparsity": "high"}, {"test_acc": "99.9%"},
              {"seed": True}, {"sparsity": 2.0}, {"model_sha256": 12}]


@pytest.mark.parametrize("bad", BAD_FIELDS, ids=lambda b: "-".join(f"{k}={v}" for k, v in b.items()))
def test_wrongly_typed_summary_is_damaged_in_one_line(run, tmp_path, capsys, bad):
    import sweep

    results, folder = run
    set_field(folder, **bad)
    key = next(iter(bad))
    with pytest.raises(runs.RunFolderError, match=f"summary.json: damaged \\(field '{key}'") as e:
        runs.read_summary(folder)
    assert "\n" not in str(e.value)
    with pytest.raises(runs.RunFolderError):
        runs.complete_summary(folder)
    notes = []
    assert runs.finished_summary(folder, warn=notes.append) is None and len(notes) == 1
    before = snapshot(folder)
    prof = profile_of_the_run(tmp_path)
    capsys.readouterr()
    assert sweep.main([prof, "--results", results, "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "todo" in out.out                  # rerun, not skipped
    assert all("summary.json: damaged" in ln for ln in out.err.strip().splitlines())
    assert sweep.main(["--reindex", "--results", results]) == 0
    assert "summary.json: damaged" in one_line(capsys)
    assert snapshot(folder) == before
    assert os.path.basename(folder) not in open(os.path.join(results, runs.INDEX)).read()


def test_wrongly_typed_summary_stops_the_report_with_one_line(run, tmp_path, capsys):
    import report

    results, folder = run
    set_field(folder, test_acc="99.9%")
    before = snapshot(results)
    assert report.main([profile_of_the_run(tmp_path), "--results", results, "--out", str(tmp_path / "rep")]) == 2
    line = one_line(capsys)
    assert "summary.json" in line and "test_acc" in line
    assert snapshot(results) == before


def test_committed_summaries_all_pass_the_checks():
    import glob

    folders = sorted(glob.glob(os.path.join(REPO, "results", "runs", "*")))
    assert folders and all(runs.complete_summary(f) is not None for f in folders)


@pytest.mark.parametrize("where", ["first", "later"])
def test_ragged_metrics_is_damaged_not_misparsed(run, capsys, where):
    from reporting import load as L

    results, folder = run
    p = os.path.join(folder, runs.METRICS)
    header, *rows = open(p).read().splitlines()
    row = rows[0] + ",99" if where == "first" else rows[0].rsplit(",", 2)[0]
    open(p, "w").write("\n".join([header, row] + rows[1:]) + "\n")
    before = snapshot(results)
    for read in (runs.complete_summary, L.metrics_of):
        with pytest.raises(runs.RunFolderError, match="metrics.csv: damaged \\(line 2 has") as e:
            read(folder)
        assert "\n" not in str(e.value)
    notes = []
    assert runs.finished_summary(folder, warn=notes.append) is None and "metrics.csv" in notes[0]
    assert snapshot(results) == before


def test_metrics_of_reads_numbers_in_their_columns(run):
    from reporting import load as L

    results, folder = run
    m = L.metrics_of(folder)
    assert list(m["epoch"]) == [1] and m["test_acc"].dtype.kind == "f"
    assert m["test_acc"][0] == runs.read_summary(folder)["test_acc"]


def test_a_metrics_csv_that_lost_rows_is_not_finished_and_train_rewrites_it(run, capsys):
    results, folder = run
    p = os.path.join(folder, runs.METRICS)
    full = open(p).read()
    open(p, "w").write(full.splitlines()[0] + "\n")
    notes = []
    assert runs.finished_summary(folder, warn=notes.append) is None and "0 rows" in notes[0]
    assert train.main(cli("--results", results)) == 0
    assert open(p).read() == full and runs.finished_summary(folder) is not None


@pytest.mark.parametrize("damage", ["binary", "huge field", "ragged"])
def test_a_damaged_index_never_costs_a_finished_training(run, capsys, damage):
    results, folder = run
    index = os.path.join(results, runs.INDEX)
    text = {"binary": b"\x00\xff\xfe garbage\n",
            "huge field": b"run,x\n" + b"a," + b"y" * 200_000 + b"\n",
            "ragged": b"run,x\nonly-one\n"}[damage]
    open(index, "wb").write(text)
    before = snapshot(folder)
    assert train.main([SGD, *TINY, "seed=1", "--quiet", "--results", results]) == 0   # another run
    line = one_line(capsys)
    assert runs.INDEX in line and "rebuilt from the run folders (1 runs)" in line
    import csv
    names = [r["run"] for r in csv.DictReader(open(index))]
    assert len(names) == 2 and os.path.basename(folder) in names
    assert runs.index_problem(results) is None
    assert snapshot(folder) == before


def test_damaged_layers_csv_is_one_line(run):
    results, folder = run
    p = os.path.join(folder, runs.LAYERS)
    for text in ("layer,type,kernels\nc,Conv2d,many\n", "\x00\xff", "layer,type\nc,Conv2d\n"):
        open(p, "w", encoding="latin-1").write(text)
        with pytest.raises(runs.RunFolderError, match="layers.csv: damaged") as e:
            runs.zero_fraction(folder, "kernels")
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("saved", [{"model": "resnet20", "width": 0.125, "state_dict": {}},
                                   {"model": "nonet", "width": 0.125, "num_classes": 10, "dataset": "digits",
                                    "state_dict": {}},
                                   "renamed"], ids=["no-num_classes", "unknown-model", "renamed-key"])
def test_model_file_of_another_version_is_one_line(run, capsys, saved):
    import eval as E
    import export
    import hubconf

    results, folder = run
    m = os.path.join(folder, runs.MODEL)
    if saved == "renamed":
        saved = torch.load(m, weights_only=True)
        sd = saved["state_dict"]
        sd["renamed." + next(iter(sd))] = sd.pop(next(iter(sd)))
    s = json.load(open(os.path.join(folder, runs.SUMMARY)))
    s["model_bytes"], s["model_sha256"] = runs.save_torch_sha(saved, m)
    open(os.path.join(folder, runs.SUMMARY), "w").write(json.dumps(s))
    before = snapshot(results)
    assert E.main([folder]) == 1
    assert one_line(capsys).startswith("error: " + m)
    assert export.main([folder, "--format", "dense"]) == 1
    assert m in one_line(capsys)
    with pytest.raises(runs.RunFolderError) as e:
        hubconf.sparse_model(folder)
    assert m in str(e.value) and "\n" not in str(e.value)
    assert snapshot(results) == before

"""Hostile input (issue 20): every case a probe broke, in its smallest reproduction. Each
asserts the one line (a single stderr line, no traceback), the exit status, and that every
file that existed before is byte-identical after."""
import json
import os
import shutil

import pytest
import torch

from sparsecs import config as C
from sparsecs import fileio
from sparsecs import modelfile
from sparsecs import paths
from sparsecs import runindex
from sparsecs import summaries
import train
from sparsecs.sweeping import launch

from tests import REPO

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
    return str(results), paths.run_dir(str(results), s["run"])


@pytest.fixture
def run(trained, tmp_path):
    """A private copy of the trained run: (results, run folder)."""
    results = str(tmp_path / "res")
    shutil.copytree(trained[0], results)
    return results, paths.run_dir(results, os.path.basename(trained[1]))


def train_args(*extra):
    return [SGD, *TINY, "--quiet", *extra]


# ----------------------------------------------------------------------------- --out

def test_out_into_a_folder_of_someone_elses_files_is_refused(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "metrics.csv").write_text("mine\n")
    (d / ".tmp-thesis.tex").write_text("draft\n")
    before = snapshot(tmp_path)
    assert train.main(train_args("--out", str(d), "--results", str(tmp_path / "res"))) == 2
    line = one_line(capsys)
    assert line.startswith("error: ") and str(d) in line and "not a run folder" in line
    assert snapshot(tmp_path) == before and not (tmp_path / "res").exists()


def test_out_root_is_refused(tmp_path, capsys):
    existed = os.path.exists("/" + paths.LOCK)
    assert train.main(train_args("--out", "/", "--results", str(tmp_path))) == 2
    assert "file system root" in one_line(capsys)
    assert os.path.exists("/" + paths.LOCK) == existed and list(tmp_path.iterdir()) == []


def test_out_empty_or_absent_gets_the_marker_and_can_be_used_again(tmp_path, capsys):
    d = tmp_path / "empty"
    d.mkdir()
    assert train.main(train_args("--out", str(d), "--results", str(tmp_path))) == 0
    assert (d / paths.MARKER).exists() and (d / paths.SUMMARY).exists()
    assert train.main(train_args("--out", str(d), "--results", str(tmp_path))) == 0   # ours: skipped
    assert train.main(train_args("--out", str(tmp_path / "new" / "run"), "--results", str(tmp_path))) == 0


def test_committed_run_folder_without_marker_is_still_a_run_folder(run):
    results, folder = run
    os.unlink(os.path.join(folder, paths.MARKER))
    assert fileio.out_problem(folder) is None
    assert not os.path.exists(os.path.join(folder, paths.LOCK))   # a finished run leaves none
    for f in (paths.MODEL, paths.CHECKPOINT):   # as committed: no weights
        os.unlink(os.path.join(folder, f))
    assert fileio.out_problem(folder) is None
    with open(os.path.join(folder, paths.CONFIG), "w") as f:
        f.write("my_own_key: 1\n")                       # a config.yaml that is not ours
    assert "not a run folder" in fileio.out_problem(folder)


def test_only_our_own_stale_temp_files_are_removed(run):
    results, folder = run
    mine = os.path.join(folder, ".tmp-thesis.tex")
    open(mine, "w").write("draft")
    ours = os.path.join(folder, ".tmp-checkpoint.ptq1w2e3r_")
    open(ours, "w").write("half a checkpoint")
    with fileio.run_lock(folder):
        pass
    assert open(mine).read() == "draft" and not os.path.exists(ours)


# ----------------------------------------------------------------------------- export

@pytest.mark.parametrize("name", [paths.MODEL, paths.SUMMARY, paths.METRICS, paths.CONFIG, "export.json"])
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
    os.symlink(os.path.join(folder, paths.MODEL), link)
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
    """model.pt changed at the same size: a readable file whose first weight is another number."""
    import io

    m = os.path.join(folder, paths.MODEL)
    saved = torch.load(m, weights_only=True)
    w = next(v for v in saved["state_dict"].values() if v.is_floating_point())
    w[(0,) * w.dim()] += 1.0
    buf = io.BytesIO()
    torch.save(saved, buf)
    assert len(buf.getvalue()) == os.path.getsize(m)
    open(m, "wb").write(buf.getvalue())


def test_summary_records_the_model_checksum(run):
    import hashlib

    results, folder = run
    s = summaries.read_summary(folder)
    blob = open(os.path.join(folder, paths.MODEL), "rb").read()
    assert s["model_sha256"] == hashlib.sha256(blob).hexdigest() and s["model_bytes"] == len(blob)
    assert summaries.finished_summary(folder) is not None
    assert {"model_sha256", "model_bytes", "world_size"} <= set(summaries.SUMMARY_FIELDS)


def test_altered_model_is_not_finished_and_train_reruns_it(run, capsys):
    results, folder = run
    good = open(os.path.join(folder, paths.MODEL), "rb").read()
    alter(folder)
    notes = []
    assert summaries.finished_summary(folder, warn=notes.append) is None
    assert len(notes) == 1 and "its sha256" in notes[0] and paths.MODEL in notes[0]
    assert train.main(train_args("--results", results)) == 0          # resumes at the end, rewrites
    assert open(os.path.join(folder, paths.MODEL), "rb").read() == good
    assert summaries.finished_summary(folder) is not None


def test_altered_model_is_one_line_in_eval_export_and_hub(run, capsys):
    import eval as E
    import export
    import hubconf

    results, folder = run
    alter(folder)
    before = snapshot(results)
    assert E.main([folder]) == 1
    assert "altered or damaged (its sha256" in one_line(capsys)
    assert export.main([folder, "--format", "dense"]) == 1
    assert "altered or damaged (its sha256" in one_line(capsys)
    with pytest.raises(paths.RunFolderError, match="its sha256") as e:
        hubconf.sparse_model(folder)
    assert "\n" not in str(e.value)
    with pytest.raises(paths.RunFolderError, match="its sha256"):
        hubconf.sparse_model(os.path.join(folder, paths.MODEL))
    assert snapshot(results) == before


def test_old_summary_without_checksum_is_trusted_by_size(run):
    results, folder = run
    p = os.path.join(folder, paths.SUMMARY)
    s = json.load(open(p))
    del s["model_sha256"], s["world_size"]
    open(p, "w").write(json.dumps(s))
    assert summaries.finished_summary(folder) is not None and summaries.complete_summary(folder) is not None
    modelfile.load_model(folder)
    del s["model_bytes"]
    open(p, "w").write(json.dumps(s))
    assert summaries.finished_summary(folder) is not None


# ----------------------------------------------------------------------------- validate on read

def set_field(folder, **fields):
    p = os.path.join(folder, paths.SUMMARY)
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
    with pytest.raises(paths.RunFolderError, match=f"summary.json: damaged \\(field '{key}'") as e:
        summaries.read_summary(folder)
    assert "\n" not in str(e.value)
    with pytest.raises(paths.RunFolderError):
        summaries.complete_summary(folder)
    notes = []
    assert summaries.finished_summary(folder, warn=notes.append) is None and len(notes) == 1
    # what happens, not advice to delete the folder that a rerun makes needless
    assert notes[0].endswith(": rerunning it") and "delete" not in notes[0]
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
    assert os.path.basename(folder) not in open(os.path.join(results, paths.INDEX)).read()


def test_wrongly_typed_summary_stops_the_report_with_one_line(run, tmp_path, capsys):
    import report

    results, folder = run
    set_field(folder, test_acc="99.9%")
    before = snapshot(results)
    # damaged results are a data error: exit 1 (README, exit codes)
    assert report.main([profile_of_the_run(tmp_path), "--results", results, "--out", str(tmp_path / "rep")]) == 1
    line = one_line(capsys)
    assert "summary.json" in line and "test_acc" in line
    assert snapshot(results) == before


def test_committed_summaries_all_pass_the_checks():
    import glob

    # the committed ones: folders with a summary (a profile still running here has others)
    folders = sorted(f for f in glob.glob(os.path.join(REPO, "results", "runs", "*"))
                     if os.path.exists(paths.path(f, paths.SUMMARY)))
    assert all(summaries.complete_summary(f) is not None for f in folders)


@pytest.mark.parametrize("where", ["first", "later"])
def test_ragged_metrics_is_damaged_not_misparsed(run, capsys, where):
    from sparsecs.reporting import load as L

    results, folder = run
    p = os.path.join(folder, paths.METRICS)
    header, *rows = open(p).read().splitlines()
    row = rows[0] + ",99" if where == "first" else rows[0].rsplit(",", 2)[0]
    open(p, "w").write("\n".join([header, row] + rows[1:]) + "\n")
    before = snapshot(results)
    for read in (summaries.complete_summary, L.metrics_of):
        with pytest.raises(paths.RunFolderError, match="metrics.csv: damaged \\(line 2 has") as e:
            read(folder)
        assert "\n" not in str(e.value)
    notes = []
    assert summaries.finished_summary(folder, warn=notes.append) is None and "metrics.csv" in notes[0]
    assert snapshot(results) == before


def test_metrics_of_reads_numbers_in_their_columns(run):
    from sparsecs.reporting import load as L

    results, folder = run
    m = L.metrics_of(folder)
    assert list(m["epoch"]) == [1] and m["test_acc"].dtype.kind == "f"
    # the last row is the last epoch with training's running BatchNorm statistics
    assert m["test_acc"][0] == summaries.read_summary(folder)["test_acc_running_bn"]


def test_a_metrics_csv_that_lost_rows_is_not_finished_and_train_rewrites_it(run, capsys):
    results, folder = run
    p = os.path.join(folder, paths.METRICS)
    full = open(p).read()
    open(p, "w").write(full.splitlines()[0] + "\n")
    notes = []
    assert summaries.finished_summary(folder, warn=notes.append) is None and "0 rows" in notes[0]
    assert train.main(train_args("--results", results)) == 0
    assert open(p).read() == full and summaries.finished_summary(folder) is not None


@pytest.mark.parametrize("damage", ["binary", "huge field", "ragged"])
def test_a_damaged_index_never_costs_a_finished_training(run, capsys, damage):
    results, folder = run
    index = os.path.join(results, paths.INDEX)
    text = {"binary": b"\x00\xff\xfe garbage\n",
            "huge field": b"run,x\n" + b"a," + b"y" * 200_000 + b"\n",
            "ragged": b"run,x\nonly-one\n"}[damage]
    open(index, "wb").write(text)
    before = snapshot(folder)
    assert train.main([SGD, *TINY, "seed=1", "--quiet", "--results", results]) == 0   # another run
    line = one_line(capsys)
    assert paths.INDEX in line and "rebuilt from the run folders (1 runs)" in line
    import csv
    names = [r["run"] for r in csv.DictReader(open(index))]
    assert len(names) == 2 and os.path.basename(folder) in names
    assert runindex.index_problem(results) is None
    assert snapshot(folder) == before


def test_a_damaged_index_in_the_report_is_one_line_naming_the_repair(run, tmp_path, capsys):
    import report

    results, folder = run
    (tmp_path / "x").mkdir()
    open(os.path.join(results, paths.INDEX), "wb").write(b"\x00\xff\xfe garbage\n")
    before = snapshot(results)
    assert report.main([profile_of_the_run(tmp_path / "x"), "--results", results, "--out", str(tmp_path / "rep")]) == 1
    line = one_line(capsys)
    assert paths.INDEX in line and f"python sweep.py --reindex --results {results}" in line
    assert snapshot(results) == before


def test_damaged_layers_csv_is_one_line(run):
    results, folder = run
    p = os.path.join(folder, paths.LAYERS)
    for text in ("layer,type,kernels\nc,Conv2d,many\n", "\x00\xff", "layer,type\nc,Conv2d\n"):
        open(p, "w", encoding="latin-1").write(text)
        with pytest.raises(paths.RunFolderError, match="layers.csv: damaged") as e:
            summaries.zero_fraction(folder, "kernels")
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
    m = os.path.join(folder, paths.MODEL)
    if saved == "renamed":
        saved = torch.load(m, weights_only=True)
        sd = saved["state_dict"]
        sd["renamed." + next(iter(sd))] = sd.pop(next(iter(sd)))
    s = json.load(open(os.path.join(folder, paths.SUMMARY)))
    s["model_bytes"], s["model_sha256"] = fileio.save_torch_sha(saved, m)
    open(os.path.join(folder, paths.SUMMARY), "w").write(json.dumps(s))
    before = snapshot(results)
    assert E.main([folder]) == 1
    assert one_line(capsys).startswith("error: " + m)
    assert export.main([folder, "--format", "dense"]) == 1
    assert m in one_line(capsys)
    with pytest.raises(paths.RunFolderError) as e:
        hubconf.sparse_model(folder)
    assert m in str(e.value) and "\n" not in str(e.value)
    assert snapshot(results) == before


# ----------------------------------------------------------------------------- profiles and flags

XRDA = os.path.join(REPO, "configs", "quick", "soft_threshold.yaml")
CALIB = "    calibrate: {key: optim.lam, start: 1.0e-2, rounds: 2}\n"
BAD_PROFILES = {
    "target_sparsity-empty": (f"runs:\n  - name: st\n    config: {XRDA}\n    target_sparsity: []\n" + CALIB,
                              "target_sparsity must be a non-empty list"),
    "seeds-empty-calibrated": (f"runs:\n  - name: st\n    config: {XRDA}\n    seeds: []\n"
                               f"    target_sparsity: [0.9]\n" + CALIB, "seeds must be a non-empty list"),
    "seeds-empty": (f"seeds: []\nruns:\n  - config: {SGD}\n", "seeds must be a non-empty list"),
    "seeds-bool": (f"seeds: [true]\nruns:\n  - config: {SGD}\n", "seeds must be"),
    "seeds-negative": (f"seeds: [-1]\nruns:\n  - config: {SGD}\n", "seeds must be"),
    "epochs_scale-0": (f"epochs_scale: 0\nruns:\n  - config: {SGD}\n", "epochs_scale must be a positive"),
    "epochs_scale-negative": (f"epochs_scale: -1\nruns:\n  - config: {SGD}\n", "epochs_scale must be a positive"),
    "epochs_scale-string": (f"epochs_scale: abc\nruns:\n  - config: {SGD}\n", "epochs_scale must be a positive"),
    "epochs_scale-nan": (f"epochs_scale: .nan\nruns:\n  - config: {SGD}\n", "epochs_scale must be a positive"),
    "epochs_scale-inf": (f"epochs_scale: .inf\nruns:\n  - config: {SGD}\n", "epochs_scale must be a positive"),
    "epochs_scale-bool": (f"epochs_scale: true\nruns:\n  - config: {SGD}\n", "epochs_scale must be a positive"),
    "entry-epochs_scale-bool": (f"runs:\n  - config: {SGD}\n    epochs_scale: true\n", "epochs_scale must be a positive"),
    "evidence-typo": (f"evidence: small_scale\nruns:\n  - config: {SGD}\n", "evidence must be one of"),
    "calibrate-start-bool": (f"runs:\n  - name: st\n    config: {XRDA}\n    target_sparsity: [0.9]\n"
                             f"    calibrate: {{key: optim.lam, start: true}}\n", "calibrate.start"),
    "overrides-string": (f"overrides: epochs=1\nruns:\n  - config: {SGD}\n", "overrides must be a list"),
    "alias-bomb": ("defs:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                   + "".join(f"  b{i}: &b{i} [{', '.join([f'*b{i - 1}' if i else '*a'] * 10)}]\n" for i in range(9))
                   + f"runs:\n  - config: {SGD}\n    overrides: [identity.swept_value=x]\n    grid: {{seed: *b8}}\n",
                   "alias bomb"),
}


@pytest.mark.parametrize("name", list(BAD_PROFILES))
def test_bad_profile_is_one_line_exit_2(tmp_path, capsys, name):
    import sweep

    text, msg = BAD_PROFILES[name]
    prof = tmp_path / "p.yaml"
    prof.write_text(text)
    before = snapshot(tmp_path)
    for extra in (["--dry-run"], []):
        assert sweep.main([str(prof), "--results", str(tmp_path / "res"), *extra]) == 2
        line = one_line(capsys)
        assert line.startswith("error: ") and msg in line, line
    assert snapshot(tmp_path) == before and not (tmp_path / "res").exists()


def test_evidence_typo_is_one_line_in_the_report(tmp_path, capsys):
    import report

    prof = tmp_path / "p.yaml"
    prof.write_text(f"evidence: small_scale\nruns:\n  - config: {SGD}\n")
    assert report.main([str(prof), "--results", str(tmp_path / "res")]) == 2
    assert "evidence must be one of" in one_line(capsys)


@pytest.mark.parametrize("threads", ["0", "-1"])
def test_sweep_threads_below_one_is_refused(tmp_path, capsys, threads):
    import sweep

    prof = profile_of_the_run(tmp_path)
    assert sweep.main([prof, "--results", str(tmp_path / "res"), "--threads", threads]) == 2
    assert "--threads must be >= 1" in one_line(capsys)
    assert not (tmp_path / "res").exists()


# ----------------------------------------------------------------------------- config limits

BOMB = ("[" + ", ".join(["&a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]"
                                                                 for i in range(1, 10)]) + "]")


@pytest.mark.parametrize("override, msg", [
    ("width=1e9", "'width' must be in (0, 64]"),
    ("crop_padding=100000", "'crop_padding' must be in [0, 64]"),
    ("seed=-1", "'seed' must be in [0, 2**32)"),
    ("seed=4294967296", "'seed' must be in [0, 2**32)"),
    (f"identity.swept_value={BOMB}", "alias bomb"),
])
def test_config_values_past_physical_limits_are_one_line(tmp_path, capsys, override, msg):
    import time

    t = time.time()
    assert train.main([SGD, *TINY, override, "--quiet", "--results", str(tmp_path)]) == 2
    line = one_line(capsys)
    assert line.startswith("config error: ") and msg in line and time.time() - t < 10
    assert list(tmp_path.iterdir()) == []


def test_seed_and_width_at_their_limits_are_accepted():
    cfg = C.build(SGD, [*TINY, "seed=4294967295", "width=64", "crop_padding=64"])
    assert cfg["seed"] == 2 ** 32 - 1


def test_alias_bomb_in_a_config_file_and_a_self_referencing_value(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(f"method: sgd\nidentity:\n  swept_value: {BOMB}\n")
    with pytest.raises(C.ConfigError, match="alias bomb") as e:
        C.build(str(bomb))
    assert str(bomb) in str(e.value)
    loop = tmp_path / "loop.yaml"
    loop.write_text("method: sgd\nidentity:\n  swept_value: &a [1, *a]\n")
    with pytest.raises(C.ConfigError, match="refers to the value that holds it"):
        C.build(str(loop))
    # anchors as profiles and configs use them stay fine
    ok = tmp_path / "ok.yaml"
    ok.write_text("method: sgd\noptim: &o {lr: 0.1}\n")
    assert C.build(str(ok))["optim"]["lr"] == 0.1


# ----------------------------------------------------------------------------- sweep faults

# Stands in for train.py in the sweep: writes its pid, then sleeps (SIGTERM ends it).
CHILD = """
import os, sys, time
open(os.path.join(sys.argv[1], sys.argv[2] + ".pid"), "w").write(str(os.getpid()))
time.sleep(float(sys.argv[3]))
"""


def two_seeds(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(f"seeds: [0, 1]\nruns:\n  - name: sgd\n    config: {SGD}\n    overrides: [{', '.join(TINY)}]\n")
    return str(p)


def stand_in(monkeypatch, rec, sleep):
    import sys

    import sweep
    os.makedirs(rec, exist_ok=True)
    monkeypatch.setattr(launch, "train_argv",
                        lambda spec, results: [sys.executable, "-c", CHILD, str(rec), spec.name, str(sleep)])


def test_sweep_on_a_full_disk_is_one_line_with_the_table(tmp_path, monkeypatch, capsys):
    import errno

    import sweep

    stand_in(monkeypatch, tmp_path / "rec", 0)
    real, calls = launch._header, []

    def header(spec, results):   # the second run's log cannot be written: ENOSPC
        calls.append(spec.name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(spec, results)
    monkeypatch.setattr(launch, "_header", header)
    results = tmp_path / "res"
    assert sweep.main([two_seeds(tmp_path), "--results", str(results), "--jobs", "1", "--threads", "1"]) == 1
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.err, out.err
    assert "No space left on device" in lines[0] and sweep.log_path(str(results), calls[1]) in lines[0]
    assert "| finished |    1 |" in out.out and "| not run  |    1 |" in out.out


def test_sweep_on_a_read_only_results_folder_is_one_line_with_the_table(tmp_path, monkeypatch, capsys):
    """Tests run as root (permission bits do not apply): EROFS is injected where the sweep
    first writes, as the kernel would report it."""
    import builtins
    import errno

    import sweep

    stand_in(monkeypatch, tmp_path / "rec", 0)
    results = tmp_path / "res"
    real_open = builtins.open

    def ro_open(p, mode="r", *a, **k):
        if str(p).startswith(str(results)) and any(c in mode for c in "wa+"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(p))
        return real_open(p, mode, *a, **k)
    monkeypatch.setattr(launch, "open", ro_open, raising=False)
    (results / "logs").mkdir(parents=True)
    assert sweep.main([two_seeds(tmp_path), "--results", str(results), "--jobs", "1", "--threads", "1"]) == 1
    out = capsys.readouterr()
    line = one_line_of(out.err)
    assert "Read-only file system" in line and str(results / "logs") in line
    assert "| not run  |    2 |" in out.out and out.out.count("| not run ") == 1   # one row, not two
    # the index is the first write when it is damaged: the same one line
    (results / paths.INDEX).write_bytes(b"\x00garbage")
    before = snapshot(results)
    monkeypatch.setattr(fileio.tempfile, "mkstemp",
                        lambda *a, dir=None, **k: (_ for _ in ()).throw(OSError(errno.EROFS, os.strerror(errno.EROFS), dir)))
    assert sweep.main([two_seeds(tmp_path), "--results", str(results), "--jobs", "1"]) == 1
    out = capsys.readouterr()
    assert "Read-only file system" in one_line_of(out.err) and "| not run  |    2 |" in out.out
    after = snapshot(results)     # (the side lock file aside, which a real read-only folder refuses too)
    assert all(after.get(p) == b for p, b in before.items())


def one_line_of(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_sweep_ctrl_c_is_one_line_the_table_and_130(tmp_path, monkeypatch, capsys):
    import signal
    import threading
    import time

    import sweep

    rec = tmp_path / "rec"
    stand_in(monkeypatch, rec, 60)
    # a background job of a shell without job control starts with SIGINT ignored (POSIX), and
    # Python then installs no KeyboardInterrupt handler: give it the one a terminal's Ctrl-C meets
    old = signal.signal(signal.SIGINT, signal.default_int_handler)

    try:
        def interrupt():   # Ctrl-C once the first child runs
            deadline = time.time() + 60
            while not any(rec.glob("*.pid")) and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        t = time.time()
        assert sweep.main([two_seeds(tmp_path), "--results", str(tmp_path / "res"), "--jobs", "1",
                           "--threads", "1"]) == 130
        assert time.time() - t < 30
        out = capsys.readouterr()
        assert one_line_of(out.err).startswith("interrupted") and "| not run  |    2 |" in out.out
        pid = int(next(rec.glob("*.pid")).read_text())
        deadline = time.time() + 10   # the child was told to stop (SIGTERM), not left running
        while alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        assert not alive(pid)
    finally:
        signal.signal(signal.SIGINT, old)


def alive(pid):
    """True while `pid` runs; a zombie, or a process gone between two reads, is not alive."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


# ----------------------------------------------------------------------------- a dead DDP peer

PEER = """
import os, sys
import train
if os.environ["RANK"] == "1":   # this rank dies (SIGKILL, OOM) at its third step
    real, steps = train.train_step, []
    def dying(*a, **k):
        steps.append(1)
        if len(steps) == 3:
            os._exit(9)
        return real(*a, **k)
    train.train_step = dying
sys.exit(train.main(sys.argv[1:]))
"""


def test_a_dead_ddp_peer_is_one_line_from_the_survivor(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-c", PEER, SGD, *TINY, "batch_size=16", "--quiet", "--out",
            str(tmp_path / "run"), "--results", str(tmp_path)]
    procs = []
    for rank in (0, 1):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), XRDA_DIST_BACKEND="gloo", OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True, cwd=REPO))
    err = [p.communicate(timeout=300)[1] for p in procs]
    assert procs[1].returncode == 9
    lines = err[0].strip().splitlines()
    assert procs[0].returncode == 1 and len(lines) == 1 and "Traceback" not in err[0], err[0]
    assert lines[0].startswith("error: rank 0 of 2: lost contact with another process"), lines[0]


# ----------------------------------------------------------------------------- ImageFolder

def image_tree(base):
    from tests.test_imagenet import write_tree

    write_tree(str(base))
    return base


def test_imagefolder_does_not_follow_a_symlink_loop(tmp_path):
    from sparsecs import data

    base = image_tree(tmp_path / "imagenet")
    os.symlink("..", base / "train" / "n01" / "loop")
    d = data.load("imagenet", str(tmp_path), workers=0)
    assert len(d.train_samples) == 12 and d.num_classes == 3
    assert len({os.path.realpath(p) for p, _ in d.train_samples}) == 12


def test_imagefolder_refuses_a_class_folder_that_is_another_one(tmp_path):
    from sparsecs import data

    base = image_tree(tmp_path / "imagenet")
    for split in ("train", "val"):
        shutil.rmtree(base / split / "n03")
        os.symlink(base / split / "n01", base / split / "n03")    # n03's images would be n01's
    with pytest.raises(data.DataError, match="is the same folder as") as e:
        data.load("imagenet", str(tmp_path), workers=0)
    assert "\n" not in str(e.value) and str(base / "train" / "n03") in str(e.value)


def test_imagefolder_class_folders_may_live_elsewhere(tmp_path):
    from sparsecs import data

    base = image_tree(tmp_path / "imagenet")
    shutil.move(base / "train" / "n02", tmp_path / "disk-n02")
    os.symlink(tmp_path / "disk-n02", base / "train" / "n02")     # a class folder on another disk
    d = data.load("imagenet", str(tmp_path), workers=0)
    assert len(d.train_samples) == 12 and sorted({t for _, t in d.train_samples}) == [0, 1, 2]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_image_with_workers_is_one_line_with_the_file(tmp_path, capsys, damage):
    from sparsecs import data

    base = image_tree(tmp_path / "imagenet")
    bad = base / "train" / "n02" / "img1.JPEG"
    bad.write_bytes(b"not an image" if damage == "garbage" else bad.read_bytes()[:200])
    before = snapshot(tmp_path)
    d = data.load("imagenet", str(tmp_path), workers=2)
    with pytest.raises(data.DataError) as e:
        list(d.train_batches(12, seed=0, epoch=0))
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg and "unreadable image" in msg and "Traceback" not in msg
    args = [SGD, "dataset=imagenet", f"data_dir={tmp_path}", "model=resnet20", "width=0.125", "epochs=1",
            "batch_size=12", "workers=2", "device=cpu", "--quiet", "--out", str(tmp_path / "run"),
            "--results", str(tmp_path / "res")]
    assert train.main(args) == 1
    line = one_line(capsys)
    assert line.startswith(f"error: {bad}: unreadable image (")
    after = snapshot(tmp_path)
    assert all(after[p] == b for p, b in before.items())


# ----------------------------------------------------------------------------- init_from

def test_init_from_a_run_with_another_class_count_is_one_line(run, tmp_path, capsys):
    from sparsecs import data

    results, folder = run
    m = os.path.join(folder, paths.MODEL)
    saved = torch.load(m, weights_only=True)
    other = tmp_path / "other"
    other.mkdir()
    fc = [k for k, v in saved["state_dict"].items() if v.dim() == 2][-1]
    saved["state_dict"][fc] = saved["state_dict"][fc][:5]
    saved["state_dict"][fc.replace("weight", "bias")] = saved["state_dict"][fc.replace("weight", "bias")][:5]
    saved["num_classes"] = 5
    fileio.save_torch(saved, str(other / paths.MODEL))
    before = snapshot(tmp_path)
    assert train.main([SGD, *TINY, f"init_from={other / paths.MODEL}", "--quiet", "--results",
                       str(tmp_path / "r2")]) == 2
    line = one_line(capsys)
    assert "init_from" in line and "5 classes" in line and "10" in line
    after = snapshot(tmp_path)
    assert all(after[p] == b for p, b in before.items())
    # the same file claiming 10 classes still does not fit: one line, not the size mismatch
    saved["num_classes"] = 10
    fileio.save_torch(saved, str(other / paths.MODEL))
    assert train.main([SGD, *TINY, f"init_from={other / paths.MODEL}", "--quiet", "--results",
                       str(tmp_path / "r2")]) == 2
    assert "does not fit this run's model" in one_line(capsys)


def test_init_from_a_file_that_is_not_a_model_never_advises_deleting_it(tmp_path, capsys):
    assert train.main([SGD, *TINY, "init_from=/etc/passwd", "--quiet", "--results", str(tmp_path)]) == 2
    line = one_line(capsys)
    assert "/etc/passwd" in line and "not a model.pt written by train.py" in line and "delete" not in line


def test_init_from_identity_does_not_depend_on_where_results_live(run, tmp_path, capsys):
    """Results outside the repository: a fine-tune run's name (and with it --dry-run and the
    report) must survive moving the results folder. The hash takes the run folder's name the
    weights come from, not the path."""
    import sweep

    results, folder = run
    prof = tmp_path / "p.yaml"
    prof.write_text(open(profile_of_the_run(tmp_path)).read()
                    + f"  - name: ft\n    config: {SGD}\n    init_from: sgd\n"
                      f"    overrides: [{', '.join(TINY)}, optim.lr=0.05]\n")
    ft = next(s for s in sweep.expand(str(prof)) if s.entry == "ft")
    sweep.materialize(ft.init_from, results)
    sweep.materialize(ft, results)
    assert ft.cfg["init_from"] == folder                       # an absolute path outside the repo
    train.train(ft.cfg, results=results, quiet=True)
    moved = str(tmp_path / "elsewhere")
    shutil.move(results, moved)
    # the same name from either folder, from the folder or its model.pt
    again = next(s for s in sweep.expand(str(prof)) if s.entry == "ft")
    sweep.materialize(again.init_from, moved)
    sweep.materialize(again, moved)
    assert again.cfg["init_from"] != ft.cfg["init_from"] and again.name == ft.name
    cfg = dict(ft.cfg, init_from=os.path.join(moved, "runs", os.path.basename(folder), paths.MODEL))
    assert C.run_name(cfg) == ft.name
    # another parent run is another run
    assert C.run_name(dict(ft.cfg, init_from=folder + "-other")) != ft.name
    capsys.readouterr()
    assert sweep.main([str(prof), "--results", moved, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"done  {ft.name}" in out and f"done  {os.path.basename(folder)}" in out and "todo" not in out
    ready, waiting = sweep.known(sweep.expand(str(prof)), moved)   # what the report reads
    assert ft.name in [s.name for s in ready] and waiting == []


# ----------------------------------------------------------------------------- CIFAR pickles

class _RunsCode:
    """What a crafted pickle holds: unpickling it calls os.system."""

    def __init__(self, flag):
        self.flag = flag

    def __reduce__(self):
        return (os.system, (f"touch {self.flag}",))


def test_a_crafted_cifar_batch_is_refused_and_runs_no_code(tmp_path, capsys):
    import pickle

    from sparsecs import data
    from tests.test_data import write_cifar10

    write_cifar10(str(tmp_path))
    flag = tmp_path / "code-ran"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    with open(batch, "wb") as f:
        pickle.dump({b"data": _RunsCode(flag), b"labels": [0]}, f)
    pickle.loads(pickle.dumps(_RunsCode(tmp_path / "probe")))     # the payload works when unpickled
    assert (tmp_path / "probe").exists()
    before = snapshot(tmp_path)
    with pytest.raises(data.DataError) as e:
        data.load("cifar10", root=str(tmp_path), download=False)
    msg = str(e.value)
    assert "\n" not in msg and str(batch) in msg and "refused to build" in msg and "system" in msg
    assert not flag.exists() and snapshot(tmp_path) == before
    args = [SGD, "dataset=cifar10", f"data_dir={tmp_path}", *(t for t in TINY if not t.startswith("train_subset")), "--quiet", "--out", str(tmp_path / "run"),
            "--results", str(tmp_path / "res")]
    assert train.main(args) == 1
    assert str(batch) in one_line(capsys) and not flag.exists()


# ----------------------------------------------------------------------------- a damaged λ round

def test_a_damaged_search_round_is_rerun_not_a_blocked_search(run, tmp_path, monkeypatch, capsys):
    """Round 1 of a λ search on disk with `"sparsity": "high"` in its summary: --dry-run lists it
    to run (no traceback, the search not blocked), and the sweep trains it again."""
    import sweep

    results, folder = run
    prof = tmp_path / "cal.yaml"
    prof.write_text(f"evidence: none\nruns:\n  - name: st\n    config: {XRDA}\n    target_sparsity: [0.9]\n"
                    f"    overrides: [{', '.join(TINY)}]\n"
                    f"    calibrate: {{key: optim.lam, start: 1.0e-2, rounds: 1}}\n")
    round1 = sweep.expand(str(prof))[0]
    sweep.materialize(round1, results)
    shutil.copytree(folder, paths.run_dir(results, round1.name))   # a finished round, as far as its files go
    capsys.readouterr()
    assert sweep.main([str(prof), "--results", results, "--dry-run"]) == 0
    out = capsys.readouterr()
    assert f"done  {round1.name}" in out.out and out.err == ""
    set_field(paths.run_dir(results, round1.name), sparsity="high")
    assert sweep.main([str(prof), "--results", results, "--dry-run"]) == 0
    out = capsys.readouterr()
    assert f"todo  {round1.name}" in out.out and "blocked" not in out.out
    notes = out.err.strip().splitlines()   # (the same note twice: listing and counting check it)
    assert notes and all("summary.json: damaged (field 'sparsity'" in n and n.endswith("rerunning it") for n in notes)
    # the sweep starts it again; this stand-in for train.py writes the round's summary back
    import sys
    good = tmp_path / "good.json"
    shutil.copy(os.path.join(folder, paths.SUMMARY), good)
    dest = os.path.join(paths.run_dir(results, round1.name), paths.SUMMARY)
    monkeypatch.setattr(launch, "train_argv", lambda spec, results: [
        sys.executable, "-c", "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])", str(good), dest])
    sweep.main([str(prof), "--results", results, "--jobs", "1", "--threads", "1"])
    out = capsys.readouterr()
    assert f"start {round1.name}" in out.out and f"done {round1.name}" in out.out, out.out
    assert "| blocked  |    0 |" in out.out and "cannot read round" not in out.out and "Traceback" not in out.err
    assert summaries.read_summary(paths.run_dir(results, round1.name))["sparsity"] == summaries.read_summary(folder)["sparsity"]

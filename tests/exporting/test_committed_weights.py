"""The committed csr exports (results/fashion/weights/<run>/model.csr.pt): what a fresh clone
loads without training. Each file must match its sha256 record, rebuild the run whose
summary.json is committed beside it in results/runs/ (sparsity, nonzero count), decode the
same with scipy / numpy as with the repository's reader, and, where the Fashion-MNIST data is
on the machine, score exactly the test accuracy the run recorded."""
import glob
import hashlib
import json
import os
import subprocess

import numpy as np
import pytest
import scipy.sparse
import torch
import torch.nn as nn

from sparsecs import data
from sparsecs import readers
import export
from sparsecs import models
from sparsecs import paths

from tests import REPO

WEIGHTS = os.path.join(REPO, "results", "fashion", "weights")
FILES = sorted(glob.glob(os.path.join(WEIGHTS, "*", "model.csr.pt")))
# the three the README's examples name: xRDA at 95% and 98%, LATS at 95%
NAMED = {"fashion_mnist-resnet20-w0.5-xrda-lam3.47018e-05-s0-7ba15d38",
         "fashion_mnist-resnet20-w0.5-soft_threshold-lam0.00381732-s0-246da00e",
         "fashion_mnist-resnet20-w0.5-xrda-lam8.51178e-05-s0-2689a4e5"}


def run_of(file):
    return os.path.basename(os.path.dirname(file))


def summary_of(file):
    with open(os.path.join(REPO, "results", "runs", run_of(file), "summary.json")) as f:
        return json.load(f)


def test_the_named_runs_are_committed_with_their_summaries():
    assert {run_of(f) for f in FILES} == NAMED
    if not os.path.exists(os.path.join(REPO, ".git")):
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "results/runs", "results/fashion/weights"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    for f in FILES:
        run = run_of(f)
        for p in (f"results/runs/{run}/summary.json", f"results/fashion/weights/{run}/model.csr.pt",
                  f"results/fashion/weights/{run}/model.csr.pt.sha256"):
            assert p in tracked, p


@pytest.mark.parametrize("file", FILES, ids=run_of)
def test_file_matches_its_checksum_and_its_export_record(file):
    sha = hashlib.sha256(open(file, "rb").read()).hexdigest()
    with open(file + ".sha256") as f:
        assert f.read() == f"{sha}  model.csr.pt\n"          # what sha256sum writes
    with open(os.path.join(os.path.dirname(file), "export.json")) as f:
        facts = json.load(f)["csr"]
    assert facts["sha256"] == sha and facts["bytes"] == os.path.getsize(file)
    assert 10_000 < facts["bytes"] < 100_000                  # tens of KB, against 308 KB dense
    assert export.verify(file) == ("csr", sha)


def decode_independently(file):
    """The state dict of a csr export, decoded from its raw arrays with scipy.sparse (CSR)
    and numpy bit arithmetic (masks), not with exporting/csr.py."""
    obj = torch.load(file, map_location="cpu", weights_only=True)
    w = obj["weights"]
    crow, col = w["crow"].numpy().astype(np.int64), w["col"].numpy().astype(np.int64)
    bits = w["bits"].numpy()
    at = {"val": 0, "crow": 0, "col": 0, "bit": 0}
    sd = {}
    for e in w["tensors"]:
        vals = w["values"][e["dtype"]].numpy()
        v = vals[at["val"]:at["val"] + e["nnz"]]
        at["val"] += e["nnz"]
        shape = e["shape"]
        rows, ncols = shape[0], int(np.prod(shape[1:])) if len(shape) > 1 else 1
        if e["kind"] == "dense":
            t = v.reshape(shape)
        elif e["kind"] == "csr":
            indptr = crow[at["crow"]:at["crow"] + rows + 1]
            indices = col[at["col"]:at["col"] + e["nnz"]]
            at["crow"] += rows + 1
            at["col"] += e["nnz"]
            t = scipy.sparse.csr_matrix((v, indices, indptr), shape=(rows, ncols)).toarray().reshape(shape)
        else:
            n = e["nbits"]
            chunk = bits[at["bit"]:at["bit"] + (n + 7) // 8]
            at["bit"] += (n + 7) // 8
            mask = ((chunk[:, None] >> np.arange(7, -1, -1)) & 1).reshape(-1)[:n].astype(bool)  # MSB first
            t = np.zeros(n, dtype=vals.dtype)
            t[mask] = v
            t = t.reshape(shape)
        sd[e["name"]] = torch.from_numpy(np.array(t))
    sd.update(w["others"])
    saved = {k: obj[k] for k in ("model", "width", "num_classes", "dataset")}
    return saved, {k: sd[k] for k in obj["order"]}


@pytest.mark.parametrize("file", FILES, ids=run_of)
def test_file_rebuilds_the_run_it_was_exported_from(file):
    s = summary_of(file)
    model = export.load_csr(file)
    assert not model.training
    saved, sd = decode_independently(file)
    assert (saved["model"], saved["width"], saved["dataset"]) == (s["model"], s["width"], s["dataset"])
    ours = model.state_dict()
    assert list(ours) == list(sd)
    assert all(torch.equal(ours[k], sd[k]) for k in sd)

    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    n_weights = sum(w.numel() for w in weights)
    nnz = sum(int(torch.count_nonzero(w)) for w in weights)
    assert (nnz, n_weights) == (s["nnz"], s["n_weights"])
    assert 1 - nnz / n_weights == pytest.approx(s["sparsity"], rel=1e-12)
    assert sum(p.numel() for p in model.parameters()) == s["n_params"]

    # the dense model built from the independent decoding gives the same logits, bit for bit
    dense = models.from_saved({**saved, "state_dict": sd})
    dense.load_state_dict(sd)
    dense.eval()
    x = torch.randn(16, *data.get(s["dataset"]).input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(x), dense(x)
    assert torch.equal(a, b) and torch.equal(a.argmax(1), b.argmax(1))
    assert (a - a[:1]).abs().amax(1)[1:].min() > 1e-3        # logits that depend on the input


def _fashion_dir(tmp_path_factory):
    """A data_dir holding Fashion-MNIST: the repository's data/, else Debian's package
    extracted into a temporary one; None where neither is on this machine."""
    here = os.path.join(REPO, "data")
    if all(os.path.isfile(os.path.join(here, "FashionMNIST", "raw", f)) for f in readers.FASHION_FILES):
        return here
    if all(os.path.isfile(os.path.join(readers.SYSTEM_FASHION, f + ".gz")) for f in readers.FASHION_FILES):
        return str(tmp_path_factory.mktemp("fashion"))
    return None


@pytest.fixture(scope="module")
def fashion_test_set(tmp_path_factory):
    root = _fashion_dir(tmp_path_factory)
    if root is None:
        pytest.skip("Fashion-MNIST is not on this machine (apt-get install dataset-fashion-mnist)")
    d = data.load("fashion_mnist", root, device="cpu", download=False)
    return list(d.test_batches(1000))


@pytest.mark.parametrize("file", FILES, ids=run_of)
def test_file_scores_the_recorded_test_accuracy(file, fashion_test_set):
    assert accuracy_on(export.load_csr(file), fashion_test_set) == pytest.approx(summary_of(file)["test_acc"], abs=1e-9)


def accuracy_on(model, batches):
    """The model's accuracy (%) over the whole Fashion-MNIST test set."""
    correct = n = 0
    with torch.no_grad():
        for x, y in batches:
            correct += int((model(x).argmax(1) == y).sum())
            n += len(y)
    assert n == 10_000
    return 100.0 * correct / n


def test_hub_eval_and_benchmark_take_a_committed_file(tmp_path, capsys):
    import eval as E
    from benchmarks import bench_inference as B

    file = next(f for f in FILES if "lam8.51178e-05" in f)
    _, sd = decode_independently(file)
    model = torch.hub.load(REPO, "sparse_model", run=os.path.relpath(file), source="local")
    assert not model.training and all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())

    # a copy altered at the same size is refused by each, in one line, before it is read
    bad = tmp_path / "model.csr.pt"
    blob = bytearray(open(file, "rb").read())
    blob[len(blob) // 2] ^= 0xFF
    bad.write_bytes(bytes(blob))
    (tmp_path / "model.csr.pt.sha256").write_text(open(file + ".sha256").read())
    with pytest.raises(paths.RunFolderError, match="altered or damaged") as e:
        torch.hub.load(REPO, "sparse_model", run=str(bad), source="local")
    assert "\n" not in str(e.value)
    capsys.readouterr()
    assert E.main([str(bad)]) == 1
    err = capsys.readouterr().err
    assert "altered or damaged" in err and err.count("\n") == 1
    assert B.main([str(bad)]) == 1
    err = capsys.readouterr().err
    assert "altered or damaged" in err and err.count("\n") == 1


def test_the_readme_examples_name_a_committed_file():
    import re

    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    start = readme.index("\n## Load, export, measure\n")
    section = readme[start:readme.index("\n## ", start + 1)]
    named = re.findall(r'^W ?= ?"?(results/\S+?\.pt)"?$', section, re.M)
    assert len(named) == 2                        # the Python example and the shell one
    for p in named:
        assert os.path.join(REPO, p) in FILES, p


# fashion32's csr exports (issue 35 item 4): bf16 + channels_last runs whose predictions.npy is
# committed, so each export must give back the run's prediction on every test image when
# evaluated as its final evaluation was (its precision, memory format and batch size)
FILES32 = sorted(glob.glob(os.path.join(REPO, "results", "fashion32", "weights", "*", "model.csr.pt")))


@pytest.mark.parametrize("file", FILES32, ids=run_of)
def test_fashion32_export_matches_its_checksum_and_rebuilds_its_run(file):
    sha = hashlib.sha256(open(file, "rb").read()).hexdigest()
    with open(file + ".sha256") as f:
        assert f.read() == f"{sha}  model.csr.pt\n"
    assert export.verify(file) == ("csr", sha)
    s = summary_of(file)
    model = export.load_csr(file)
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    nnz = sum(int(torch.count_nonzero(w)) for w in weights)
    assert (nnz, sum(w.numel() for w in weights)) == (s["nnz"], s["n_weights"])
    _, sd = decode_independently(file)
    assert all(torch.equal(model.state_dict()[k], sd[k]) for k in sd)


@pytest.fixture(scope="module")
def fashion_data(tmp_path_factory):
    root = _fashion_dir(tmp_path_factory)
    if root is None:
        pytest.skip("Fashion-MNIST is not on this machine (apt-get install dataset-fashion-mnist)")
    return data.load("fashion_mnist", root, device="cpu", download=False)


@pytest.mark.parametrize("file", FILES32, ids=run_of)
def test_fashion32_export_gives_the_runs_own_predictions(file, fashion_data):
    from sparsecs.exporting import accuracy as A

    run_dir = os.path.join(REPO, "results", "runs", run_of(file))
    cfg = A.run_config(run_dir, {})
    assert (cfg["precision"], cfg["channels_last"]) == ("bf16", True)
    recorded = A.recorded_predictions(run_dir, 10_000)
    assert recorded is not None
    labels = fashion_data.test_labels()
    assert 100.0 * int((recorded == labels).sum()) / 10_000 == pytest.approx(summary_of(file)["test_acc"], abs=1e-9)
    # the first 2,000 test images or so (bf16 on a CPU without native bf16 takes ~30 s a model
    # for all 10,000): the run's own eval batches, so the same numbers on fewer images
    logits, y = A.test_logits(export.load_csr(file), fashion_data, cfg, most=2_000)
    assert 2_000 <= len(y) < 10_000 and torch.equal(y, labels[:len(y)])
    recorded = recorded[:len(y)]
    # on the CPU the run trained on (Intel AMX) every prediction is the run's; another CPU's bf16
    # kernels round differently, so there a prediction may differ only at a tie (bf16 margin)
    differ = logits.argmax(1) != recorded
    assert not (differ & ~A.ties(logits, A.MARGIN_RTOL["bf16"])).any()
    assert int(differ.sum()) <= 10

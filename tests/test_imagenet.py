"""ImageNet from an ImageFolder tree (imagefolder.py through data.load), and rank/world sharding
of both data classes. The tree is written here: 3 classes x 4 train JPEGs, 3 x 2 val PNGs of
varying sizes; each image is a flat colour that encodes (split, class, index) plus noise."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sparsecs import data
from sparsecs import imagefolder
from sparsecs import metrics
from sparsecs import models
from sparsecs import summaries
import train
from tests import REPO

CLASSES = ["n01", "n02", "n03"]
N_TRAIN, N_VAL = 4, 2
MEAN = torch.tensor(imagefolder.MEAN).view(1, 3, 1, 1)
STD = torch.tensor(imagefolder.STD).view(1, 3, 1, 1)


def _colour(split, c, i):
    return (30 + 60 * c, 30 + 40 * i, 200 if split == "train" else 100)


def write_tree(base, classes=CLASSES, n_train=N_TRAIN, n_val=N_VAL, seed=0):
    rng = np.random.default_rng(seed)
    for split, n, ext in (("train", n_train, "JPEG"), ("val", n_val, "png")):
        for c, name in enumerate(classes):
            os.makedirs(os.path.join(base, split, name))
            for i in range(n):
                h, w = int(rng.integers(24, 72)), int(rng.integers(24, 72))
                px = np.array(_colour(split, c, i)) + rng.integers(-8, 9, size=(h, w, 3))
                Image.fromarray(px.clip(0, 255).astype(np.uint8)).save(
                    os.path.join(base, split, name, f"img{i}.{ext}"), quality=95)


def decode(x):
    """(split, class, index) of each normalized image, from its mean colour."""
    rgb = ((x * STD + MEAN) * 255).mean((2, 3))
    out = []
    for r, g, b in rgb.tolist():
        out.append(("train" if b > 150 else "val", round((r - 30) / 60), round((g - 30) / 40)))
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("imagenet_root")
    write_tree(os.path.join(r, "imagenet"))
    return str(r)


@pytest.fixture(scope="module")
def folder(root):
    return data.load("imagenet", root, workers=0)


def cat(batches):
    xs, ys = zip(*batches)
    return torch.cat(xs), torch.cat(ys)


# ---- loading and batches ------------------------------------------------------------------

def test_loads_the_tree(folder, one_thread):
    d = folder
    assert isinstance(d, imagefolder.FolderData) and d.name == "imagenet"
    assert d.num_classes == 3 and d.classes == CLASSES and d.device == torch.device("cpu")
    assert d.input_shape == (3, 224, 224) == data.get("imagenet").input_shape
    assert d.steps_per_epoch(5) == 3 and d.steps_per_epoch(12) == 1
    rng = torch.get_rng_state()
    batches = list(d.train_batches(5, seed=0, epoch=0))
    assert torch.equal(torch.get_rng_state(), rng)      # the per-image seeding leaves it alone
    assert [tuple(x.shape) for x, _ in batches] == [(5, 3, 224, 224)] * 2 + [(2, 3, 224, 224)]
    x, y = cat(batches)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    seen = decode(x)
    assert all(split == "train" for split, _, _ in seen)
    assert [c for _, c, _ in seen] == y.tolist()                   # label = the image's folder
    assert sorted((c, i) for _, c, i in seen) == [(c, i) for c in range(3) for i in range(4)]
    # the order is epoch_generator's permutation of the ImageFolder list, as for data.Data
    perm = torch.randperm(12, generator=data.epoch_generator(0, 0))
    assert y.tolist() == [d.train_samples[p][1] for p in perm.tolist()]
    tx, ty = cat(d.test_batches(4))
    assert tx.shape == (6, 3, 224, 224) and ty.tolist() == [0, 0, 1, 1, 2, 2]
    assert decode(tx) == [("val", c, i) for c in range(3) for i in range(2)]


def test_root_itself_may_hold_train_and_val(tmp_path):
    write_tree(str(tmp_path), classes=["a", "b"], n_train=1, n_val=1)
    d = data.load("imagenet", str(tmp_path), workers=0)
    assert d.classes == ["a", "b"] and len(d.train_samples) == 2 and len(d.test_samples) == 2


@pytest.mark.parametrize("flip", [None, False])
def test_pipeline_is_torchvisions(folder, flip, one_thread):
    """Our batches = torchvision's RandomResizedCrop(224) (+ flip) + ToTensor + Normalize of
    each image, with the per-position seeds of the epoch generator; eval: Resize + CenterCrop."""
    from torchvision import transforms as T
    from torchvision.datasets.folder import default_loader

    d = folder
    tail = [T.ToTensor(), T.Normalize(imagefolder.MEAN, imagefolder.STD)]
    train = T.Compose([T.RandomResizedCrop(224)] + ([T.RandomHorizontalFlip()] if flip is None else []) + tail)
    evalt = T.Compose([T.Resize(256), T.CenterCrop(224)] + tail)
    g = data.epoch_generator(3, 1)
    perm = torch.randperm(12, generator=g)
    seeds = torch.randint(0, 2 ** imagefolder.SEED_BITS, (12,), generator=g)
    x, _ = next(d.train_batches(4, seed=3, epoch=1, flip=flip))
    for k in range(4):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seeds[k]))
            ref = train(default_loader(d.train_samples[int(perm[k])][0]))
        assert torch.allclose(x[k], ref, atol=1e-5)
    x, _ = next(d.train_batches(4, seed=3, epoch=1, augment=False))
    ref = torch.stack([evalt(default_loader(d.train_samples[int(p)][0])) for p in perm[:4]])
    assert torch.allclose(x, ref, atol=1e-5)
    tx, _ = cat(d.test_batches(6))
    ref = torch.stack([evalt(default_loader(p)) for p, _ in d.test_samples])
    assert torch.allclose(tx, ref, atol=1e-5)


def test_random_resized_crops_and_flips_vary(folder, one_thread):
    # each position gets its own draw: over a few epochs the crops differ from the center crop
    x, y = cat(folder.train_batches(12, seed=0, epoch=0))
    xe, ye = cat(folder.train_batches(12, seed=0, epoch=0, augment=False))
    assert torch.equal(y, ye)                           # the same order either way
    assert not torch.allclose(x, xe, atol=1e-3)
    assert x.shape == xe.shape == (12, 3, 224, 224)


def test_determinism_and_workers(root, folder, one_thread):
    a = list(folder.train_batches(5, seed=1, epoch=2))
    b = list(folder.train_batches(5, seed=1, epoch=2))
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    xa, ya = cat(a)
    xo, yo = cat(folder.train_batches(5, seed=1, epoch=3))
    assert not torch.equal(ya, yo) and not torch.equal(xa, xo)
    # two worker processes decode the same batches, bit for bit
    two = data.load("imagenet", root, workers=2)
    w = list(two.train_batches(5, seed=1, epoch=2, erase=0.5, channels_last=True, dtype=torch.bfloat16))
    r = list(folder.train_batches(5, seed=1, epoch=2, erase=0.5, channels_last=True, dtype=torch.bfloat16))
    assert len(w) == len(r) == 3
    for (xw, yw), (xr, yr) in zip(w, r):
        assert torch.equal(xw, xr) and torch.equal(yw, yr)
        assert xw.dtype == torch.bfloat16 and xw.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cat(two.test_batches(4))[0], cat(folder.test_batches(4))[0])
    # erasing happened (zeros after normalization) and kept the order
    xe, ye = cat(folder.train_batches(5, seed=1, epoch=2, erase=1.0))
    assert torch.equal(ye, ya) and (xe == 0).all(1).flatten(1).any(1).float().mean() > 0.5


# ---- sharding -------------------------------------------------------------------------------

def check_shards(d, batch_size, world, **kw):
    full = list(d.train_batches(batch_size, seed=4, epoch=1, **kw))
    parts = [list(d.train_batches(batch_size, seed=4, epoch=1, rank=r, world=world, **kw))
             for r in range(world)]
    assert all(len(p) == len(full) == d.steps_per_epoch(batch_size) for p in parts)
    for i, (x, y) in enumerate(full):
        sizes = [len(t) for t in torch.arange(len(y)).tensor_split(world)]
        assert [len(p[i][1]) for p in parts] == sizes
        assert torch.equal(torch.cat([p[i][0] for p in parts]), x)
        assert torch.equal(torch.cat([p[i][1] for p in parts]), y)
    return parts


@pytest.mark.parametrize("world", [2, 3, 4])
def test_folder_train_shards_are_the_global_batch(folder, world, one_thread):
    parts = check_shards(folder, 5, world)
    if world == 4:   # the last batch has 2 images: ranks 2 and 3 get empty ones
        assert parts[3][-1][0].shape == (0, 3, 224, 224) and parts[3][-1][1].numel() == 0


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", workers=3)   # the in-memory sets ignore workers


@pytest.mark.parametrize("world", [2, 3])
def test_data_train_shards_are_the_global_batch(digits, world, one_thread):
    check_shards(digits, 200, world, erase=0.5)
    check_shards(digits, 200, world, augment=False)


def check_test_shards(d, n, world, batch_size):
    full = cat(d.test_batches(1000))
    got = []
    for r in range(world):
        b = list(d.test_batches(batch_size, rank=r, world=world))
        assert all(len(y) <= batch_size for _, y in b)
        got.append(cat(b) if b else (full[0][:0], full[1][:0]))
    want = [len(t) for t in torch.arange(n).tensor_split(world)]
    assert [len(y) for _, y in got] == want
    assert torch.equal(torch.cat([x for x, _ in got]), full[0])
    assert torch.equal(torch.cat([y for _, y in got]), full[1])


def test_test_shards_partition_the_test_set(folder, digits, one_thread):
    check_test_shards(digits, 360, 3, 50)
    check_test_shards(digits, 360, 7, 1000)
    check_test_shards(folder, 6, 4, 1)
    check_test_shards(folder, 6, 7, 2)      # more ranks than images: the last one gets none


def test_bad_rank(digits, folder):
    for d in (digits, folder):
        with pytest.raises(ValueError, match="rank"):
            next(d.train_batches(10, 0, 0, rank=2, world=2))
        with pytest.raises(ValueError, match="rank"):
            next(d.train_batches(10, 0, 0, rank=1))
        with pytest.raises(ValueError, match="world"):
            next(d.test_batches(10, world=0))


# ---- subset ---------------------------------------------------------------------------------

def test_subset(root, digits, one_thread):
    d = data.load("imagenet", root, workers=0).subset(5)
    assert d.steps_per_epoch(2) == 3
    x, y = cat(d.train_batches(2, seed=0, epoch=0, augment=False))
    assert len(y) == 5
    assert sorted(decode(x)) == [("train", 0, i) for i in range(4)] + [("train", 1, 0)]
    assert len(list(d.test_batches(4))) == 2          # the test set is untouched
    dg = data.load("digits")
    assert dg.subset(100) is dg and dg.steps_per_epoch(10) == 10
    assert torch.equal(dg.train_y, digits.train_y[:100])
    assert sorted(cat(dg.train_batches(32, seed=0, epoch=0))[1].tolist()) == sorted(digits.train_y[:100].tolist())


# ---- errors ---------------------------------------------------------------------------------

def one_line(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg and excinfo.value.__context__ is None and excinfo.value.__cause__ is None
    return msg


def test_missing_tree(tmp_path):
    with pytest.raises(data.DataError) as e:
        data.load("imagenet", str(tmp_path), download=True)
    msg = one_line(e)
    assert os.path.join(str(tmp_path), "imagenet", "train") in msg and "cannot be downloaded" in msg


def test_missing_split_and_empty_folders(tmp_path):
    base = tmp_path / "imagenet"
    write_tree(str(base), n_val=1)
    (base / "val" / "n02" / "img0.png").unlink()
    with pytest.raises(data.DataError) as e:     # val/n02 is a class folder with no image
        data.load("imagenet", str(tmp_path))
    assert f"{base / 'val' / 'n02'} has no images" in one_line(e)
    for f in (base / "val").rglob("*.png"):
        f.unlink()
    with pytest.raises(data.DataError) as e:     # class folders, no image at all
        data.load("imagenet", str(tmp_path))
    assert f"no images in class folders of {base / 'val'}" in one_line(e)
    for c in CLASSES:
        (base / "val" / c).rmdir()
    with pytest.raises(data.DataError) as e:     # val/ holds no class folder
        data.load("imagenet", str(tmp_path))
    assert f"no images in class folders of {base / 'val'}" in one_line(e)
    (base / "val").rmdir()
    with pytest.raises(data.DataError) as e:
        data.load("imagenet", str(tmp_path))
    msg = one_line(e)
    assert f"{base / 'val'} is missing" in msg and str(base / "val" / "<class>") in msg


def test_mismatched_classes(tmp_path):
    base = tmp_path / "imagenet"
    write_tree(str(base), n_train=1, n_val=1)
    os.rename(base / "val" / "n03", base / "val" / "n04")
    with pytest.raises(data.DataError) as e:
        data.load("imagenet", str(tmp_path))
    msg = one_line(e)
    assert "different class folders" in msg and "'n03' only in train/" in msg


def test_config_knows_imagenet():
    from sparsecs import config as C

    cfg = C.resolve({"dataset": "imagenet", "model": "resnet50"})
    assert cfg["flip"] is True and cfg["crop_padding"] == 0


# ---- whole runs ---------------------------------------------------------------------------

def test_train_py_runs_on_the_folder_in_one_and_two_processes(root, tmp_path):
    """The real CLI, end to end on ImageNet-shaped data: MobileNet-V1 under the paper B recipe
    keys (warm-up, label smoothing), FLOPs counted at 224x224; then the same run under torchrun
    with 2 gloo processes (DataLoader shards) trains to the same sparsity pattern size."""
    args = [os.path.join(REPO, "configs/imagenet/mobilenet_v1-slats.yaml"), f"data_dir={root}",
            "width=0.125", "epochs=2", "batch_size=6", "eval_batch_size=3", "workers=0",
            "device=cpu", "precision=fp32", "channels_last=false", "warmup_epochs=1",
            "optim.final_threshold=0.02"]
    one = str(tmp_path / "one")
    assert train.main(args + ["--out", one, "--results", str(tmp_path), "--quiet"]) == 0
    s = summaries.read_summary(one)
    m = models.get_model("mobilenet_v1", num_classes=3, width=0.125)
    assert s["flops_dense"] == metrics.counts(m, (1, 3, 224, 224))["flops_dense"]
    assert 0 < s["sparsity"] < 1 and s["world_size"] == 1
    import eval as E
    again, _ = E.evaluate_file(one, device="cpu")                 # eval.py agrees with training
    assert again["test_acc"] == pytest.approx(s["test_acc"]) and again["flops_dense"] == s["flops_dense"]
    spec = tmp_path / "args.json"
    two = str(tmp_path / "two")
    spec.write_text(json.dumps([args + ["--out", two, "--results", str(tmp_path / "r2"), "--quiet"]]))
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "tests.ddp_many", str(spec)], capture_output=True, text=True,
                       cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    s2 = summaries.read_summary(two)
    assert s2["world_size"] == 2 and s2["epochs"] == 2 and s2["n_weights"] == s["n_weights"]

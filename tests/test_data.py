"""data.py: real on-disk CIFAR formats (tiny), digits, normalization, augmentation, batching."""

import dataclasses
import gzip
import os
import pickle
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from sparsecs import data
from sparsecs import readers
from sparsecs import sampling

MEAN = torch.tensor(data.CIFAR_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(data.CIFAR_STD).view(1, 3, 1, 1)


# ---- tiny data sets in the official python-pickle formats ----------------------------------

def _rows(n, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root, n=4):
    """5 train batches of n images + a test batch of n; returns (train rows, labels, test ...)."""
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    xs, ys = [], []
    for i in range(1, 6):
        x, y = _rows(n, i), [(i + j) % 10 for j in range(n)]
        _dump(os.path.join(folder, f"data_batch_{i}"),
              {b"batch_label": b"training batch", b"labels": y, b"data": x,
               b"filenames": [b"f.png"] * n})
        xs.append(x)
        ys += y
    tx, ty = _rows(n, 99), [9 - j for j in range(n)]
    _dump(os.path.join(folder, "test_batch"), {b"labels": ty, b"data": tx})
    return np.concatenate(xs), np.array(ys), tx, np.array(ty)


def write_cifar100(root, n_train=6, n_test=3):
    folder = os.path.join(root, "cifar-100-python")
    os.makedirs(folder)
    x, tx = _rows(n_train, 1), _rows(n_test, 2)
    y, ty = [17 * j % 100 for j in range(n_train)], [99, 0, 50][:n_test]
    _dump(os.path.join(folder, "train"),
          {b"data": x, b"fine_labels": y, b"coarse_labels": [v // 5 for v in y]})
    _dump(os.path.join(folder, "test"),
          {b"data": tx, b"fine_labels": ty, b"coarse_labels": [v // 5 for v in ty]})
    return x, np.array(y), tx, np.array(ty)


def check_loaded(d, arrays, num_classes):
    x, y, tx, ty = arrays
    assert d.num_classes == num_classes
    for got, rows in ((d.train_x, x), (d.test_x, tx)):
        assert got.dtype == torch.uint8 and got.shape == (len(rows), 3, 32, 32)
        # channel-major rows: the first 1024 bytes are the red plane, row by row
        assert torch.equal(got, torch.from_numpy(rows).view(-1, 3, 32, 32))
        assert torch.equal(got[:, 0].reshape(len(rows), -1), torch.from_numpy(rows[:, :1024]))
    for got, labels in ((d.train_y, y), (d.test_y, ty)):
        assert got.dtype == torch.int64
        assert got.tolist() == labels.tolist()


def test_cifar10_pickles(tmp_path):
    arrays = write_cifar10(str(tmp_path))
    d = data.load("cifar10", root=str(tmp_path), download=False)
    assert d.name == "cifar10" and len(d.train_y) == 20 and len(d.test_y) == 4
    check_loaded(d, arrays, 10)


def test_cifar100_pickles_use_fine_labels(tmp_path):
    arrays = write_cifar100(str(tmp_path))
    d = data.load("cifar100", root=str(tmp_path), download=False)
    check_loaded(d, arrays, 100)


@pytest.mark.parametrize("name, folder, archive, writer", [
    ("cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz", write_cifar10),
    ("cifar100", "cifar-100-python", "cifar-100-python.tar.gz", write_cifar100),
])
def test_archive_is_extracted(tmp_path, name, folder, archive, writer):
    src, root = tmp_path / "src", tmp_path / "root"
    arrays = writer(str(src))
    root.mkdir()
    with tarfile.open(root / archive, "w:gz") as tar:
        tar.add(src / folder, arcname=folder)
    d = data.load(name, root=str(root), download=False)
    assert (root / folder).is_dir()
    check_loaded(d, arrays, data.get(name).num_classes)


def _assert_one_line_missing(msg, root):
    assert "\n" not in msg
    assert "cifar-10-python.tar.gz" in msg
    assert os.path.join(str(root), "cifar-10-batches-py") in msg


def test_missing_offline_is_one_line(tmp_path):
    with pytest.raises(data.DataError) as e:
        data.load("cifar10", root=str(tmp_path), download=False)
    _assert_one_line_missing(str(e.value), tmp_path)


@pytest.fixture
def no_network(monkeypatch):
    """urlopen fails as it does offline; the list records the attempts."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


def test_download_failure_is_one_line(tmp_path, no_network):
    with pytest.raises(data.DataError) as e:
        data.load("cifar10", root=str(tmp_path), download=True)
    assert no_network, "the download was not attempted"
    msg = str(e.value)
    _assert_one_line_missing(msg, tmp_path)
    assert "could not be downloaded" in msg and "no network in tests" in msg


def test_unknown_name_and_corrupt_file(tmp_path):
    with pytest.raises(data.DataError) as e:
        data.load("mnist")
    assert "\n" not in str(e.value) and "cifar100" in str(e.value)
    write_cifar10(str(tmp_path))
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(data.DataError) as e:
        data.load("cifar10", root=str(tmp_path), download=False)
    assert "\n" not in str(e.value) and "data_batch_3" in str(e.value)
    os.remove(tmp_path / "cifar-10-batches-py" / "test_batch")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(data.DataError) as e:
        data.load("cifar10", root=str(tmp_path), download=False)
    assert "\n" not in str(e.value) and "data_batch_3" in str(e.value)


def test_corrupt_archive(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"garbage")
    with pytest.raises(data.DataError) as e:
        data.load("cifar10", root=str(tmp_path), download=False)
    assert "\n" not in str(e.value) and "cifar-10-python.tar.gz" in str(e.value)


# ---- digits ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def test_digits(digits):
    d = digits
    assert d.num_classes == 10 and data.get("digits").num_classes == 10
    assert d.train_x.shape == (1437, 3, 32, 32) and d.test_x.shape == (360, 3, 32, 32)
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64
    for x in (d.train_x, d.test_x):
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    assert sorted(d.train_y.unique().tolist()) == list(range(10))
    assert sorted(d.test_y.unique().tolist()) == list(range(10))
    assert torch.bincount(d.test_y).min() >= 35   # stratified: 36 of each class, give or take
    assert d.train_x.max() > 200 and d.train_x.min() == 0
    again = data.load("digits")
    for a, b in ((d.train_x, again.train_x), (d.train_y, again.train_y),
                 (d.test_x, again.test_x), (d.test_y, again.test_y)):
        assert torch.equal(a, b)


# ---- batching ---------------------------------------------------------------------------------

def make_data(n_train, n_test=8, train_x=None):
    """In-memory Data whose pixels encode (image, channel, row, col): values are unique."""
    if train_x is None:
        train_x = torch.randint(0, 256, (n_train, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(n_train) % 10
    tx = torch.randint(0, 256, (n_test, 3, 32, 32), dtype=torch.uint8)
    return data.Data(dataclasses.replace(data.get("cifar10"), name="fake"), train_x, y, tx,
                     torch.arange(n_test) % 10)


def test_normalization_constant_image():
    values = [0, 1, 128, 255]
    x = torch.tensor(values, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 32, 32)
    d = make_data(4, train_x=x.clone())
    d.test_x = x.clone()
    d.test_y = torch.arange(4)
    expected = (torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1) / 255 - MEAN) / STD
    (tx, ty), = list(d.test_batches(10))
    assert tx.dtype == torch.float32 and ty.tolist() == [0, 1, 2, 3]
    assert torch.allclose(tx, expected.expand(-1, 3, 32, 32), rtol=0, atol=1e-5)
    (x1, y1), = list(d.train_batches(10, seed=0, epoch=0, augment=False))
    assert torch.allclose(x1, expected[y1].expand(-1, 3, 32, 32), rtol=0, atol=1e-5)


def _coordinate_images(n):
    """Every pixel's value encodes its coordinates: channel 0 = row + 1, channel 1 = col + 1."""
    r = torch.arange(1, 33).view(32, 1).expand(32, 32)
    img = torch.stack([r, r.t(), torch.full((32, 32), 255)]).to(torch.uint8)
    return img.expand(n, -1, -1, -1).clone()


def _random_images(n):
    """Random pixels in 1..255 (0 is reserved for the padding)."""
    g = torch.Generator().manual_seed(1)
    return torch.randint(1, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def _windows(img):
    """All crops of the zero-padded image, flipped or not: {bytes: (dy, dx, flipped)}."""
    p = torch.nn.functional.pad(img, (4, 4, 4, 4))
    assert p.shape == (3, 40, 40)
    out = {}
    for dy in range(9):
        for dx in range(9):
            w = p[:, dy:dy + 32, dx:dx + 32]
            out[w.numpy().tobytes()] = (dy, dx, False)
            out[w.flip(-1).numpy().tobytes()] = (dy, dx, True)
    assert len(out) == 162   # every (dy, dx, flip) gives a different image
    return out


@pytest.mark.parametrize("images", [_coordinate_images, _random_images])
def test_augmentation_is_a_padded_crop_maybe_flipped(images):
    n = 300
    raw = images(n)
    d = make_data(n, train_x=raw)
    d.train_y = torch.arange(n)          # label = index, to find the source image
    windows = {}
    seen = []
    for x, y in d.train_batches(64, seed=3, epoch=5):
        u = ((x * STD + MEAN) * 255).round().clamp(0, 255).to(torch.uint8)  # undo normalization
        assert torch.allclose(u.float(), (x * STD + MEAN) * 255, atol=1e-3)
        for img, i in zip(u, y.tolist()):
            key = raw[i].numpy().tobytes()
            if key not in windows:
                windows[key] = _windows(raw[i])
            where = windows[key].get(img.numpy().tobytes())
            assert where is not None, "augmented image is not a (flipped) window of the padded one"
            seen.append(where)
    assert len(seen) == n
    assert {w[2] for w in seen} == {False, True}
    assert 0.35 < np.mean([w[2] for w in seen]) < 0.65
    assert {w[0] for w in seen} == set(range(9)) and {w[1] for w in seen} == set(range(9))
    assert len({w[:2] for w in seen}) >= 40


def test_padding_is_zero():
    # an all-255 image: outside the crop window the padded border must be exactly 0
    n = 200
    d = make_data(n, train_x=torch.full((n, 3, 32, 32), 255, dtype=torch.uint8))
    zero = ((0 - MEAN) / STD).view(3)
    n_border = 0
    for x, _ in d.train_batches(100, seed=1, epoch=0):
        is_zero = torch.isclose(x, zero.view(1, 3, 1, 1).expand_as(x), atol=1e-5)
        n_border += int(is_zero[:, 0].flatten(1).any(1).sum())
        assert (is_zero | torch.isclose(x, ((1 - MEAN) / STD).expand_as(x), atol=1e-5)).all()
    assert n_border > n // 2   # most crops include some border


def _order(d, bs, seed, epoch, **kw):
    return torch.cat([y for _, y in d.train_batches(bs, seed=seed, epoch=epoch, **kw)])


def test_determinism_order_and_partial_batch():
    n = 103
    d = make_data(n)
    d.train_y = torch.arange(n)
    a = list(d.train_batches(16, seed=7, epoch=2))
    b = list(d.train_batches(16, seed=7, epoch=2))
    assert len(a) == d.steps_per_epoch(16) == 7
    assert [len(y) for _, y in a] == [16] * 6 + [7]
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    order = torch.cat([y for _, y in a])
    assert sorted(order.tolist()) == list(range(n))          # each example exactly once
    assert not torch.equal(order, _order(d, 16, 7, 3))       # another epoch: another order
    assert not torch.equal(order, _order(d, 16, 8, 2))       # another seed: another order
    assert torch.equal(order, _order(d, 16, 7, 2, augment=False))   # same order unaugmented
    assert torch.equal(order, _order(d, 50, 7, 2))           # batch size does not change it
    assert not torch.equal(a[0][0], next(d.train_batches(16, seed=7, epoch=3))[0])


def test_unaugmented_batches_are_the_images():
    d = make_data(10)
    d.train_y = torch.arange(10)
    for x, y in d.train_batches(4, seed=0, epoch=0, augment=False):
        expected = (d.train_x[y].float() / 255 - MEAN) / STD
        assert torch.allclose(x, expected, atol=1e-5)
    tx = torch.cat([x for x, _ in d.test_batches(3)])
    assert torch.allclose(tx, (d.test_x.float() / 255 - MEAN) / STD, atol=1e-5)
    assert torch.equal(torch.cat([y for _, y in d.test_batches(3)]), d.test_y)


def test_channels_last_and_bf16():
    d = make_data(20)
    ref = next(d.train_batches(8, seed=0, epoch=0))[0]
    for augment in (True, False):
        x, y = next(d.train_batches(8, seed=0, epoch=0, augment=augment, dtype=torch.bfloat16,
                                    channels_last=True))
        assert x.dtype == torch.bfloat16 and x.shape == (8, 3, 32, 32) and y.dtype == torch.int64
        assert x.is_contiguous(memory_format=torch.channels_last)
        if augment:
            assert torch.allclose(x.float(), ref, atol=0.05)   # same crops, bf16 rounding
    x, _ = next(d.test_batches(8, dtype=torch.bfloat16, channels_last=True))
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    x, _ = next(d.train_batches(8, seed=0, epoch=0, channels_last=True))
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, ref)
    x, _ = next(d.test_batches(8))
    assert x.is_contiguous()


# ---- per-dataset augmentation and random erasing -------------------------------------------

def _crops_seen(name, n=200):
    """(dy, dx, flipped) of every augmented image of a data set named `name`, found by
    matching against all windows of its padded source image (any padding up to 4)."""
    raw = _random_images(n)
    d = data.Data(data.get(name), raw, torch.arange(n), raw[:4], torch.arange(4))
    pad = data.get(name).crop_padding
    seen = []
    for x, y in d.train_batches(50, seed=0, epoch=1):
        u = ((x * STD + MEAN) * 255).round().clamp(0, 255).to(torch.uint8)
        for img, i in zip(u, y.tolist()):
            p = torch.nn.functional.pad(raw[i], (pad,) * 4)
            hit = [(dy, dx, f) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for f in (0, 1)
                   if torch.equal(p[:, dy:dy + 32, dx:dx + 32].flip(-1) if f else p[:, dy:dy + 32, dx:dx + 32], img)]
            assert hit, "not a window of the padded image"
            seen.append(hit[0])
    return seen, pad


def test_digits_are_never_flipped_and_crop_by_two_pixels_cifar_flips():
    seen, pad = _crops_seen("digits")
    assert pad == 2 and not any(f for _, _, f in seen)
    assert {dy for dy, _, _ in seen} == set(range(5)) == {dx for _, dx, _ in seen}
    seen, pad = _crops_seen("cifar10")
    assert pad == 4 and 0.35 < np.mean([f for _, _, f in seen]) < 0.65


def test_config_resolves_augmentation_per_dataset():
    from sparsecs import config as C

    dig = C.resolve({"dataset": "digits"})
    cif = C.resolve({"dataset": "cifar10"})
    assert (dig["flip"], dig["crop_padding"], dig["erase"]) == (False, 2, 0.0)
    assert (cif["flip"], cif["crop_padding"]) == (True, 4)
    assert C.resolve({"dataset": "digits", "flip": True})["flip"] is True
    # the data set's own default is not a difference: it leaves the run name alone
    assert C.config_hash(dig) == C.config_hash(C.resolve({"dataset": "digits", "crop_padding": 2}))
    assert C.config_hash(dig) != C.config_hash(C.resolve({"dataset": "digits", "crop_padding": 4}))


def test_erasing_boxes_follow_torchvision_random_erasing():
    from torchvision import transforms

    n = 20000
    boxes = data.erase_boxes(n, 0.5, torch.Generator().manual_seed(0), 32)
    top, left, h, w = boxes.T
    drawn = (h > 0) | (w > 0)        # a box of side 0 erases nothing, as in torchvision
    assert abs(drawn.float().mean().item() - 0.5) < 0.015            # p = 0.5
    erased = (h * w) > 0
    area = (h * w).float()[erased] / 1024
    assert area.max() <= 0.4 + 0.02 and area.min() > 0               # scale (0, 0.4), rounded sides
    ratio = (h.float() / w.float())[erased & (w > 2) & (h > 2)]
    assert ratio.min() >= 0.3 * 0.6 and ratio.max() <= 3.3 / 0.6
    assert (top + h <= 32).all() and (left + w <= 32).all() and (top >= 0).all() and (left >= 0).all()
    # the same distribution as torchvision's own sampler (area of the boxes it erases)
    torch.manual_seed(0)
    img = torch.zeros(3, 32, 32)
    tv = []
    for _ in range(4000):
        i, j, hh, ww, _ = transforms.RandomErasing.get_params(img, scale=sampling.ERASE_SCALE,
                                                              ratio=sampling.ERASE_RATIO, value=[0])
        if (hh, ww) != (32, 32) and hh * ww > 0:
            tv.append(hh * ww / 1024)
    tv = torch.tensor(tv)
    for q in (0.25, 0.5, 0.75):
        assert abs(torch.quantile(area, q).item() - torch.quantile(tv, q).item()) < 0.02
    # the mask covers exactly the box
    m = data.erase_mask(torch.tensor([[3, 5, 4, 2]]), 32)
    assert m.shape == (1, 1, 32, 32) and m.sum() == 8 and m[0, 0, 3:7, 5:7].all()


def test_erasing_in_batches_is_deterministic_and_keeps_the_order():
    n = 400
    d = make_data(n, train_x=_random_images(n))
    d.train_y = torch.arange(n)
    a = list(d.train_batches(64, seed=2, epoch=4, erase=0.5))
    b = list(d.train_batches(64, seed=2, epoch=4, erase=0.5))
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert torch.equal(torch.cat([y for _, y in a]), _order(d, 64, 2, 4))   # same order as without
    x = torch.cat([x for x, _ in a])
    # erased pixels are exactly 0 after normalization, in all three channels at once;
    # _random_images has no pixel that normalizes to 0, so zeros mark the erased box
    zero = (x == 0).all(1)
    frac = zero.flatten(1).any(1).float().mean().item()
    assert 0.4 < frac < 0.6


# ---- Fashion-MNIST: tiny IDX files in the real format ----------------------------------------

def _idx(array):
    """The IDX format as LeCun's page defines it: 0, 0, type 0x08 (ubyte), ndim; big-endian
    uint32 dimensions; the bytes."""
    head = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return head + array.astype(np.uint8).tobytes()


def fashion_arrays(n_train=12, n_test=5):
    rng = np.random.default_rng(7)
    return (rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train),
            rng.integers(0, 256, (n_test, 28, 28)), rng.integers(0, 10, n_test))


def write_fashion(folder, arrays, gz):
    os.makedirs(folder, exist_ok=True)
    for f, a in zip(readers.FASHION_FILES, arrays):
        raw = _idx(a)
        if gz:
            with gzip.open(os.path.join(folder, f + ".gz"), "wb") as fh:
                fh.write(raw)
        else:
            with open(os.path.join(folder, f), "wb") as fh:
                fh.write(raw)


def check_fashion(d, arrays):
    x, y, tx, ty = arrays
    assert d.num_classes == 10
    for got, want in ((d.train_x, x), (d.test_x, tx)):
        assert got.dtype == torch.uint8 and got.shape == (len(want), 1, 28, 28)
        assert torch.equal(got[:, 0], torch.from_numpy(want.astype(np.uint8)))
    for got, want in ((d.train_y, y), (d.test_y, ty)):
        assert got.dtype == torch.int64 and got.tolist() == want.tolist()


@pytest.fixture
def no_system(tmp_path, monkeypatch):
    """No package folder and no network, unless a test puts files there."""
    system = tmp_path / "system"
    system.mkdir()
    monkeypatch.setattr(readers, "SYSTEM_FASHION", str(system))
    return system


def test_fashion_from_data_dir(tmp_path, no_system):
    arrays = fashion_arrays()
    write_fashion(str(tmp_path / "root" / "FashionMNIST" / "raw"), arrays, gz=False)
    check_fashion(data.load("fashion_mnist", root=str(tmp_path / "root"), download=False), arrays)


def test_fashion_from_the_package_folder_is_extracted_once(tmp_path, no_system, monkeypatch):
    arrays = fashion_arrays()
    write_fashion(str(no_system), arrays, gz=True)
    root = tmp_path / "root"
    check_fashion(data.load("fashion_mnist", root=str(root), download=False), arrays)
    raw = root / "FashionMNIST" / "raw"
    assert sorted(os.listdir(raw)) == sorted(readers.FASHION_FILES)     # no temporary left
    # second time: read from data_dir, the package folder is not touched
    monkeypatch.setattr(readers, "SYSTEM_FASHION", str(tmp_path / "gone"))
    check_fashion(data.load("fashion_mnist", root=str(root), download=False), arrays)


def test_two_runs_extracting_at_once_both_load(tmp_path, no_system, monkeypatch):
    """Two runs that start together on a fresh machine both extract the package; the one that
    finishes first must not take the other's half-written file away (a sweep lost its first
    run so)."""
    arrays = fashion_arrays()
    write_fashion(str(no_system), arrays, gz=True)
    root = str(tmp_path / "root")
    real = readers.shutil.copyfileobj
    other = []

    def copy_while_another_finishes(fin, fout, *a):
        if not other:                      # the other run does all its work in between
            other.append(1)
            readers._extract_system_fashion(root)
        return real(fin, fout, *a)

    monkeypatch.setattr(readers.shutil, "copyfileobj", copy_while_another_finishes)
    check_fashion(data.load("fashion_mnist", root=root, download=False), arrays)
    assert other and sorted(os.listdir(os.path.join(root, "FashionMNIST", "raw"))) == sorted(readers.FASHION_FILES)


def test_fashion_nowhere_is_one_line_naming_both_ways(tmp_path, no_system, no_network):
    with pytest.raises(data.DataError) as e:
        data.load("fashion_mnist", root=str(tmp_path / "root"), download=False)
    msg = str(e.value)
    assert "\n" not in msg and "apt-get install dataset-fashion-mnist" in msg and "network" in msg
    assert not no_network
    with pytest.raises(data.DataError) as e:
        data.load("fashion_mnist", root=str(tmp_path / "root"), download=True)
    msg = str(e.value)
    assert no_network, "the download was not attempted"
    assert "\n" not in msg and "download failed" in msg and "apt-get install dataset-fashion-mnist" in msg


def test_fashion_corrupt_idx_is_one_line(tmp_path, no_system):
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    write_fashion(str(raw), fashion_arrays(), gz=False)
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(data.DataError) as e:
        data.load("fashion_mnist", root=str(tmp_path / "root"), download=False)
    msg = str(e.value)
    # a reason, never empty, and no advice to delete the user's own files (issue 36)
    assert "\n" not in msg and "delete" not in msg and "(AssertionError: )" not in msg
    assert "replace them with the data set's files" in msg and "apt-get install" in msg


def test_fashion_registry_shape_and_statistics():
    spec = data.get("fashion_mnist")
    assert spec.input_shape == (1, 28, 28) and spec.num_classes == 10
    assert (spec.n_train, spec.n_test) == (60_000, 10_000)
    assert spec.mean == (0.2860,) and spec.std == (0.3530,)
    if not all(os.path.isfile(os.path.join(readers.SYSTEM_FASHION, f + ".gz")) for f in readers.FASHION_FILES):
        pytest.skip("the real files (apt-get install dataset-fashion-mnist) are not here")
    with gzip.open(os.path.join(readers.SYSTEM_FASHION, readers.FASHION_FILES[0] + ".gz"), "rb") as fh:
        x = np.frombuffer(fh.read(), dtype=np.uint8, offset=16).astype(np.float64) / 255
    assert len(x) == 60_000 * 784
    assert x.mean() == pytest.approx(spec.mean[0], abs=5e-5)    # the registry's constants are
    assert x.std() == pytest.approx(spec.std[0], abs=5e-5)      # the training images' own


def test_two_epochs_on_tiny_fashion_files(tmp_path, no_system):
    from sparsecs import config as C
    import train
    write_fashion(str(no_system), fashion_arrays(64, 32), gz=True)
    cfg = C.build(None, ["dataset=fashion_mnist", f"data_dir={tmp_path / 'root'}", "model=resnet20",
                         "width=0.25", "epochs=2", "batch_size=32", "device=cpu"])
    s = train.train(cfg, results=str(tmp_path / "results"), quiet=True)
    assert s["dataset"] == "fashion_mnist" and s["epochs"] == 2
    assert 0.0 <= s["test_acc"] <= 100.0 and round(s["test_acc"] * 32 / 100) * 100 / 32 == pytest.approx(s["test_acc"])

"""Data sets: one registry entry each (DATASETS), in-memory sets as device-resident uint8
tensors with batched augmentation on the device.

    d = data.load("cifar10", root="data", device="cuda")
    for x, y in d.train_batches(128, seed=0, epoch=e):   # x: normalized float [B,C,S,S]
        ...
    for x, y in d.test_batches(1000):
        ...

A data set is one DataSet entry: its name, number of classes, the input shape every model is
built for, mean/std, augmentation defaults and its reader. Nothing else in the repository
names a data set's shape or statistics: models take `input_shape` from here (models.get_model),
FLOPs are probed at it, the config's `crop_padding: auto` / `flip: auto` mean its defaults.

  * "cifar10", "cifar100": the official python-pickle archives, read directly (a restricted
    unpickler that builds only arrays, lists, strings and numbers), 3x32x32.
  * "digits": scikit-learn's bundled 8x8 digits, resized to 32x32 RGB (no download).
  * "fashion_mnist": Fashion-MNIST (Xiao, Rasul, Vollgraf 2017), 60,000 + 10,000 grey-scale
    28x28 images read by torchvision's FashionMNIST from ROOT/FashionMNIST/raw/; when missing,
    extracted from Debian's dataset-fashion-mnist package (SYSTEM_FASHION), else downloaded.
  * "imagenet": an ImageFolder tree streamed from disk by DataLoader workers (imagefolder.py,
    class FolderData), with the same interface as Data here (name, num_classes, device,
    input_shape, steps_per_epoch, train_batches, test_batches, subset).

Sharding for DistributedDataParallel (both classes): train_batches(..., rank=r, world=w)
makes the epoch's order and augmentation for all positions exactly as world=1 does, then
yields of global batch i only its positions arange(i*B, (i+1)*B).tensor_split(w)[r] (shard),
so the ranks' parts of batch i, concatenated in rank order, are world=1's batch i; every rank
yields steps_per_epoch(B) batches (an empty one where a short last batch has no part for it).
test_batches(..., rank=r, world=w) gives rank r the contiguous part
arange(N_test).tensor_split(w)[r] of the test set.

Augmentation as in the papers, per data set (a config may override each key): a random SxS
crop of the zero-padded image (torchvision's RandomCrop(32, padding=4) for CIFAR) and a
horizontal flip with p=0.5, per image, done batched on the device by two gathers over the
training set padded once (rows, then columns; no per-image Python work), then normalization
(x/255 - mean)/std on the device, then optionally random erasing (torchvision's
RandomErasing(p, scale=(0, 0.4), ratio=(0.3, 3.3)), value 0) as one batched mask.

Digits are not CIFAR: a mirrored 2, 3 or 7 is another glyph or none, so no flips; and each of
their 8x8 pixels became a 4x4 block when upsampled to 32x32, so a 4-pixel shift moves a glyph
by a whole original pixel (1/8 of the image): they get 2 pixels of padding. Fashion-MNIST's
garments and shoes stay what they are when mirrored, so flips, and 2 pixels of padding on its
28-pixel side (the shift of 4 on CIFAR's 32, scaled down and rounded).
"""

import gzip
import math
import io
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from sparsecs import fileio
from sparsecs import imagefolder
from sparsecs.sampling import (DataError, epoch_generator, erase_boxes, erase_mask, one_line,  # noqa: F401
                               shard)



@dataclass(frozen=True)
class DataSet:
    """One data set: everything the rest of the repository may know about it."""
    name: str
    label: str                      # as papers write it
    num_classes: int
    input_shape: tuple              # (C, H, W) of one image as the models see it
    mean: tuple                     # per channel, of x/255
    std: tuple
    crop_padding: int               # `crop_padding: auto`
    flip: bool                      # `flip: auto`
    read: Callable = field(repr=False)   # (spec, root, download, device, workers) -> data object
    n_train: int = 0                # nominal set sizes (benchmarks; 0: unknown)
    n_test: int = 0


DATASETS = {}


def register(spec):
    if spec.name in DATASETS:
        raise ValueError(f"data set {spec.name!r} registered twice")
    if len(spec.mean) != spec.input_shape[0] or len(spec.std) != spec.input_shape[0]:
        raise ValueError(f"{spec.name}: mean/std need one value per channel of {spec.input_shape}")
    DATASETS[spec.name] = spec
    return spec


def get(name):
    """The registry entry of `name`; DataError (one line, the known names) if there is none."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}: known are {', '.join(DATASETS)}")
    return DATASETS[name]


def names():
    return list(DATASETS)


class Data:
    """A whole data set on one device: uint8 images [N,C,S,S], int64 labels [N]; `spec` is its
    registry entry (DataSet: shape, statistics, augmentation defaults)."""

    def __init__(self, spec, train_x, train_y, test_x, test_y, device="cpu"):
        device = torch.device(device)
        self.spec = spec
        self.name = spec.name
        self.num_classes = spec.num_classes
        self.input_shape = tuple(spec.input_shape)   # one image (C, H, W)
        c, h, w = self.input_shape
        if h != w or tuple(train_x.shape[1:]) != self.input_shape or tuple(test_x.shape[1:]) != self.input_shape:
            raise DataError(f"{spec.label}: images of shape {tuple(train_x.shape[1:])} and "
                            f"{tuple(test_x.shape[1:])}, the registry says {self.input_shape} (square)")
        self.device = device
        self.train_x = train_x.to(device=device, dtype=torch.uint8).contiguous()
        self.train_y = train_y.to(device=device, dtype=torch.int64).contiguous()
        self.test_x = test_x.to(device=device, dtype=torch.uint8).contiguous()
        self.test_y = test_y.to(device=device, dtype=torch.int64).contiguous()
        self._padded = {}     # padding -> zero-padded training set as rows, made on first use
        self._affine = {}     # device -> (scale, shift) of the normalization

    def test_labels(self):
        """The test set's labels in its fixed order (a CPU int64 tensor)."""
        return self.test_y.cpu()

    def __repr__(self):
        return (f"Data({self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, "
                f"classes={self.num_classes}, device={self.device})")

    def steps_per_epoch(self, batch_size):
        """Batches per training epoch: the last partial batch is kept."""
        return math.ceil(len(self.train_y) / batch_size)

    def subset(self, n):
        """Keep only the first n training images (and labels)."""
        self.train_x, self.train_y = self.train_x[:int(n)], self.train_y[:int(n)]
        self._padded = {}
        return self

    # ---- batching -------------------------------------------------------------------------

    def train_batches(self, batch_size, seed, epoch, augment=True, dtype=torch.float32,
                      channels_last=False, crop_padding=None, flip=None, erase=0.0,
                      rank=0, world=1):
        """Yield (x, y) for one shuffled epoch; x normalized [B,C,S,S] of `dtype`, y int64.

        crop_padding and flip default to this data set's registry entry; erase is the probability of
        random erasing. Order, crop offsets, flips and erasing come from
        epoch_generator(seed, epoch) (see there): the same (seed, epoch) always gives the same
        batches. They are drawn in the same order whether or not `augment` is set, so the batch
        order does not depend on it. With world > 1, only rank's part of each batch (shard).
        """
        shard(0, 0, rank, world)   # checks rank and world
        pad = self.spec.crop_padding if crop_padding is None else int(crop_padding)
        flip_on = self.spec.flip if flip is None else bool(flip)
        C, S = self.input_shape[0], self.input_shape[1]
        n = len(self.train_y)
        g = epoch_generator(seed, epoch)
        perm = torch.randperm(n, generator=g)
        # per position in the epoch: crop offsets (rows, cols) in [0, 2*pad] and a flip with p=0.5
        offset = torch.randint(0, 2 * pad + 1, (2, n), generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        boxes = erase_boxes(n, erase, g, S) if augment and erase > 0 else None
        dev = self.device
        perm = perm.to(dev, non_blocking=True)
        if augment:
            rows = self._padded_rows(pad)                # [N*C*side, side]: one padded row each
            side = S + 2 * pad
            offset = offset.to(dev, non_blocking=True)
            flips = (flips if flip_on else torch.zeros_like(flips)).to(dev, non_blocking=True)
            first_row = perm * (C * side) + offset[0]    # row of the crop's top-left pixel
            r = torch.arange(S, device=dev)
            row_step = (torch.arange(C, device=dev) * side).view(1, C, 1) + r.view(1, 1, S)
            col_step, col_step_flipped = r.view(1, S), r.flip(0).view(1, S)
            if boxes is not None:
                boxes = boxes.to(dev, non_blocking=True)
        for i in range(0, n, batch_size):
            sl = (slice(i, i + batch_size) if world == 1
                  else shard(i, min(i + batch_size, n), rank, world).to(dev))
            y = self.train_y.index_select(0, perm[sl])
            if augment:
                # a crop in two gathers: its CxS rows of `side` pixels, then S columns per
                # image (reversed when flipped); no per-image Python work
                row_idx = first_row[sl].view(-1, 1, 1) + row_step                  # [B,C,S]
                b = row_idx.shape[0]
                x = rows.index_select(0, row_idx.view(-1)).view(b, C, S, side)
                col_idx = offset[1][sl].view(-1, 1) + torch.where(
                    flips[sl].view(-1, 1), col_step_flipped, col_step)              # [B,S]
                x = torch.gather(x, 3, col_idx.view(b, 1, 1, S).expand(b, C, S, S))
            else:
                x = self.train_x.index_select(0, perm[sl])
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            x = self._normalize(x, dtype)
            if boxes is not None:
                x.masked_fill_(erase_mask(boxes[sl], S), 0.0)   # in place: keeps channels_last
            yield x, y

    def test_batches(self, batch_size, dtype=torch.float32, channels_last=False, rank=0, world=1):
        """Yield (x, y) over the test set (rank's contiguous part: shard) in fixed order, no
        augmentation."""
        mine = shard(0, len(self.test_y), rank, world)
        lo, hi = (int(mine[0]), int(mine[-1]) + 1) if len(mine) else (0, 0)
        for i in range(lo, hi, batch_size):
            j = min(i + batch_size, hi)
            x = self.test_x[i:j]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield self._normalize(x, dtype), self.test_y[i:j]

    # ---- helpers ----------------------------------------------------------------------------

    def _padded_rows(self, pad):
        """The zero-padded training set [N,C,side,side], made once per padding, as rows."""
        if pad not in self._padded:
            (c, s, _), n = self.input_shape, len(self.train_y)
            side = s + 2 * pad
            p = torch.zeros(n, c, side, side, dtype=torch.uint8, device=self.device)
            p[:, :, pad:pad + s, pad:pad + s] = self.train_x
            self._padded[pad] = p.view(n * c * side, side)
        return self._padded[pad]

    def _normalize(self, x, dtype):
        # (x/255 - mean)/std as one multiply-add in float32, then cast; keeps the memory format
        if x.device not in self._affine:
            std = torch.tensor(self.spec.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
            mean = torch.tensor(self.spec.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
            self._affine[x.device] = (1.0 / (255.0 * std), -mean / std)
        scale, shift = self._affine[x.device]
        out = torch.addcmul(shift, x.to(torch.float32), scale)
        return out if dtype == torch.float32 else out.to(dtype)


# ---- loading ------------------------------------------------------------------------------

def load(name, root="data", device="cpu", download=True, workers=8):
    """Load a data set by name onto `device`; raise DataError (one line) if it is unavailable.
    `workers` is for sets streamed from disk (ImageFolder), `download` for those that can be
    downloaded; the others ignore them."""
    spec = get(name)
    return spec.read(spec, root, download=download, device=device, workers=workers)


def _in_memory(reader):
    """A registry reader from a function (spec, root, download) -> (train x, y, test x, y)."""
    def read(spec, root, download=True, device="cpu", workers=0):
        return Data(spec, *reader(spec, root, download), device=device)
    return read


def _load_digits(spec, root=None, download=False):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    side = spec.input_shape[-1]
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32)).unsqueeze(1) * (255.0 / 16.0)
    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1).contiguous()
    y = torch.from_numpy(d.target.astype(np.int64))
    tr, te = train_test_split(np.arange(len(y)), test_size=360, random_state=0, stratify=d.target)
    tr, te = torch.from_numpy(tr), torch.from_numpy(te)
    return x[tr], y[tr], x[te], y[te]


# ---- CIFAR ----------------------------------------------------------------------------------

_CIFAR = {
    # name: (folder, archive, url, train files, test files, label key)
    "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz",
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 ["train"], ["test"], b"fine_labels"),
}


def _load_cifar(spec, root, download):
    name, label = spec.name, spec.label
    folder, archive, url, train_files, test_files, key = _CIFAR[name]
    where = os.path.join(root, "")
    path, tar = os.path.join(root, folder), os.path.join(root, archive)
    todo = (f"put {archive} ({url}) in {where} or extract it to {path}")
    if not os.path.isdir(path) and os.path.isfile(tar):
        from torchvision.datasets.utils import extract_archive
        try:
            extract_archive(tar, root)
        except Exception as e:
            raise DataError(f"{label}: could not extract {tar} ({one_line(e, 80)}): "
                            f"replace it with a good copy of {archive} ({url})") from None
    if not os.path.isdir(path):
        if not download:
            raise DataError(f"{label} not found in {where} (download disabled): {todo}")
        try:
            import torchvision
            cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
            os.makedirs(root, exist_ok=True)
            cls(root, train=True, download=True)
        except Exception as e:
            raise DataError(f"{label} not found in {where} and could not be downloaded "
                            f"({type(e).__name__}: {one_line(e, 80)}): {todo}") from None
        if not os.path.isdir(path):
            raise DataError(f"{label} not found in {where} after download: {todo}")
    shape = spec.input_shape
    train_x, train_y = _read_pickles(label, path, train_files, key, todo, shape)
    test_x, test_y = _read_pickles(label, path, test_files, key, todo, shape)
    return train_x, train_y, test_x, test_y


class _ArraysOnly(pickle.Unpickler):
    """CIFAR's batches are dicts of bytes, lists, ints and numpy arrays; building anything else
    (a crafted file's os.system, say) is refused instead of run."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to build {module}.{name} (not part of the CIFAR format)")


def _read_pickles(label, path, files, key, todo, shape):
    xs, ys = [], []
    for f in files:
        p = os.path.join(path, f)
        if not os.path.isfile(p):
            raise DataError(f"{label}: {p} is missing: {todo}")
        try:
            with open(p, "rb") as fh:
                d = _ArraysOnly(fh, encoding="bytes").load()
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, *shape)
            y = np.asarray(d[key], dtype=np.int64).reshape(-1)
            if len(x) != len(y):
                raise ValueError(f"{len(x)} images but {len(y)} labels")
        except Exception as e:
            raise DataError(f"{label}: cannot read {p} ({type(e).__name__}: "
                            f"{one_line(e, 80)}): {todo}") from None
        xs.append(torch.from_numpy(x))
        ys.append(torch.from_numpy(y))
    return torch.cat(xs), torch.cat(ys)


# ---- Fashion-MNIST --------------------------------------------------------------------------

# Where Debian's package dataset-fashion-mnist puts the original IDX files (gzip-recompressed:
# their MD5 differs from torchvision's list, so they are extracted, not "downloaded").
SYSTEM_FASHION = os.environ.get("FASHION_MNIST_SYSTEM_DIR", "/usr/share/datasets/fashion-mnist")
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_HOW = ("install Debian's package (apt-get install dataset-fashion-mnist), or run once "
               "where the network reaches torchvision's mirrors")


def _fashion_raw(root):
    return os.path.join(root, "FashionMNIST", "raw")


def _fashion_present(root):
    return all(os.path.isfile(os.path.join(_fashion_raw(root), f)) for f in FASHION_FILES)


def _extract_system_fashion(root, system=None):
    """Copy the package's IDX files into ROOT/FashionMNIST/raw/ (uncompressed, as torchvision
    keeps them); True if they were all there. Each file is written under a temporary name and
    renamed, so an interrupted copy leaves nothing half-written."""
    system = system or SYSTEM_FASHION
    srcs = [os.path.join(system, f + ".gz") for f in FASHION_FILES]
    if not all(os.path.isfile(s) for s in srcs):
        return False
    raw = _fashion_raw(root)
    os.makedirs(raw, exist_ok=True)
    for src, f in zip(srcs, FASHION_FILES):
        dst = os.path.join(raw, f)
        if os.path.isfile(dst):
            continue
        # A temporary name of this process's own: two runs that start together on a fresh
        # machine both extract, and a shared name lets one rename the other's file away.
        with fileio.writing(dst):   # a full disk names the file, not the temporary one
            fd, tmp = tempfile.mkstemp(prefix=f + ".", suffix=".part", dir=raw)
            try:
                with gzip.open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                os.replace(tmp, dst)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
    return True


def _load_fashion(spec, root, download):
    """data_dir first; then Debian's package folder (extracted into data_dir once); then
    torchvision's download; else one line naming both ways."""
    import torchvision

    where = _fashion_raw(root)
    if not _fashion_present(root):
        try:
            found = _extract_system_fashion(root)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise DataError(f"{spec.label}: could not extract {SYSTEM_FASHION} into {where} "
                            f"({type(e).__name__}: {one_line(e, 80)})") from None
        if not found:
            if not download:
                raise DataError(f"{spec.label} not found in {where} or {SYSTEM_FASHION} (download "
                                f"disabled): {FASHION_HOW}")
            try:
                os.makedirs(root, exist_ok=True)
                torchvision.datasets.FashionMNIST(root, train=True, download=True)
            except Exception as e:
                raise DataError(f"{spec.label} not found in {where} or {SYSTEM_FASHION}, and the "
                                f"download failed ({type(e).__name__}: {one_line(e, 60)}): "
                                f"{FASHION_HOW}") from None
    out = []
    for train in (True, False):
        try:
            ds = torchvision.datasets.FashionMNIST(root, train=train, download=False)
            x, y = ds.data, ds.targets
        except Exception as e:
            why = one_line(e, 80) or ("not an IDX file of the format (bad magic number or size)"
                                      if isinstance(e, AssertionError) else "no reason given")
            raise DataError(f"{spec.label}: cannot read the IDX files in {where} "
                            f"({type(e).__name__}: {why}): replace them with the data set's files "
                            f"({FASHION_HOW})") from None
        if x.dim() != 3 or len(x) != len(y) or tuple(x.shape[1:]) != tuple(spec.input_shape[1:]):
            raise DataError(f"{spec.label}: the IDX files in {where} hold images of shape "
                            f"{tuple(x.shape[1:])} and {len(y)} labels for {len(x)} images: "
                            f"replace them with the data set's files ({FASHION_HOW})")
        out += [x.to(torch.uint8).unsqueeze(1).contiguous(), y.to(torch.int64)]
    return tuple(out)


def _load_imagefolder(spec, root, download=False, device="cpu", workers=8):
    return imagefolder.load(spec.name, root, device=device, workers=workers)


# ---- the registry -------------------------------------------------------------------------

# The authors' constants (CIFAR-10 statistics), used for CIFAR-100 and digits too, as there.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)

register(DataSet("cifar10", "CIFAR-10", 10, (3, 32, 32), CIFAR_MEAN, CIFAR_STD, 4, True,
                 _in_memory(_load_cifar), 50_000, 10_000))
register(DataSet("cifar100", "CIFAR-100", 100, (3, 32, 32), CIFAR_MEAN, CIFAR_STD, 4, True,
                 _in_memory(_load_cifar), 50_000, 10_000))
register(DataSet("digits", "digits", 10, (3, 32, 32), CIFAR_MEAN, CIFAR_STD, 2, False,
                 _in_memory(_load_digits), 1_437, 360))
# Fashion-MNIST's own statistics over its 60,000 training images (mean 0.2860, std 0.3530).
register(DataSet("fashion_mnist", "Fashion-MNIST", 10, (1, 28, 28), (0.2860,), (0.3530,), 2, True,
                 _in_memory(_load_fashion), 60_000, 10_000))
# nominal classes: a FolderData has one class per class folder; crop_padding unused there
register(DataSet("imagenet", "ImageNet", 1000, (3, imagefolder.SIZE, imagefolder.SIZE),
                 imagefolder.MEAN, imagefolder.STD, 0, True, _load_imagefolder, 1_281_167, 50_000))

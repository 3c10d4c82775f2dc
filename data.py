"""Data sets as device-resident uint8 tensors, with batched augmentation on the device.

    d = data.load("cifar10", root="data", device="cuda")
    for x, y in d.train_batches(128, seed=0, epoch=e):   # x: normalized float [B,3,32,32]
        ...
    for x, y in d.test_batches(1000):
        ...

Data sets: "cifar10", "cifar100" (the official python-pickle archives, read directly, so any
copy in the real format works) and "digits" (scikit-learn's bundled 8x8 digits, resized to
32x32 RGB, no download), so every CIFAR model runs unchanged on CPU. "imagenet" is the
exception: an ImageFolder tree streamed from disk by DataLoader workers (imagefolder.py,
class FolderData), with the same interface as Data here (name, num_classes, device,
input_shape, steps_per_epoch, train_batches, test_batches, subset).

Sharding for DistributedDataParallel (both classes): train_batches(..., rank=r, world=w)
makes the epoch's order and augmentation for all positions exactly as world=1 does, then
yields of global batch i only its positions arange(i*B, (i+1)*B).tensor_split(w)[r] (shard),
so the ranks' parts of batch i, concatenated in rank order, are world=1's batch i; every rank
yields steps_per_epoch(B) batches (an empty one where a short last batch has no part for it).
test_batches(..., rank=r, world=w) gives rank r the contiguous part
arange(N_test).tensor_split(w)[r] of the test set.

Augmentation as in the papers, per data set (AUGMENT; a config may override each key): a
random 32x32 crop of the zero-padded image (torchvision's RandomCrop(32, padding=4) for CIFAR)
and a horizontal flip with p=0.5, per image, done batched on the device by two gathers over
the training set padded once (rows, then columns; no per-image Python work), then
normalization (x/255 - MEAN)/STD on the device, then optionally random erasing (torchvision's
RandomErasing(p, scale=(0, 0.4), ratio=(0.3, 3.3)), value 0) as one batched mask.

Digits are not CIFAR: a mirrored 2, 3 or 7 is another glyph or none, so no flips; and each of
their 8x8 pixels became a 4x4 block when upsampled to 32x32, so a 4-pixel shift moves a glyph
by a whole original pixel (1/8 of the image): they get 2 pixels of padding.
"""

import math
import os
import pickle

import numpy as np
import torch
import torch.nn.functional as F

# The authors' constants (CIFAR-10 statistics), used for every data set: CIFAR-100 and digits too.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
NUM_CLASSES = {"digits": 10, "cifar10": 10, "cifar100": 100,
               "imagenet": 1000}   # nominal: a FolderData has one class per class folder

PAD = 4     # zero padding of the random crop (CIFAR)
SIZE = 32   # image side
# What `crop_padding: auto` and `flip: auto` mean per data set (see the module docstring).
AUGMENT = {"cifar10": {"crop_padding": PAD, "flip": True},
           "cifar100": {"crop_padding": PAD, "flip": True},
           "digits": {"crop_padding": 2, "flip": False},
           "imagenet": {"crop_padding": 0, "flip": True}}   # crop_padding unused (imagefolder.py)
# Random erasing as in the authors' C10 ResNet-20 script: area fraction and aspect ratio ranges.
ERASE_SCALE = (0.0, 0.4)
ERASE_RATIO = (0.3, 3.3)
ERASE_TRIES = 10   # torchvision's attempts at a box that fits before giving up on an image

_CIFAR = {
    # name: (label, folder, archive, url, train files, test files, label key)
    "cifar10": ("CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz",
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 ["train"], ["test"], b"fine_labels"),
}


class DataError(Exception):
    """A data set is missing or unreadable; the message is one line: what and what to do."""


def _one_line(text, limit=160):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def epoch_generator(seed, epoch):
    """The CPU generator of one epoch's randomness (batch order, crop offsets, flips).

    It depends only on (seed, epoch), so epoch e's batches are identical whenever they are
    requested: a run resumed after a crash replays exactly the batches of an uninterrupted run
    without saving any RNG state. Drawn on the CPU (the same numbers on every device), then
    moved to the device.
    """
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2 ** 63))
    return g


def shard(start, stop, rank=0, world=1):
    """Positions start..stop-1 of rank `rank` of `world`: arange(start, stop).tensor_split(world)[rank]."""
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise ValueError(f"world must be an int >= 1, got {world!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world:
        raise ValueError(f"rank must be an int in [0, {world}), got {rank!r}")
    return torch.arange(start, stop).tensor_split(world)[rank]


class Data:
    """A whole data set on one device: uint8 images [N,3,32,32], int64 labels [N]."""

    input_shape = (3, SIZE, SIZE)   # one image (C, H, W)

    def __init__(self, name, train_x, train_y, test_x, test_y, num_classes, device="cpu"):
        device = torch.device(device)
        self.name = name
        self.num_classes = num_classes
        self.device = device
        self.train_x = train_x.to(device=device, dtype=torch.uint8).contiguous()
        self.train_y = train_y.to(device=device, dtype=torch.int64).contiguous()
        self.test_x = test_x.to(device=device, dtype=torch.uint8).contiguous()
        self.test_y = test_y.to(device=device, dtype=torch.int64).contiguous()
        self._padded = {}     # padding -> zero-padded training set as rows, made on first use
        self._affine = {}     # device -> (scale, shift) of the normalization

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
        """Yield (x, y) for one shuffled epoch; x normalized [B,3,32,32] of `dtype`, y int64.

        crop_padding and flip default to this data set's AUGMENT; erase is the probability of
        random erasing. Order, crop offsets, flips and erasing come from
        epoch_generator(seed, epoch) (see there): the same (seed, epoch) always gives the same
        batches. They are drawn in the same order whether or not `augment` is set, so the batch
        order does not depend on it. With world > 1, only rank's part of each batch (shard).
        """
        shard(0, 0, rank, world)   # checks rank and world
        auto = AUGMENT.get(self.name, AUGMENT["cifar10"])
        pad = auto["crop_padding"] if crop_padding is None else int(crop_padding)
        flip_on = auto["flip"] if flip is None else bool(flip)
        n = len(self.train_y)
        g = epoch_generator(seed, epoch)
        perm = torch.randperm(n, generator=g)
        # per position in the epoch: crop offsets (rows, cols) in [0, 2*pad] and a flip with p=0.5
        offset = torch.randint(0, 2 * pad + 1, (2, n), generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        boxes = erase_boxes(n, erase, g) if augment and erase > 0 else None
        dev = self.device
        perm = perm.to(dev, non_blocking=True)
        if augment:
            rows = self._padded_rows(pad)                # [N*3*side, side]: one padded row each
            side = SIZE + 2 * pad
            offset = offset.to(dev, non_blocking=True)
            flips = (flips if flip_on else torch.zeros_like(flips)).to(dev, non_blocking=True)
            first_row = perm * (3 * side) + offset[0]    # row of the crop's top-left pixel
            r = torch.arange(SIZE, device=dev)
            row_step = (torch.arange(3, device=dev) * side).view(1, 3, 1) + r.view(1, 1, SIZE)
            col_step, col_step_flipped = r.view(1, SIZE), r.flip(0).view(1, SIZE)
            if boxes is not None:
                boxes = boxes.to(dev, non_blocking=True)
        for i in range(0, n, batch_size):
            sl = (slice(i, i + batch_size) if world == 1
                  else shard(i, min(i + batch_size, n), rank, world).to(dev))
            y = self.train_y.index_select(0, perm[sl])
            if augment:
                # a crop in two gathers: its 3x32 rows of `side` pixels, then 32 columns per
                # image (reversed when flipped); no per-image Python work
                row_idx = first_row[sl].view(-1, 1, 1) + row_step                  # [B,3,32]
                b = row_idx.shape[0]
                x = rows.index_select(0, row_idx.view(-1)).view(b, 3, SIZE, side)
                col_idx = offset[1][sl].view(-1, 1) + torch.where(
                    flips[sl].view(-1, 1), col_step_flipped, col_step)              # [B,32]
                x = torch.gather(x, 3, col_idx.view(b, 1, 1, SIZE).expand(b, 3, SIZE, SIZE))
            else:
                x = self.train_x.index_select(0, perm[sl])
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            x = self._normalize(x, dtype)
            if boxes is not None:
                x.masked_fill_(erase_mask(boxes[sl]), 0.0)   # in place: keeps channels_last
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
        """The zero-padded training set [N,3,side,side], made once per padding, as rows."""
        if pad not in self._padded:
            n, side = len(self.train_y), SIZE + 2 * pad
            p = torch.zeros(n, 3, side, side, dtype=torch.uint8, device=self.device)
            p[:, :, pad:pad + SIZE, pad:pad + SIZE] = self.train_x
            self._padded[pad] = p.view(n * 3 * side, side)
        return self._padded[pad]

    def _normalize(self, x, dtype):
        # (x/255 - mean)/std as one multiply-add in float32, then cast; keeps the memory format
        if x.device not in self._affine:
            std = torch.tensor(STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
            mean = torch.tensor(MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
            self._affine[x.device] = (1.0 / (255.0 * std), -mean / std)
        scale, shift = self._affine[x.device]
        out = torch.addcmul(shift, x.to(torch.float32), scale)
        return out if dtype == torch.float32 else out.to(dtype)


def erase_boxes(n, p, g, size=SIZE):
    """Random erasing boxes [n, 4] (top, left, height, width; height 0: not erased) drawn as
    torchvision's RandomErasing(p, ERASE_SCALE, ERASE_RATIO) draws them: with probability p,
    up to ERASE_TRIES (area, log-aspect) draws, the first box that fits is used, at a uniform
    position. All tries are drawn at once from generator `g`; no per-image Python work."""
    erased = torch.rand(n, generator=g) < p
    area = size * size * (ERASE_SCALE[0] + (ERASE_SCALE[1] - ERASE_SCALE[0])
                          * torch.rand(n, ERASE_TRIES, generator=g))
    lo, hi = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    aspect = torch.exp(lo + (hi - lo) * torch.rand(n, ERASE_TRIES, generator=g))
    h = torch.sqrt(area * aspect).round().long()
    w = torch.sqrt(area / aspect).round().long()
    pos = torch.rand(n, ERASE_TRIES, 2, generator=g)
    fits = (h < size) & (w < size)
    first = fits.long().argmax(1, keepdim=True)               # first try that fits
    pick = lambda t: t.gather(1, first).squeeze(1)
    h, w = pick(h), pick(w)
    top = (pick(pos[..., 0]) * (size - h + 1)).long()
    left = (pick(pos[..., 1]) * (size - w + 1)).long()
    ok = erased & fits.any(1)
    h, w = torch.where(ok, h, 0), torch.where(ok, w, 0)
    return torch.stack([top, left, h, w], 1)


def erase_mask(boxes, size=SIZE):
    """[B,1,size,size] True inside each image's box (broadcasts over channels)."""
    r = torch.arange(size, device=boxes.device)
    top, left, h, w = (boxes[:, i].view(-1, 1) for i in range(4))
    rows = (r >= top) & (r < top + h)                           # [B,size]
    cols = (r >= left) & (r < left + w)
    return (rows.view(-1, 1, size, 1) & cols.view(-1, 1, 1, size))


# ---- loading ------------------------------------------------------------------------------

def load(name, root="data", device="cpu", download=True, workers=8):
    """Load a data set by name onto `device`; raise DataError (one line) if it is unavailable.

    "imagenet" gives an imagefolder.FolderData read from ROOT/imagenet/{train,val} (or
    ROOT/{train,val}) by `workers` DataLoader processes (0: in this process); it cannot be
    downloaded, so `download` does not apply. The in-memory sets ignore `workers`."""
    if name == "imagenet":
        import imagefolder
        return imagefolder.load(name, root, device=device, workers=workers)
    if name == "digits":
        arrays = _load_digits()
    elif name in _CIFAR:
        arrays = _load_cifar(name, root, download)
    else:
        raise DataError(f"unknown data set {name!r}: known are {', '.join(NUM_CLASSES)}")
    return Data(name, *arrays, num_classes=NUM_CLASSES[name], device=device)


def _load_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32)).unsqueeze(1) * (255.0 / 16.0)
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1).contiguous()
    y = torch.from_numpy(d.target.astype(np.int64))
    tr, te = train_test_split(np.arange(len(y)), test_size=360, random_state=0, stratify=d.target)
    tr, te = torch.from_numpy(tr), torch.from_numpy(te)
    return x[tr], y[tr], x[te], y[te]


def _load_cifar(name, root, download):
    label, folder, archive, url, train_files, test_files, key = _CIFAR[name]
    where = os.path.join(root, "")
    path, tar = os.path.join(root, folder), os.path.join(root, archive)
    todo = (f"put {archive} ({url}) in {where} or extract it to {path}")
    if not os.path.isdir(path) and os.path.isfile(tar):
        from torchvision.datasets.utils import extract_archive
        try:
            extract_archive(tar, root)
        except Exception as e:
            raise DataError(f"{label}: could not extract {tar} ({_one_line(e, 80)}): "
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
                            f"({type(e).__name__}: {_one_line(e, 80)}): {todo}") from None
        if not os.path.isdir(path):
            raise DataError(f"{label} not found in {where} after download: {todo}")
    train_x, train_y = _read_pickles(label, path, train_files, key, todo)
    test_x, test_y = _read_pickles(label, path, test_files, key, todo)
    return train_x, train_y, test_x, test_y


def _read_pickles(label, path, files, key, todo):
    xs, ys = [], []
    for f in files:
        p = os.path.join(path, f)
        if not os.path.isfile(p):
            raise DataError(f"{label}: {p} is missing: {todo}")
        try:
            with open(p, "rb") as fh:
                d = pickle.load(fh, encoding="bytes")
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, SIZE, SIZE)
            y = np.asarray(d[key], dtype=np.int64).reshape(-1)
            if len(x) != len(y):
                raise ValueError(f"{len(x)} images but {len(y)} labels")
        except Exception as e:
            raise DataError(f"{label}: cannot read {p} ({type(e).__name__}: "
                            f"{_one_line(e, 80)}): {todo}") from None
        xs.append(torch.from_numpy(x))
        ys.append(torch.from_numpy(y))
    return torch.cat(xs), torch.cat(ys)

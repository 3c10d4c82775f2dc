"""ImageNet (or any data set) from an ImageFolder tree, streamed from disk by DataLoader workers.

    d = data.load("imagenet", root="data", device="cuda", workers=8)   # -> FolderData

The tree: ROOT/imagenet/{train,val}/<class>/<image>, or ROOT/{train,val}/<class>/<image>
(torchvision.datasets.ImageFolder: any image extension it knows, classes = the folder names in
sorted order, so train/ and val/ must hold the same class folders). ImageNet cannot be
downloaded: a missing tree, split or image set stops with one line (data.DataError). The
official validation set is one flat folder; sort it into class folders first (e.g. the
usual valprep.sh).

The interface is data.Data's (train.py uses both the same way); the whole set cannot live on
the device, so batches are decoded by `workers` processes and copied to the device (pinned
when it is CUDA). The usual ImageNet pipeline:
  train  RandomResizedCrop(224) + RandomHorizontalFlip (flip=False: no flip)
  eval   Resize(256) + CenterCrop(224)   (also for training with augment=False)
then ToTensor + Normalize(MEAN, STD), done on the device: workers send uint8 images (a
quarter of the bytes) and (x/255 - MEAN)/STD is one multiply-add there, as for data.Data.
`crop_padding` has no meaning here and is ignored; `erase` is random erasing as for data.Data
(boxes scaled to 224x224, drawn from the epoch generator).

Determinism: the batch order is the permutation of data.epoch_generator(seed, epoch), as for
data.Data, and each position of the epoch gets a 62-bit seed drawn from the same generator;
the worker that decodes that position seeds the CPU generator with it for the transform
only (torch.random.fork_rng). So epoch e's batches depend only on (seed, epoch), neither on
the number of workers nor on which worker decodes what, and a resumed run replays them.

Sharding (DistributedDataParallel): train_batches(..., rank=r, world=w) yields, for each
global batch (the positions that world=1 would use, with the same seeds), only the part
positions.tensor_split(w)[r]; test_batches gives rank r the contiguous part
arange(N_test).tensor_split(w)[r] of the test set.
"""

import math
import os
import re

import torch

from sparsecs import sampling as D

MEAN = (0.485, 0.456, 0.406)   # ImageNet statistics (torchvision's reference scripts)
STD = (0.229, 0.224, 0.225)
SIZE = 224           # crop side (training and evaluation)
RESIZE = 256         # evaluation: shorter side resized to this, then the center crop
SEED_BITS = 62

HOW = ("ImageNet cannot be downloaded: get ILSVRC2012 from https://image-net.org and put "
       "one folder per class in {base}/train/<class>/*.JPEG and {base}/val/<class>/*.JPEG")


def train_transform(flip=True):
    from torchvision import transforms as T
    t = [T.RandomResizedCrop(SIZE)] + ([T.RandomHorizontalFlip()] if flip else [])
    return T.Compose(t + [T.PILToTensor()])


def eval_transform():
    from torchvision import transforms as T
    return T.Compose([T.Resize(RESIZE), T.CenterCrop(SIZE), T.PILToTensor()])


class _Seeded(torch.utils.data.Dataset):
    """Items (index, seed): image `index` of `samples` through `transform`, with the CPU
    generator seeded by `seed` for the transform only (seed None: no randomness needed)."""

    def __init__(self, samples, transform):
        from torchvision.datasets.folder import default_loader
        self.samples, self.transform, self.loader = samples, transform, default_loader

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, item):
        index, seed = item
        path, target = self.samples[index]
        try:
            img = self.loader(path)
            if seed is None:
                return self.transform(img), target
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)   # the CPU generator only, not CUDA's
                return self.transform(img), target
        except Exception as e:   # corrupt, truncated, unreadable: the file and the reason
            why = " ".join(str(e).split())[:200] or type(e).__name__
            raise D.DataError(f"{path}: unreadable image ({why}); replace or remove the file") from None


class FolderData:
    """Training and validation images listed from class folders; see the module docstring."""

    input_shape = (3, SIZE, SIZE)

    def __init__(self, name, train_samples, test_samples, classes, device="cpu", workers=8):
        self.name = name
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.device = torch.device(device)
        self.workers = int(workers)
        self.train_samples = list(train_samples)    # [(path, class index)]
        self.test_samples = list(test_samples)
        self._affine = {}

    def test_labels(self):
        """The validation set's labels in its fixed order (a CPU int64 tensor)."""
        return torch.tensor([y for _, y in self.test_samples], dtype=torch.int64)

    def __repr__(self):
        return (f"FolderData({self.name!r}, train={len(self.train_samples)}, "
                f"test={len(self.test_samples)}, classes={self.num_classes}, device={self.device})")

    def steps_per_epoch(self, batch_size):
        """Batches per training epoch: the last partial batch is kept."""
        return math.ceil(len(self.train_samples) / batch_size)

    def subset(self, n):
        """Keep only the first n training images (ImageFolder order: by class, then file name)."""
        self.train_samples = self.train_samples[:int(n)]
        return self

    # ---- batching -------------------------------------------------------------------------

    def train_batches(self, batch_size, seed, epoch, augment=True, dtype=torch.float32,
                      channels_last=False, crop_padding=None, flip=None, erase=0.0,
                      rank=0, world=1):
        """Yield (x, y) for one shuffled epoch (this rank's part of each batch); x normalized
        [B,3,224,224] of `dtype` on the device, y int64. crop_padding is ignored."""
        D.shard(0, 0, rank, world)   # checks rank and world
        n = len(self.train_samples)
        g = D.epoch_generator(seed, epoch)
        perm = torch.randperm(n, generator=g)
        seeds = torch.randint(0, 2 ** SEED_BITS, (n,), generator=g)
        boxes = D.erase_boxes(n, erase, g, size=SIZE) if augment and erase > 0 else None
        transform = train_transform(True if flip is None else bool(flip)) if augment else eval_transform()
        parts = [D.shard(i, min(i + batch_size, n), rank, world) for i in range(0, n, batch_size)]
        index = perm.tolist()
        seed_of = seeds.tolist() if augment else [None] * n
        items = [[(index[p], seed_of[p]) for p in pos.tolist()] for pos in parts]
        for pos, (x, y) in zip(parts, self._load(_Seeded(self.train_samples, transform), items)):
            x = self._finish(x, dtype, channels_last)
            if boxes is not None:
                x.masked_fill_(D.erase_mask(boxes[pos].to(x.device), size=SIZE), 0.0)
            yield x, y

    def test_batches(self, batch_size, dtype=torch.float32, channels_last=False, rank=0, world=1):
        """Yield (x, y) over this rank's part of the validation set, fixed order, eval transform."""
        mine = D.shard(0, len(self.test_samples), rank, world).tolist()
        items = [[(i, None) for i in mine[j:j + batch_size]] for j in range(0, len(mine), batch_size)]
        for x, y in self._load(_Seeded(self.test_samples, eval_transform()), items):
            yield self._finish(x, dtype, channels_last), y

    # ---- helpers ----------------------------------------------------------------------------

    def _load(self, dataset, batches):
        """(uint8 x, int64 y) on the device for each list of items in `batches`, in order; an
        empty list (a rank with no part of a short last batch) gives empty tensors."""
        full = [b for b in batches if b]
        loader = iter(torch.utils.data.DataLoader(
            dataset, batch_sampler=full, num_workers=self.workers,
            pin_memory=self.device.type == "cuda", prefetch_factor=2 if self.workers else None,
            # its own generator for the workers' base seed (unused: items carry their seeds),
            # so the global CPU generator is not advanced by loading
            generator=torch.Generator().manual_seed(0))) if full else iter(())
        try:
            for b in batches:
                if not b:
                    yield (torch.empty((0, *self.input_shape), dtype=torch.uint8, device=self.device),
                           torch.empty(0, dtype=torch.int64, device=self.device))
                    continue
                try:
                    x, y = next(loader)
                except D.DataError as e:   # from a worker: its traceback is in the text, keep the line
                    raise D.DataError(_last_line(str(e))) from None
                yield (x.to(self.device, non_blocking=True),
                       y.to(self.device, dtype=torch.int64, non_blocking=True))
        finally:
            # workers stopped now, not whenever the iterator is collected: a collected one's
            # queue thread can print a traceback into whatever runs then
            shutdown = getattr(loader, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def _finish(self, x, dtype, channels_last):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if x.device not in self._affine:
            std = torch.tensor(STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
            mean = torch.tensor(MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
            self._affine[x.device] = (1.0 / (255.0 * std), -mean / std)
        scale, shift = self._affine[x.device]
        out = torch.addcmul(shift, x.to(torch.float32), scale)
        return out if dtype == torch.float32 else out.to(dtype)


def _last_line(text):
    """A DataLoader worker's error re-raised in the main process holds the worker's whole
    traceback ("Caught DataError in DataLoader worker process 0. Original Traceback ...");
    its last line is the error itself."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) <= 1:
        return text.strip()
    # the class as the traceback names it: "DataError", "sparsecs.sampling.DataError", ...
    return re.sub(r"^(?:[\w.]+\.)?DataError: ", "", lines[-1])


# ---- loading ------------------------------------------------------------------------------

def _base(root, folder):
    """The folder holding train/ and val/: ROOT/<folder> if it exists, else ROOT itself when it
    holds train/ or val/; DataError (one line) if neither."""
    nested = os.path.join(root, folder)
    if os.path.isdir(nested):
        return nested
    if any(os.path.isdir(os.path.join(root, s)) for s in ("train", "val")):
        return root
    raise D.DataError(f"ImageNet not found in {os.path.join(root, '')} (no {nested}): "
                      + HOW.format(base=nested))


def _walk(label, path):
    """(classes, samples) of the ImageFolder tree at `path`, as torchvision.datasets.ImageFolder
    lists them (classes: the sorted class folders; samples: every image below each, in sorted
    walk order), except for symlinks: a class folder may be a symlink (to a data disk), but
    symlinked folders inside a class folder are not followed (`ln -s .. n01/loop` would list
    the tree again, and other classes' images under this label), and a folder or image that two
    classes reach (`n02 -> n01`) is a DataError instead of relabelled images."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

    try:
        classes = sorted(e.name for e in os.scandir(path) if e.is_dir())
    except OSError:
        classes = []
    samples, owner = [], {}
    for i, c in enumerate(classes):
        top = os.path.join(path, c)
        real = os.path.realpath(top)
        if real in owner:
            raise D.DataError(f"{label}: {top} is the same folder as {owner[real]} (a symlink): "
                              f"each class needs its own folder")
        owner[real] = top
        for root, _, files in sorted(os.walk(top, followlinks=False)):
            for f in sorted(files):
                p = os.path.join(root, f)
                if not has_file_allowed_extension(f, IMG_EXTENSIONS):
                    continue
                r = os.path.realpath(p)
                if r in owner:
                    raise D.DataError(f"{label}: {p} is the same image as {owner[r]} (a symlink): "
                                      f"an image may be listed once")
                owner[r] = p
                samples.append((p, i))
    return classes, samples


def _scan(label, base, split):
    path = os.path.join(base, split)
    if not os.path.isdir(path):
        raise D.DataError(f"{label}: {path} is missing: " + HOW.format(base=base))
    classes, samples = _walk(label, path)
    if not samples:
        raise D.DataError(f"{label}: no images in class folders of {path}: " + HOW.format(base=base))
    found = set(t for _, t in samples)
    empty = [c for i, c in enumerate(classes) if i not in found]
    if empty:
        what = (f"{os.path.join(path, empty[0])} has no images" if len(empty) == 1 else
                f"{os.path.join(path, empty[0])} and {len(empty) - 1} other class folders have no images")
        raise D.DataError(f"{label}: {what}: " + HOW.format(base=base))
    return classes, samples


def load(name, root, device="cpu", workers=8, folder="imagenet", label="ImageNet"):
    """FolderData of ROOT/<folder>/{train,val} (or ROOT/{train,val}); DataError if unusable."""
    base = _base(root, folder)
    train_classes, train = _scan(label, base, "train")
    val_classes, val = _scan(label, base, "val")
    if train_classes != val_classes:
        only_t = sorted(set(train_classes) - set(val_classes))
        only_v = sorted(set(val_classes) - set(train_classes))
        odd = (f"{only_t[0]!r} only in train/" if only_t else f"{only_v[0]!r} only in val/")
        raise D.DataError(f"{label}: train/ and val/ in {base} have different class folders "
                          f"({len(train_classes)} and {len(val_classes)}; e.g. {odd}): both "
                          f"need the same one folder per class")
    return FolderData(name, train, val, train_classes, device=device, workers=workers)

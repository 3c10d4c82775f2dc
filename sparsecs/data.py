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

Here: the registry and load(); the in-memory set and its batching are inmemory.py (Data, also
data.Data), the readers of its files readers.py.
"""

from dataclasses import dataclass, field
from typing import Callable

from sparsecs import imagefolder
from sparsecs import readers
from sparsecs.inmemory import Data  # noqa: F401 (data.Data: an in-memory set)
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


def _load_imagefolder(spec, root, download=False, device="cpu", workers=8):
    return imagefolder.load(spec.name, root, device=device, workers=workers)


# ---- the registry -------------------------------------------------------------------------

# The authors' constants (CIFAR-10 statistics), used for CIFAR-100 and digits too, as there.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)

register(DataSet("cifar10", "CIFAR-10", 10, (3, 32, 32), CIFAR_MEAN, CIFAR_STD, 4, True,
                 _in_memory(readers.read_cifar), 50_000, 10_000))
register(DataSet("cifar100", "CIFAR-100", 100, (3, 32, 32), CIFAR_MEAN, CIFAR_STD, 4, True,
                 _in_memory(readers.read_cifar), 50_000, 10_000))
register(DataSet("digits", "digits", 10, (3, 32, 32), CIFAR_MEAN, CIFAR_STD, 2, False,
                 _in_memory(readers.read_digits), 1_437, 360))
# Fashion-MNIST's own statistics over its 60,000 training images (mean 0.2860, std 0.3530).
register(DataSet("fashion_mnist", "Fashion-MNIST", 10, (1, 28, 28), (0.2860,), (0.3530,), 2, True,
                 _in_memory(readers.read_fashion), 60_000, 10_000))
# nominal classes: a FolderData has one class per class folder; crop_padding unused there
register(DataSet("imagenet", "ImageNet", 1000, (3, imagefolder.SIZE, imagefolder.SIZE),
                 imagefolder.MEAN, imagefolder.STD, 0, True, _load_imagefolder, 1_281_167, 50_000))

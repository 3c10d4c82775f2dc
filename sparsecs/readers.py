"""The readers of the in-memory data sets' files (data.py registers them): scikit-learn's
digits, CIFAR's python-pickle archives (a restricted unpickler), Fashion-MNIST's IDX files
(data_dir, else Debian's package, else torchvision's download). Each returns (train x, train y,
test x, test y) as uint8 images [N,C,S,S] and int64 labels, or raises DataError (one line)."""
import gzip
import os
import pickle
import shutil
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from sparsecs import fileio
from sparsecs.sampling import DataError, one_line


def read_digits(spec, root=None, download=False):
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


def read_cifar(spec, root, download):
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


def read_fashion(spec, root, download):
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

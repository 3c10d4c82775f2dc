"""Images/second: torchvision DataLoader (PIL transforms, worker processes) vs data.py batches.

    python -m benchmarks.bench_data [--workers 2] [--batches N] [--device cpu] [--threads T]

Both sides do the same work per image: 4-pixel zero-padded random crop, horizontal flip
(p=0.5), conversion to float, normalization, batches of 128 in shuffled order. Data: 50,000
random uint8 images written as a fake cifar-10-batches-py in a temporary folder and loaded
with data.load, so data.py's real reading path is used. Not a test: it prints a table.
"""

import argparse
import math
import os
import pickle
import tempfile
import time

import numpy as np
import torch

from sparsecs import data

CIFAR = data.get("cifar10")     # the set whose files and pipeline are timed


def write_fake_cifar10(root, n_train=50_000, n_test=10_000):
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    files = [(f"data_batch_{i}", n_train // 5) for i in range(1, 6)] + [("test_batch", n_test)]
    for name, n in files:
        d = {b"data": rng.integers(0, 256, (n, math.prod(CIFAR.input_shape)), dtype=np.uint8),
             b"labels": rng.integers(0, 10, n).tolist()}
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(d, f, protocol=4)


class PILDataset(torch.utils.data.Dataset):
    """The usual torchvision pipeline: one PIL image at a time through the transforms."""

    def __init__(self, x, y):
        from torchvision import transforms
        self.x = x.permute(0, 2, 3, 1).contiguous().numpy()   # HWC for PIL
        self.y = y.numpy()
        self.transform = transforms.Compose([
            transforms.RandomCrop(CIFAR.input_shape[-1], padding=CIFAR.crop_padding),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR.mean, CIFAR.std),
        ])

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def time_torchvision(d, batch_size, workers, max_batches):
    loader = torch.utils.data.DataLoader(PILDataset(d.train_x.cpu(), d.train_y.cpu()),
                                         batch_size=batch_size, shuffle=True,
                                         num_workers=workers, persistent_workers=False)
    n = 0
    acc = 0.0
    t = time.perf_counter()   # worker start-up counted: it is paid every epoch
    for b, (x, y) in enumerate(loader):
        if max_batches and b >= max_batches:
            break
        acc += float(x.sum()) + int(y.sum())
        n += len(y)
    return n, time.perf_counter() - t


def time_data_py(d, batch_size, max_batches, device):
    n = 0
    acc = torch.zeros((), device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    next(d.train_batches(batch_size, seed=0, epoch=0))   # pads the set once (load-time work)
    sync()
    t = time.perf_counter()
    for b, (x, y) in enumerate(d.train_batches(batch_size, seed=0, epoch=1)):
        if max_batches and b >= max_batches:
            break
        acc += x.sum() + y.sum()
        n += len(y)
    float(acc)   # waits for the device
    return n, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    ap.add_argument("--batches", type=int, default=0, help="batches per side (0: one epoch)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="cpu", help="device of data.py's tensors")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads of the main process (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as root:
        write_fake_cifar10(root)
        t = time.perf_counter()
        d = data.load("cifar10", root=root, device=args.device, download=False)
        load_s = time.perf_counter() - t
    print(f"data.load: {len(d.train_y)} train images on {args.device} in {load_s:.2f} s; "
          f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}")

    n_a, s_a = time_torchvision(d, args.batch_size, args.workers, args.batches)
    n_b, s_b = time_data_py(d, args.batch_size, args.batches, args.device)
    r_a, r_b = n_a / s_a, n_b / s_b
    print()
    print(f"| pipeline (batch {args.batch_size}) | images | seconds | images/s |")
    print("|---|---:|---:|---:|")
    print(f"| torchvision DataLoader, PIL transforms, {args.workers} workers "
          f"| {n_a} | {s_a:.2f} | {r_a:,.0f} |")
    print(f"| data.Data.train_batches on {args.device} | {n_b} | {s_b:.2f} | {r_b:,.0f} |")
    print(f"\nratio data.py / torchvision: {r_b / r_a:.1f}x")


if __name__ == "__main__":
    main()

"""An in-memory data set on one device: uint8 images and labels, batched with the papers'
augmentation done on the device (data.py's docstring says what each step is): crops and
flips as two gathers over the training set padded once, normalization as one multiply-add,
random erasing as one mask; test batches in fixed order; both sharded for DDP."""
import math

import torch

from sparsecs.sampling import DataError, epoch_generator, erase_boxes, erase_mask, shard


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

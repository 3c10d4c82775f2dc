"""What both kinds of data set share: the one-line error, the per-epoch generator, rank
sharding and batched random erasing (data.py keeps sets in memory, imagefolder.py streams
them from disk; both import this, neither imports the other's internals).
"""
import math

import torch

# Random erasing as in the authors' C10 ResNet-20 script: area fraction and aspect ratio ranges.
ERASE_SCALE = (0.0, 0.4)
ERASE_RATIO = (0.3, 3.3)
ERASE_TRIES = 10   # torchvision's attempts at a box that fits before giving up on an image


class DataError(Exception):
    """A data set is missing or unreadable; the message is one line: what and what to do."""


def one_line(text, limit=160):
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


def erase_boxes(n, p, g, size):
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


def erase_mask(boxes, size):
    """[B,1,size,size] True inside each image's box (broadcasts over channels)."""
    r = torch.arange(size, device=boxes.device)
    top, left, h, w = (boxes[:, i].view(-1, 1) for i in range(4))
    rows = (r >= top) & (r < top + h)                           # [B,size]
    cols = (r >= left) & (r < left + w)
    return (rows.view(-1, 1, size, 1) & cols.view(-1, 1, 1, size))



"""One run across processes: DistributedDataParallel under torchrun (NCCL on GPUs, gloo on CPUs).

    torchrun --nproc_per_node=N train.py CONFIG [KEY=VALUE ...]

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op and a
run is one process, as before. The contract (train.py keeps it):

- The global batch is the config's batch_size: global batch i is the same images, with the
  same augmentation, whatever the world size, and rank r trains on its part of it
  (data.*.train_batches(rank=, world=)).
- The loss of rank r is Σ(its per-image losses) · world / (global batch size): DDP averages
  gradients over ranks, so every rank's gradient is exactly the gradient of the global
  batch's mean loss, also for a last batch that does not split evenly.
- Every method then steps on identical gradients from identical weights, so masks,
  thresholds and optimizer state stay identical on every rank without further communication.
- BatchNorm normalizes per rank unless `sync_bn: true` (statistics over the global batch:
  torch's SyncBatchNorm on GPUs, SyncBatchNorm2d below on CPUs, where torch's has no
  kernel); with it a run's result does not depend on the world size, to float rounding.
- Only rank 0 writes the run folder; checkpoints hold the unwrapped model, so a run resumes
  under any world size.
"""
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class Dist:
    """Where this process stands: rank, world size, local rank (its GPU on the node)."""

    def __init__(self, rank=0, world=1, local_rank=0):
        self.rank, self.world, self.local_rank = rank, world, local_rank

    @property
    def enabled(self):
        return self.world > 1

    @property
    def main(self):
        return self.rank == 0

    def __repr__(self):
        return f"Dist(rank={self.rank}, world={self.world}, local_rank={self.local_rank})"

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank (a no-op in one process)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, *values):
        """Each value summed over ranks, as float64 (counts stay exact up to 2**53)."""
        if not self.enabled:
            return [float(v) for v in values]
        # NCCL reduces only GPU tensors (this rank's GPU, set in from_env); gloo CPU ones
        where = "cuda" if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=where)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj):
        """[every rank's `obj`] in rank order ([obj] in one process)."""
        if not self.enabled:
            return [obj]
        box = [None] * self.world
        dist.all_gather_object(box, obj)
        return box

    def barrier(self):
        if self.enabled:
            dist.barrier()


def from_env():
    """Join the process group torchrun describes (once per process); Dist() without torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    d = Dist(rank, world, local)
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and os.environ.get("XRDA_DIST_BACKEND") != "gloo"
        if cuda:
            torch.cuda.set_device(local % torch.cuda.device_count())
        dist.init_process_group("nccl" if cuda else "gloo")
        d.owns_group = True
    return d


def lost_peer(e, d):
    """One line for a RuntimeError that says another process of the run is gone (a killed
    rank: gloo's "Connection reset by peer", NCCL's errors, a timed-out collective), or None
    for any other error. Only under DDP."""
    if not d.enabled:
        return None
    text = " ".join(str(e).split())
    dist_error = isinstance(e, getattr(dist, "DistError", ()))
    signs = ("gloo", "nccl", "connection reset", "connection closed", "connection refused",
             "broken pipe", "timed out", "socket timeout", "process group", "peer")
    if not dist_error and not any(s in text.lower() for s in signs):
        return None
    import re
    text = re.sub(r"^\[[^\]]*\.(?:cc|cpp|h):\d+\]\s*", "", text)   # gloo's source location
    text = text.split(". This is typically")[0][:200]
    return (f"rank {d.rank} of {d.world}: lost contact with another process of this run ({text}); "
            f"the last finished epoch is checkpointed: see the other ranks' logs, then rerun the "
            f"same command to resume")


def close(d):
    """Leave the process group, if this Dist joined it (a caller that set one up keeps it)."""
    if getattr(d, "owns_group", False) and dist.is_initialized():
        dist.destroy_process_group()


def device_for(d, device):
    """This rank's GPU (cuda:LOCAL_RANK) when the run is on GPUs."""
    if d.enabled and device.type == "cuda":
        return torch.device("cuda", d.local_rank % torch.cuda.device_count())
    return device


def wrap(model, d, device):
    """The model as the training step calls it: DDP across ranks, the model itself otherwise."""
    if not d.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


@torch.no_grad()
def broadcast_buffers(model, d):
    """Rank 0's BatchNorm running statistics on every rank. DDP broadcasts them at the start
    of each forward, so after the last step of an epoch each rank holds its own update;
    evaluation and checkpoints use rank 0's."""
    if d.enabled:
        for b in model.buffers():
            dist.broadcast(b, src=0)


def sync_batchnorm(model, device):
    """BatchNorm layers replaced by ones that normalize over the global batch (same keys in
    the state dict, so checkpoints and model.pt are those of a plain model)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, m in list(model.named_children()):
        if isinstance(m, nn.BatchNorm2d) and not isinstance(m, SyncBatchNorm2d):
            s = SyncBatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
            s.load_state_dict(m.state_dict())
            s.to(device=m.weight.device if m.affine else device)
            setattr(model, name, s)
        else:
            sync_batchnorm(m, device)
    return model


class _SyncBN(torch.autograd.Function):
    """Batch normalization with mean and variance over every rank's part of the batch; the
    backward pass sums the two per-channel reductions it needs over ranks as well."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        c = x.shape[1]
        xf = x.float()
        # E[x²] − E[x]² in float64: in float32 it cancels away the variance of activations
        # whose mean is large against their spread (0.4% gradient errors measured)
        xd = x.double()
        local = torch.cat([xd.sum((0, 2, 3)), (xd * xd).sum((0, 2, 3)),
                           torch.tensor([x.numel() / c], dtype=torch.float64, device=x.device)])
        dist.all_reduce(local)
        count = local[-1]
        mean64 = local[:c] / count
        var64 = (local[c:2 * c] / count - mean64 * mean64).clamp_min(0)
        mean, var, count = mean64.float(), var64.float(), count.float()
        invstd = torch.rsqrt(var + eps)
        xhat = (xf - mean.view(1, c, 1, 1)) * invstd.view(1, c, 1, 1)
        ctx.save_for_backward(xhat, weight, invstd, count)
        out = xhat * weight.view(1, c, 1, 1) + bias.view(1, c, 1, 1)
        ctx.mark_non_differentiable(mean, var, count)
        return out.to(x.dtype), mean, var, count

    @staticmethod
    def backward(ctx, grad, *_):
        xhat, weight, invstd, count = ctx.saved_tensors
        c = grad.shape[1]
        g = grad.float()
        dbias = g.sum((0, 2, 3))                    # this rank's share: DDP averages these
        dweight = (g * xhat).sum((0, 2, 3))
        both = torch.cat([dbias, dweight])
        total = both.clone()
        dist.all_reduce(total)
        sum_g, sum_gx = total[:c].view(1, c, 1, 1), total[c:].view(1, c, 1, 1)
        dx = (weight * invstd).view(1, c, 1, 1) * (g - sum_g / count - xhat * sum_gx / count)
        return dx.to(grad.dtype), dweight, dbias, None


class SyncBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d whose training-mode statistics cover the global batch (gloo, CPU).
    Running statistics are updated as nn.BatchNorm2d does: unbiased variance, `momentum`."""

    def forward(self, x):
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        out, mean, var, count = _SyncBN.apply(x, self.weight, self.bias, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                n = float(count)
                self.running_mean.mul_(1 - m).add_(mean, alpha=m)
                self.running_var.mul_(1 - m).add_(var * (n / max(n - 1, 1)), alpha=m)
        return out


def cross_entropy(logits, y, label_smoothing, d, global_count):
    """The training loss: the batch mean in one process (unchanged from before DDP, so old
    runs stay bit-identical); under DDP the rank's summed loss scaled to the global mean."""
    if not d.enabled:
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    return (F.cross_entropy(logits, y, reduction="sum", label_smoothing=label_smoothing)
            * (d.world / global_count))

"""Accuracy, sparsity and FLOPs: pure functions of a model (and data for accuracy).

Counts use the weights the forward pass uses (`module.weight`, which is the
thresholded or masked tensor when a method parametrizes the layer).
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from sparsecs.optim.base import penalized_modules, probe, probe_shape


@torch.no_grad()
def evaluate(model, batches, predictions=None):
    """(mean cross-entropy, accuracy in percent) over an iterable of (x, y); `predictions`, a
    list, receives each batch's predicted classes (a CPU tensor) in order."""
    was_training = model.training
    model.eval()
    loss = correct = n = 0
    for x, y in batches:
        out = model(x).float()
        loss += F.cross_entropy(out, y, reduction="sum").item()
        pred = out.argmax(1)
        correct += (pred == y).sum().item()
        if predictions is not None:
            predictions.append(pred.cpu())
        n += y.numel()
    model.train(was_training)
    return loss / n, 100.0 * correct / n


@torch.no_grad()
def layer_table(model, input_shape=None):
    """One dict per conv/linear layer: shape, entries, nonzeros, structured zeros, MACs.

    MACs are those of one input of `input_shape` (N, C, H, W), by default one image of the
    model's own `input_shape` (a model without one: ValueError)."""
    sizes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: sizes.__setitem__(n, o.shape))
             for n, m in penalized_modules(model)]
    probe(model, hooks, input_shape)
    rows = []
    for name, m in penalized_modules(model):
        w = m.weight.detach()
        nnz = int(torch.count_nonzero(w))
        if isinstance(m, nn.Conv2d):
            out_hw = sizes[name][-2] * sizes[name][-1]
            macs = out_hw * w.numel()  # weight already holds C_in/groups
            kernels = w.flatten(2).abs().sum(-1)
            zero_kernels = int((kernels == 0).sum())
            zero_filters = int((w.flatten(1).abs().sum(-1) == 0).sum())
            n_kernels, n_filters = kernels.numel(), w.shape[0]
        else:
            macs = w.numel()
            zero_kernels = n_kernels = 0
            zero_filters = int((w.abs().sum(-1) == 0).sum())
            n_filters = w.shape[0]
        rows.append({"layer": name, "type": type(m).__name__, "shape": "x".join(map(str, w.shape)),
                     "n_weights": w.numel(), "nnz": nnz, "sparsity": 1 - nnz / w.numel(),
                     "kernels": n_kernels, "zero_kernels": zero_kernels,
                     "filters": n_filters, "zero_filters": zero_filters,
                     "flops_dense": macs, "flops_nonzero": macs * nnz / w.numel()})
    return rows


@torch.no_grad()
def counts(model, input_shape=None):
    """Model-level sparsity and FLOPs (multiply-adds) of conv and linear layers.

    Expects a plain model (weights as used, no parametrization): train.py and eval.py
    count on the model rebuilt from Method.export().
    """
    rows = layer_table(model, input_shape)
    n_weights = sum(r["n_weights"] for r in rows)
    nnz = sum(r["nnz"] for r in rows)
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    nnz_all = sum(int(torch.count_nonzero(p)) for p in params)
    return {"sparsity": 1 - nnz / n_weights, "sparsity_all": 1 - nnz_all / n_params,
            "nnz": nnz, "n_weights": n_weights, "n_params": n_params,
            "flops_dense": sum(r["flops_dense"] for r in rows),
            "flops_nonzero": sum(r["flops_nonzero"] for r in rows)}


# the torch functions that multiply-add, and the inner dimension each output element sums over
_CONVS = (torch.conv1d, torch.conv2d, torch.conv3d)
_PRODUCTS = (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__,
             torch.mm, torch.Tensor.mm, torch.bmm, torch.Tensor.bmm)
_ADD_PRODUCTS = (torch.addmm, torch.Tensor.addmm, torch.baddbmm, torch.Tensor.baddbmm)


def _op_macs(func, args, kwargs, out):
    """Multiply-adds of one call: each output element of a conv sums over its weight's
    C_in/groups x kernel entries, of a linear or matrix product over the inner dimension."""
    if func in _CONVS:
        w = args[1] if len(args) > 1 else kwargs["weight"]
        return out.numel() * w[0].numel()
    if func is F.linear:
        w = args[1] if len(args) > 1 else kwargs["weight"]
        return out.numel() * w.shape[-1]
    if func in _PRODUCTS:
        a = args[1] if func is torch.Tensor.__rmatmul__ else args[0]
        return out.numel() * a.shape[-1]
    if func in _ADD_PRODUCTS:
        return out.numel() * args[1].shape[-1]
    return 0


class _CountMacs(TorchFunctionMode):
    """Adds up _op_macs of every torch function call (a mode is off inside its own handler,
    so F.linear is not counted again as the addmm it calls)."""

    def __init__(self):
        super().__init__()
        self.macs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.macs += _op_macs(func, args, kwargs, out)
        return out


@torch.no_grad()
def graph_macs(model, input_shape=None):
    """Multiply-adds of one forward of one input, counted on every conv, linear and matrix
    product the forward calls, module or not (layer_table sees only nn.Conv2d / nn.Linear
    modules). For a slim export (exporting/slim.py) that differs: the constants that removed
    channels pass to padded 3x3 convs are added as conv(ones, K), a functional conv with one
    input channel that no module hook sees. `input_shape` (1, C, H, W), by default the
    model's own; the count is per image."""
    if input_shape is None:
        input_shape = probe_shape(model)
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    counter = _CountMacs()
    try:
        with counter:
            model(torch.zeros(input_shape, device=p.device, dtype=p.dtype))
    finally:
        model.train(was_training)
    return counter.macs // int(input_shape[0])


@torch.no_grad()
def sparsity(model):
    """(fraction of exact zeros, nonzeros) over conv and linear weights, without a forward."""
    ws = [m.weight.detach() for _, m in penalized_modules(model)]
    n = sum(w.numel() for w in ws)
    nnz = sum(int(torch.count_nonzero(w)) for w in ws)
    return 1 - nnz / n, nnz

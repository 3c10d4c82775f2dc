"""Export a finished run's model in one of three forms, each checked on export.

    python export.py RUN_DIR --format slim|csr|dense [--out FILE] [--batch N]

slim   Conv filters whose weights are all zero, and channels that no later layer reads, are
       physically removed; torch-pruning's DependencyGraph finds every layer that shares the
       channel (BatchNorms, the next convs' inputs, DenseNet concatenations, residual
       additions). A zero filter still passes its BatchNorm's shift through ReLU, pools and
       residual additions; that input-independent value is folded into the layers that read
       it so the logits do not change: into a Linear's bias; into the next BatchNorm's
       running mean (1x1 convs) or a bias; for padded 3x3 convs, whose border pixels read
       less of it than the interior, into a fixed [C, H, W] map added to the conv's output,
       or, where that map would outweigh the layer's weights, a one-channel kernel
       convolved with ones (so the slim model expects inputs of the model's input_shape:
       32x32 for the CIFAR models, like the training data). Residual-stream channels go
       only where every conv writing them is zero (then the stream carries a constant there). Option-A shortcuts are the one hand-written case
       (_IndexShortcut says why). The file is the pruned network as a torch.fx GraphModule
       saved whole with torch.save: only torch.nn layers and generated code, so it loads
       without this repository (`load_slim(file)`, or torch.load(file, weights_only=False):
       a pickle, load only files you trust).
csr    The trained weights, conv and linear weights stored sparse (per tensor the smaller of CSR,
       i.e. row pointers + column indices + nonzero values, or a bitmask + nonzero values), every
       other tensor dense. `load_csr(file)` rebuilds the dense model bit for bit (needs this
       repository's models/). Loads with torch.load(weights_only=True).
dense  The state dict with the model's name and width (what model.pt holds): the size baseline.
       `load_dense(file)`.

Every export is checked: the file is read back and its logits on a batch of the run's test
data must equal the original model's (to 1e-4 of the logit scale). The file size is printed
next to the dense size, and the facts go to RUN_DIR/export.json, one key per format. A failed
check or bad input ends with one line on stderr and a non-zero exit; nothing is written.
"""
import argparse
import contextlib
import copy
import io
import json
import math
import operator
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import runs

FORMATS = ("slim", "csr", "dense")
EXPORT_JSON = "export.json"
DEFAULT_OUT = {"slim": "model.slim.pt", "csr": "model.csr.pt", "dense": "model.dense.pt"}
RTOL = 1e-4          # allowed |logit difference| / max(1, max |logit|)
INPUT_SHAPE = (1, 3, 32, 32)   # probe input of a model without `input_shape` (models.get_model sets it)


class ExportError(Exception):
    """One line: what is wrong with the input or the export; `code` the exit status."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------- run folders

def finished_run(run_dir):
    """The summary of the finished run in `run_dir`; ExportError (one line) otherwise."""
    if not os.path.exists(run_dir):
        raise ExportError(f"{run_dir}: no such run folder")
    if not os.path.isdir(run_dir):
        raise ExportError(f"{run_dir}: not a run folder (give the folder that holds model.pt)")
    notes = []
    summary = runs.finished_summary(run_dir, warn=notes.append)
    if summary is None:
        missing = [f for f in (runs.SUMMARY, runs.MODEL) if not os.path.exists(runs.path(run_dir, f))]
        if notes and not missing:   # damaged or altered: say which file, not "not finished"
            raise ExportError(f"{notes[0].removesuffix(': rerunning it')}; retrain the run "
                              f"(train.py with its config) or restore the file")
        raise ExportError(f"{run_dir}: run not finished (no {' or '.join(missing)}); "
                          f"finish it with train.py first")
    return summary


# ----------------------------------------------------------------------------- slim

class _IndexShortcut(nn.Module):
    """An option-A shortcut written as an index: output channel j is input channel src[j], or
    the zero channel appended at index c_in. Equal to models.resnet.ShortcutA (subsample, then
    zero channels on both sides), but it can lose input and output channels independently.

    Hand-written because torch-pruning cannot do this case: it reads ShortcutA's F.pad as an
    element-wise op, so it ties stage-1 channel k to channel k of stages 2 and 3, while the pad
    shifts it to k + pad//2 (and changes the channel count). Registered with the
    DependencyGraph as a customized layer (_index_shortcut_pruner), so torch-pruning still finds
    every other layer of each residual stream; the pad below, inside, only appends a channel,
    which torch-pruning's element-wise reading gets right. torch.fx traces through this module,
    so the exported file holds only torch ops.
    """

    def __init__(self, c_in, src, stride):
        super().__init__()
        self.c_in, self.stride = c_in, stride
        self.register_buffer("src", torch.as_tensor(src, dtype=torch.long))

    @classmethod
    def from_shortcut(cls, sc, c_in):
        lo = sc.pad // 2
        c_out = c_in + sc.pad
        src = [j - lo if lo <= j < lo + c_in else c_in for j in range(c_out)]
        return cls(c_in, src, sc.stride)

    def forward(self, x):
        x = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, 1))
        return torch.index_select(x, 1, self.src)


def _index_shortcut_pruner():
    import torch_pruning as tp

    class Pruner(tp.pruner.BasePruningFunc):
        def prune_out_channels(self, layer, idxs):
            drop = set(int(i) for i in idxs)
            layer.src = layer.src[[j for j in range(len(layer.src)) if j not in drop]]
            return layer

        def prune_in_channels(self, layer, idxs):
            # a removed input channel's constant was folded into the sibling BatchNorm first
            drop = set(int(i) for i in idxs)
            keep = [i for i in range(layer.c_in) if i not in drop]
            new = {old: pos for pos, old in enumerate(keep)}
            layer.src = torch.tensor([new.get(s, len(keep)) for s in layer.src.tolist()],
                                     dtype=torch.long)
            layer.c_in = len(keep)
            return layer

        def get_out_channels(self, layer):
            return len(layer.src)

        def get_in_channels(self, layer):
            return layer.c_in

    return Pruner()


def _replace_shortcuts(model):
    """Swap every models.resnet.ShortcutA for an _IndexShortcut; returns {shortcut: the
    BatchNorm whose output it is added to} (where a removed input channel's constant goes)."""
    from models.resnet import BasicBlock, ShortcutA

    sibling = {}
    for block in model.modules():
        if isinstance(block, BasicBlock) and isinstance(block.shortcut, ShortcutA):
            new = _IndexShortcut.from_shortcut(block.shortcut, block.conv1.in_channels)
            block.shortcut = new
            sibling[new] = block.bn2
    return sibling


class _Slimmer:
    """State of one slim export: the model being pruned, which original output channels of each
    conv / BatchNorm are still there, and what the removed channels contributed (`maps`: per
    module, a [C_out, H, W] tensor added to its output; applied by hooks while pruning and
    written into biases or an add node at the end)."""

    def __init__(self, model):
        import torch_pruning as tp

        self.tp = tp
        self.model = model
        self.input_shape = (1, *getattr(model, "input_shape", INPUT_SHAPE[1:]))
        self.sibling = _replace_shortcuts(model)
        with torch.enable_grad():      # the DependencyGraph traces through autograd
            self.DG = tp.DependencyGraph().build_dependency(
                model, example_inputs=torch.zeros(self.input_shape),
                customized_pruners={_IndexShortcut: _index_shortcut_pruner()}, verbose=False)
        self.name = {m: n for n, m in model.named_modules()}
        self.kept = {m: list(range(m.weight.shape[0])) for m in model.modules()
                     if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))}
        self.n_out = {m: len(k) for m, k in self.kept.items()}
        self.maps = {}
        self.keff = {}         # module -> (kernel, input H x W), or None once a map is not of that form
        self.hooks = []
        self.skipped = []      # (layer, channel or None, why) of zero filters that had to stay

    # -- the model as it is now (maps applied), probed with inputs that differ
    def _add_map(self, module, inputs, out):
        m = self.maps[module]
        return out + m[torch.tensor(self.kept[module])].to(out.dtype)

    def _hook(self, module):
        if module not in self.maps:
            self.maps[module] = None
            self.hooks.append(module.register_forward_hook(self._add_map))

    @torch.no_grad()
    def _probe(self, modules):
        """Inputs of `modules` for four different images (zeros, then random)."""
        seen = {}
        hs = [m.register_forward_pre_hook(lambda m, i: seen.__setitem__(m, i[0].detach().clone()))
              for m in modules]
        g = torch.Generator().manual_seed(0)
        shape = self.input_shape
        x = torch.cat([torch.zeros(shape), 2 * torch.randn((3,) + shape[1:], generator=g)])
        try:
            self.model(x)
        finally:
            for h in hs:
                h.remove()
        return seen

    @staticmethod
    def _row_zero(m, i):
        if isinstance(m, _IndexShortcut):
            return int(m.src[i]) == m.c_in                      # a padded (zero) channel
        return not bool(m.weight[i].any())

    @staticmethod
    def _slice_zero(m, i):
        if isinstance(m, _IndexShortcut):
            return False
        return not bool(m.weight[:, i].any())

    @torch.no_grad()
    def prune_conv(self, conv):
        tp = self.tp
        n = conv.out_channels
        full = self.DG.get_pruning_group(conv, tp.prune_conv_out_channels, list(range(n)))
        per_root = {}                                          # root -> [(role, module, idx)]
        for item in full:
            dep, idxs = item
            m, fn = dep.target.module, dep.handler
            if isinstance(m, (nn.Conv2d, nn.Linear, _IndexShortcut)):
                role = ("out" if self.DG.is_out_channel_pruning_fn(fn) else
                        "in" if self.DG.is_in_channel_pruning_fn(fn) else None)
            elif isinstance(m, tp.ops._OutputOp) or not (
                    isinstance(m, nn.BatchNorm2d) or type(m).__module__.startswith("torch_pruning")):
                # the channels reach the model's output, or a layer with no rule here: keep them
                self.skipped.append((self.name[conv], None, f"group holds {type(m).__name__}"))
                return
            else:      # BatchNorm, ReLU, pools, concatenation, reshape: they just follow
                continue
            for i, r in zip(idxs, item.root_idxs):
                per_root.setdefault(r, []).append((role, m, int(i)))
        zero = {r: all(self._row_zero(m, i) for role, m, i in v if role == "out")
                for r, v in per_root.items()}
        dead = {r: any(role == "in" for role, _, _ in v)
                and all(self._slice_zero(m, i) for role, m, i in v if role == "in")
                for r, v in per_root.items()}
        cand = [r for r in range(n) if zero.get(r) or dead.get(r)]
        if not cand:
            return
        consumers = {m for v in per_root.values() for role, m, _ in v if role == "in"}
        seen = self._probe(consumers)
        ok = []
        for r in cand:
            if dead[r]:
                ok.append(r)
                continue
            # a zero filter's channel must reach every reader as the same value for every input
            same = all(torch.allclose(seen[m][:, i], seen[m][:1, i].expand_as(seen[m][:, i]),
                                      rtol=1e-6, atol=1e-7)
                       for role, m, i in per_root[r] if role == "in" and not self._slice_zero(m, i))
            if same:
                ok.append(r)
            else:
                self.skipped.append((self.name[conv], r, "value depends on the input"))
        if len(ok) == n:      # a layer keeps at least one channel
            self.skipped.append((self.name[conv], ok[0], "last channel of the layer"))
            ok = ok[1:]
        if not ok:
            return
        # fold what the removed channels still contribute into the layers that read them
        fold = {}
        for r in ok:
            if dead[r]:
                continue
            for role, m, i in per_root[r]:
                if role == "in" and not self._slice_zero(m, i):
                    fold.setdefault(m, []).append(i)
        for m, idxs in fold.items():
            idxs = [i for i in idxs if seen[m][0, i].any()]        # a zero adds nothing
            if not idxs:
                continue
            v = seen[m][:1, idxs]
            if isinstance(m, nn.Conv2d):
                assert m.groups == 1
                w = m.weight[:, idxs]
                out = F.conv2d(v, w, None, m.stride, m.padding, m.dilation)[0]
                # Constant channels (the usual case) contribute conv(ones, sum_k c_k W[:, k]):
                # keep that one-channel kernel, not the [C, H, W] map, to keep the file small.
                flat = v[0].flatten(1)
                keff = ((w * flat[:, 0].view(1, -1, 1, 1)).sum(1, keepdim=True)
                        if bool((flat == flat[:, :1]).all()) else None)
                self._accumulate(m, out, keff, tuple(v.shape[-2:]))
            elif isinstance(m, nn.Linear):
                b = m.weight[:, idxs] @ v[0]
                if m.bias is None:
                    m.bias = nn.Parameter(b)
                else:
                    m.bias.add_(b)
            else:      # _IndexShortcut: the constant lands where src points, added to bn2's output
                sub = v[0, :, ::m.stride, ::m.stride]
                out = torch.zeros((len(m.src),) + sub.shape[1:])
                for k, i in enumerate(idxs):
                    out[m.src == i] += sub[k]
                self._accumulate(self.sibling[m], out, None, None)
        group = self.DG.get_pruning_group(conv, tp.prune_conv_out_channels, ok)
        for dep, idxs in group:
            m = dep.target.module
            if m in self.kept and self.DG.is_out_channel_pruning_fn(dep.handler):
                for i in sorted(set(int(i) for i in idxs), reverse=True):
                    del self.kept[m][i]
        group.prune()

    def _accumulate(self, module, out, keff, in_hw):
        """Add `out` ([C_now, H, W], current channel order) to module's output map; `keff`
        ([C_now, 1, kh, kw] or None): a kernel that gives `out` when convolved with ones."""
        self._hook(module)
        at = torch.tensor(self.kept[module])
        if self.maps[module] is None:
            self.maps[module] = torch.zeros((self.n_out[module],) + tuple(out.shape[1:]))
        self.maps[module][at] += out
        if keff is None:
            self.keff[module] = None
        elif self.keff.get(module, 0) is not None:
            if module not in self.keff:
                self.keff[module] = (torch.zeros((self.n_out[module],) + tuple(keff.shape[1:])), in_hw)
            self.keff[module][0][at] += keff

    def run(self):
        for conv in [m for m in self.model.modules() if isinstance(m, nn.Conv2d)]:
            self.prune_conv(conv)
        for h in self.hooks:
            h.remove()
        return self._trace()

    def _restore_shortcuts(self):
        """Shortcuts whose mapping is still "input channels in a block, zeros around" go back
        to models.resnet.ShortcutA (a pad, no index copy)."""
        from models.resnet import BasicBlock, ShortcutA

        for block in self.model.modules():
            if isinstance(block, BasicBlock) and isinstance(block.shortcut, _IndexShortcut):
                sc = block.shortcut
                src, c_in = sc.src.tolist(), sc.c_in
                lo = src.index(0) if 0 in src else -1
                pad = len(src) - c_in
                if lo == pad // 2 and src == [c_in] * lo + list(range(c_in)) + [c_in] * (pad - lo):
                    new = ShortcutA(c_in, len(src), sc.stride)
                    self.name[new] = self.name[sc]
                    block.shortcut = new

    @torch.no_grad()
    def _trace(self):
        self._restore_shortcuts()
        gm = torch.fx.symbolic_trace(self.model)
        nodes = {n.target: n for n in gm.graph.nodes if n.op == "call_module"}
        modules = dict(gm.named_modules())
        for module, full in self.maps.items():
            name = self.name[module]
            m = full[torch.tensor(self.kept[module])]
            node = nodes[name]
            sub = modules[name]
            scale = 1e-6 * (1.0 + float(m.abs().max()))
            uniform = float((m - m.mean((1, 2), keepdim=True)).abs().max()) <= scale
            if uniform:
                c = m.mean((1, 2))
                users = list(node.users)
                nxt = (modules.get(users[0].target)
                       if len(users) == 1 and users[0].op == "call_module" else None)
                if isinstance(sub, nn.Conv2d) and sub.bias is None and isinstance(nxt, nn.BatchNorm2d) \
                        and nxt.track_running_stats:
                    nxt.running_mean.sub_(c)        # BN(y + c) == BN with running_mean - c
                elif sub.bias is None:
                    sub.bias = nn.Parameter(c.clone())
                else:
                    sub.bias.add_(c)
            elif (isinstance(sub, nn.Conv2d) and self.keff.get(module) is not None
                  and m.numel() > sub.weight.numel()):
                # A padded conv read constant channels: its border rows and columns got less of
                # them than the interior. Where the [C, H, W] map would outweigh the layer's
                # own weights in the file, add conv(ones, K) with the folded one-channel
                # kernel K instead (three small ops a forward instead of one add).
                k, (h, w) = self.keff[module]
                attr = name.replace(".", "_") + "_fold_kernel"
                gm.register_buffer(attr, k[torch.tensor(self.kept[module])].clone())
                with gm.graph.inserting_after(node):
                    ones = gm.graph.call_method("new_ones", (node.args[0], (1, 1, h, w)))
                with gm.graph.inserting_after(ones):
                    get = gm.graph.get_attr(attr)
                with gm.graph.inserting_after(get):
                    fold = gm.graph.call_function(torch.conv2d, (ones, get, None, sub.stride,
                                                                 sub.padding, sub.dilation))
                with gm.graph.inserting_after(fold):
                    add = gm.graph.call_function(operator.add, (node, fold))
                node.replace_all_uses_with(add, delete_user_cb=lambda u: u is not add)
            else:      # add the whole [C, H, W] map (small here, or not from constants)
                attr = name.replace(".", "_") + "_fold"
                gm.register_buffer(attr, m.clone())
                with gm.graph.inserting_after(node):
                    get = gm.graph.get_attr(attr)
                with gm.graph.inserting_after(get):
                    add = gm.graph.call_function(operator.add, (node, get))
                node.replace_all_uses_with(add, delete_user_cb=lambda u: u is not add)
        gm.graph.lint()
        gm.recompile()
        gm.input_shape = tuple(self.input_shape[1:])   # what the model was probed (and folded) at
        return gm.eval()


def slim_model(model):
    """A physically smaller copy of `model` (an nn.Module of models/, eval mode) with the same
    logits: a torch.fx GraphModule made only of torch.nn layers and torch ops."""
    return slim_report(model)[0]


def slim_report(model):
    """(slim_model(model), list of (layer, channel, why) of zero filters that had to stay)."""
    model = copy.deepcopy(model).cpu().float().eval()
    for p in model.parameters():
        p.requires_grad_(True)
    s = _Slimmer(model)
    return s.run(), s.skipped


def load_slim(file, device="cpu"):
    """A slim export (no repository code needed). A pickle: load only files you trust."""
    return torch.load(file, map_location=device, weights_only=False).eval()


# ----------------------------------------------------------------------------- csr

def _encode(state_dict):
    """Conv/linear weights (>= 2-D floats) as CSR or bitmask + values, whichever is smaller;
    other float tensors dense; all values of a dtype in one flat buffer (fewer, smaller
    records in the file). Integer tensors (BatchNorm's step count) go in as they are."""
    meta, vals, cols, crows, bits, others = [], {}, [], [], [], {}
    ncols_max = max([t[0].numel() for t in state_dict.values() if t.dim() >= 2] or [1])
    col_dtype = torch.int16 if ncols_max < 2 ** 15 else torch.int32
    for name, t in state_dict.items():
        t = t.detach().cpu()
        if not t.is_floating_point():
            others[name] = t
            continue
        key = str(t.dtype).replace("torch.", "")
        buf = vals.setdefault(key, [])
        entry = {"name": name, "shape": list(t.shape), "dtype": key}
        if t.dim() >= 2:
            w = t.reshape(t.shape[0], -1)
            nz = w != 0
            nnz = int(nz.sum())
            item = t.element_size()
            csr_bytes = nnz * (item + col_dtype.itemsize) + (w.shape[0] + 1) * 4
            mask_bytes = math.ceil(w.numel() / 8) + nnz * item
            if csr_bytes <= mask_bytes:
                with warnings.catch_warnings():     # "sparse CSR support is in beta"
                    warnings.simplefilter("ignore", UserWarning)
                    c = w.to_sparse_csr()
                entry.update(kind="csr", nnz=nnz)
                crows.append(c.crow_indices().to(torch.int32))
                cols.append(c.col_indices().to(col_dtype))
                buf.append(c.values())
            else:
                entry.update(kind="mask", nnz=nnz, nbits=w.numel())
                bits.append(torch.from_numpy(np.packbits(nz.flatten().numpy())))
                buf.append(w[nz])
        else:
            entry.update(kind="dense", nnz=t.numel())
            buf.append(t.flatten())
        meta.append(entry)
    cat = lambda xs, dt: torch.cat(xs) if xs else torch.zeros(0, dtype=dt)  # noqa: E731
    return {"tensors": meta, "values": {k: torch.cat(v) for k, v in vals.items()},
            "crow": cat(crows, torch.int32), "col": cat(cols, col_dtype),
            "bits": cat(bits, torch.uint8), "others": others}


def _decode(enc):
    sd, pos = {}, {k: 0 for k in enc["values"]}
    crow_at = col_at = bit_at = 0
    for e in enc["tensors"]:
        vals = enc["values"][e["dtype"]]
        shape = e["shape"]
        p, n = pos[e["dtype"]], e["nnz"]
        v = vals[p:p + n]
        pos[e["dtype"]] = p + n
        if e["kind"] == "dense":
            t = v.reshape(shape).clone()
        elif e["kind"] == "csr":
            rows, ncols = shape[0], math.prod(shape[1:])
            crow = enc["crow"][crow_at:crow_at + rows + 1].long()
            col = enc["col"][col_at:col_at + n].long()
            crow_at, col_at = crow_at + rows + 1, col_at + n
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                # invariants checked: the indices come from a file
                t = torch.sparse_csr_tensor(crow, col, v, size=(rows, ncols),
                                            check_invariants=True).to_dense().reshape(shape)
        else:
            nbytes = math.ceil(e["nbits"] / 8)
            mask = np.unpackbits(enc["bits"][bit_at:bit_at + nbytes].numpy(), count=e["nbits"])
            bit_at += nbytes
            t = torch.zeros(e["nbits"], dtype=vals.dtype)
            t[torch.from_numpy(mask.astype(bool))] = v
            t = t.reshape(shape)
        sd[e["name"]] = t
    sd.update(enc["others"])
    return sd


def csr_file(saved):
    """What a csr export holds, from what model.pt holds (runs.model_file)."""
    return {"format": "sparse-weights-v1",
            **{k: saved[k] for k in ("model", "width", "num_classes", "dataset")},
            "weights": _encode(saved["state_dict"]),
            "order": list(saved["state_dict"])}


def load_csr(file, device="cpu"):
    """The dense model (models/), weights rebuilt exactly from a csr export, eval mode."""
    import models

    obj = torch.load(file, map_location="cpu", weights_only=True)
    sd = _decode(obj["weights"])
    model = models.from_saved(obj)
    model.load_state_dict({k: sd[k] for k in obj["order"]})
    return model.to(device).eval()


def load_dense(file, device="cpu"):
    """The model of a dense export (a path or a file object), eval mode."""
    import models

    saved = torch.load(file, map_location="cpu", weights_only=True)
    m = models.from_saved(saved)
    m.load_state_dict(saved["state_dict"])
    return m.to(device).eval()


# ----------------------------------------------------------------------------- export

def _bytes(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def check(reference, exported, x):
    """(max |logit difference|, tolerance) of `exported` against `reference` on `x`."""
    a, b = reference(x), exported(x)
    if a.shape != b.shape:
        raise ExportError(f"exported model gives logits of shape {tuple(b.shape)}, "
                          f"not {tuple(a.shape)}")
    return float((a - b).abs().max()), RTOL * max(1.0, float(a.abs().max()))


def real_batch(dataset, n=256, data_dir="data"):
    """The first `n` test images of `dataset` (normalized, on the CPU)."""
    import data as D

    d = D.load(dataset, data_dir, device="cpu", download=False)
    x, _ = next(d.test_batches(n))
    return x


def export(run_dir, fmt, out=None, batch=256, data_dir=None):
    """Export the run in `run_dir` as `fmt`; returns the facts written to export.json."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ExportError(f"--batch must be a positive number of test images, got {batch!r}", 2)
    finished_run(run_dir)
    out = out or os.path.join(run_dir, DEFAULT_OUT[fmt])
    if os.path.isdir(out):
        raise ExportError(f"--out {out} is a folder: give a file name")
    own = _run_file(run_dir, out)
    if own:
        raise ExportError(f"--out {out} is {own}, a file of the run being exported: give another "
                          f"file name (default: {os.path.join(run_dir, DEFAULT_OUT[fmt])}); nothing "
                          f"written", 2)
    saved = runs.load_model_file(run_dir)
    model = runs.load_model(run_dir)
    if data_dir is None:
        data_dir = _data_dir(run_dir)
    x = real_batch(saved["dataset"], batch, data_dir)
    dense_obj = {k: saved[k] for k in ("model", "width", "num_classes", "dataset")}
    dense_obj["state_dict"] = {k: v for k, v in model.state_dict().items()}
    dense_blob = _bytes(dense_obj)
    facts = {"format": fmt, "file": os.path.abspath(out), "dense_bytes": len(dense_blob),
             "params_before": _n_params(model), "test_images": int(x.shape[0])}
    if fmt == "dense":
        blob = dense_blob
        exported = load_dense(io.BytesIO(blob))
        facts["params_after"] = facts["params_before"]
    elif fmt == "csr":
        blob = _bytes(csr_file(dense_obj))
        exported = load_csr(io.BytesIO(blob))
        for k, v in model.state_dict().items():
            if not torch.equal(v, exported.state_dict()[k]):
                raise ExportError(f"csr export changed tensor {k}")
        # parameters the file stores: the nonzeros of conv / linear weights, every other one
        facts["params_after"] = sum(int(torch.count_nonzero(p)) if p.dim() >= 2 else p.numel()
                                    for p in model.parameters())
    else:
        gm, skipped = slim_report(model)
        blob = _bytes(gm)
        exported = load_slim(io.BytesIO(blob))
        facts["params_after"] = _n_params(exported)
        facts["channels"] = _channels(model, exported)
        facts["kept_zero_filters"] = len(skipped)
    diff, tol = check(model, exported, x)
    facts.update(bytes=len(blob), max_logit_diff=diff, tolerance=tol)
    if not diff <= tol:
        raise ExportError(f"{fmt} export changed the logits: max |difference| {diff:.3g} > "
                          f"tolerance {tol:.3g}; nothing written")
    runs.atomic_write(out, blob)
    record = os.path.join(run_dir, EXPORT_JSON)
    merged = {}
    if os.path.exists(record):
        try:
            with open(record) as f:
                merged = json.load(f)
        except (OSError, ValueError):
            merged = {}
    merged[fmt] = facts
    runs.save_json(merged, record)
    return facts


RUN_FILES = (runs.CONFIG, runs.METRICS, runs.LAYERS, runs.SUMMARY, runs.CHECKPOINT,
             runs.CHECKPOINT_PREV, runs.MODEL, runs.LOCK, runs.MARKER, EXPORT_JSON)


def _run_file(run_dir, out):
    """The name of the run's own file that path `out` is (by path, symlink or hard link), or
    None: an export never replaces the weights, summary or log of the run it reads."""
    real = os.path.realpath(out)
    for name in RUN_FILES:
        p = os.path.join(run_dir, name)
        if os.path.realpath(p) == real:
            return name
        with contextlib.suppress(OSError):
            if os.path.exists(out) and os.path.exists(p) and os.path.samefile(p, out):
                return name
    return None


def _channels(model, slim):
    """{conv: [out channels before, after]} for the convs that lost channels."""
    before = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    after = {n: m.out_channels for n, m in slim.named_modules() if isinstance(m, nn.Conv2d)}
    return {n: [before[n], after[n]] for n in before if n in after and after[n] != before[n]}


def _data_dir(run_dir):
    cfg = os.path.join(run_dir, runs.CONFIG)
    if os.path.exists(cfg):
        try:
            import yaml
            with open(cfg) as f:
                return (yaml.safe_load(f) or {}).get("data_dir", "data")
        except Exception:
            pass
    return "data"


# ----------------------------------------------------------------------------- CLI

def _positive(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (test images the check uses), got {n}")
    return n


def size_ratio(nbytes, dense_bytes):
    """'2.50x smaller' or '1.20x larger' than the dense file ('the same size' within 0.5%)."""
    if nbytes <= 0 or dense_bytes <= 0:
        return "size unknown"
    r = dense_bytes / nbytes
    if abs(r - 1) < 0.005:
        return "the same size as dense"
    return f"{r:.2f}x smaller" if r > 1 else f"{1 / r:.2f}x larger"


class _Parser(argparse.ArgumentParser):
    def error(self, message):      # one line, not usage + message
        self.exit(2, f"export.py: error: {message}\n")


def main(argv=None):
    p = _Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a finished run folder")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", help="output file (default: RUN_DIR/model.<format>.pt)")
    p.add_argument("--batch", type=_positive, default=256, help="test images the check uses")
    p.add_argument("--data-dir", help="where the data set lives (default: the run's data_dir)")
    args = p.parse_args(argv)
    import data as D
    try:
        f = export(args.run_dir, args.format, args.out, args.batch, args.data_dir)
    except (ExportError, runs.RunFolderError, D.DataError, OSError) as e:
        print(f"export.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        return getattr(e, "code", 1) if isinstance(e, ExportError) else 1
    print(f"{args.format}: {f['file']}  {f['bytes']:,} bytes (dense {f['dense_bytes']:,} bytes, "
          f"{size_ratio(f['bytes'], f['dense_bytes'])})")
    print(f"parameters {f['params_before']:,} -> {f['params_after']:,}; max |logit difference| "
          f"{f['max_logit_diff']:.2g} (tolerance {f['tolerance']:.2g}) on {f['test_images']} test images")
    if f.get("channels"):
        print("channels: " + ", ".join(f"{n} {a}->{b}" for n, (a, b) in f["channels"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

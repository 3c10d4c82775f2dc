"""Slim export: a model with its all-zero conv filters, and the channels nothing reads,
physically removed, and the same logits.

torch-pruning's DependencyGraph finds every layer that shares a channel (BatchNorms, the next
convs' inputs, DenseNet concatenations, residual additions). A zero filter still passes its
BatchNorm's shift through ReLU, pools and residual additions; that input-independent value is
folded into the layers that read it: into a Linear's bias; into the next BatchNorm's running
mean (1x1 convs) or a bias; for padded 3x3 convs, whose border pixels read less of it than the
interior, into a fixed [C, H, W] map added to the conv's output, or, where that map would
outweigh the layer's weights, a one-channel kernel convolved with ones (so the slim model
expects inputs of the model's input_shape, the data set's, like the training data).
Residual-stream channels go only where every conv writing them is zero (then the stream
carries a constant there). Option-A shortcuts are the one hand-written case (_IndexShortcut
says why). The result is a torch.fx GraphModule of torch.nn layers and generated code only.
"""
import copy
import operator

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsecs.optim.base import probe_shape

from .files import open_export


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
    from sparsecs.models.resnet import BasicBlock, ShortcutA

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
        self.input_shape = probe_shape(model)      # the data set's, from models.get_model
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
        """Remove the output channels of `conv` that are zero filters (or that nothing reads),
        where what they still pass on can be folded into the layers that read them."""
        per_root = self._channel_group(conv)
        if per_root is None:
            return
        ok, dead, seen = self._removable(conv, per_root)
        if ok:
            self._fold(ok, dead, per_root, seen)
            self._remove(conv, ok)

    def _channel_group(self, conv):
        """{output channel of conv: [(role, module, index)]}: each conv, linear or shortcut
        that writes ("out") or reads ("in") that channel; None where the channels reach the
        model's output or a layer with no rule here (then they all stay)."""
        tp = self.tp
        full = self.DG.get_pruning_group(conv, tp.prune_conv_out_channels,
                                         list(range(conv.out_channels)))
        per_root = {}
        for item in full:
            dep, idxs = item
            m, fn = dep.target.module, dep.handler
            if isinstance(m, (nn.Conv2d, nn.Linear, _IndexShortcut)):
                role = ("out" if self.DG.is_out_channel_pruning_fn(fn) else
                        "in" if self.DG.is_in_channel_pruning_fn(fn) else None)
            elif isinstance(m, tp.ops._OutputOp) or not (
                    isinstance(m, nn.BatchNorm2d) or type(m).__module__.startswith("torch_pruning")):
                self.skipped.append((self.name[conv], None, f"group holds {type(m).__name__}"))
                return None
            else:      # BatchNorm, ReLU, pools, concatenation, reshape: they just follow
                continue
            for i, r in zip(idxs, item.root_idxs):
                per_root.setdefault(r, []).append((role, m, int(i)))
        return per_root

    def _removable(self, conv, per_root):
        """(channels to remove, {channel: no layer reads it}, the readers' probed inputs)."""
        n = conv.out_channels
        zero = {r: all(self._row_zero(m, i) for role, m, i in v if role == "out")
                for r, v in per_root.items()}
        dead = {r: any(role == "in" for role, _, _ in v)
                and all(self._slice_zero(m, i) for role, m, i in v if role == "in")
                for r, v in per_root.items()}
        cand = [r for r in range(n) if zero.get(r) or dead.get(r)]
        if not cand:
            return [], dead, {}
        seen = self._probe({m for v in per_root.values() for role, m, _ in v if role == "in"})
        ok = []
        for r in cand:
            # a zero filter's channel must reach every reader as the same value for every input
            if dead[r] or all(torch.allclose(seen[m][:, i], seen[m][:1, i].expand_as(seen[m][:, i]),
                                             rtol=1e-6, atol=1e-7)
                              for role, m, i in per_root[r]
                              if role == "in" and not self._slice_zero(m, i)):
                ok.append(r)
            else:
                self.skipped.append((self.name[conv], r, "value depends on the input"))
        if len(ok) == n:      # a layer keeps at least one channel
            self.skipped.append((self.name[conv], ok[0], "last channel of the layer"))
            ok = ok[1:]
        return ok, dead, seen

    def _fold(self, ok, dead, per_root, seen):
        """Fold what the removed channels `ok` still contribute into the layers that read them."""
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

    def _remove(self, conv, ok):
        group = self.DG.get_pruning_group(conv, self.tp.prune_conv_out_channels, ok)
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
        from sparsecs.models.resnet import BasicBlock, ShortcutA

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
            self._write_map(gm, nodes[name], modules, module, full[torch.tensor(self.kept[module])])
        gm.graph.lint()
        gm.recompile()
        gm.input_shape = tuple(self.input_shape[1:])   # what the model was probed (and folded) at
        return gm.eval()

    def _write_map(self, gm, node, modules, module, m):
        """Make the traced model add `m` ([C, H, W], what removed channels gave `module`'s
        output) there: a bias or running mean where it is one value a channel, else an add node."""
        name = self.name[module]
        sub = modules[name]
        scale = 1e-6 * (1.0 + float(m.abs().max()))
        if float((m - m.mean((1, 2), keepdim=True)).abs().max()) <= scale:
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
            return
        if isinstance(sub, nn.Conv2d) and self.keff.get(module) is not None \
                and m.numel() > sub.weight.numel():
            # A padded conv read constant channels: its border rows and columns got less of
            # them than the interior. Where the [C, H, W] map would outweigh the layer's own
            # weights in the file, add conv(ones, K) with the folded one-channel kernel K
            # instead (three small ops a forward instead of one add).
            k, (h, w) = self.keff[module]
            attr = name.replace(".", "_") + "_fold_kernel"
            gm.register_buffer(attr, k[torch.tensor(self.kept[module])].clone())
            with gm.graph.inserting_after(node):
                ones = gm.graph.call_method("new_ones", (node.args[0], (1, 1, h, w)))
            with gm.graph.inserting_after(ones):
                get = gm.graph.get_attr(attr)
            with gm.graph.inserting_after(get):
                extra = gm.graph.call_function(torch.conv2d, (ones, get, None, sub.stride,
                                                              sub.padding, sub.dilation))
        else:      # add the whole [C, H, W] map (small here, or not from constants)
            attr = name.replace(".", "_") + "_fold"
            gm.register_buffer(attr, m.clone())
            with gm.graph.inserting_after(node):
                extra = gm.graph.get_attr(attr)
        with gm.graph.inserting_after(extra):
            add = gm.graph.call_function(operator.add, (node, extra))
        node.replace_all_uses_with(add, delete_user_cb=lambda u: u is not add)


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
    """A slim export (no repository code needed to run it): a path, checked against its
    recorded sha256 first, or a file object. A pickle: load only files you trust."""
    return open_export(file, weights_only=False).to(device).eval()


def channels(model, slim):
    """{conv: [out channels before, after]} for the convs that lost channels."""
    before = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    after = {n: m.out_channels for n, m in slim.named_modules() if isinstance(m, nn.Conv2d)}
    return {n: [before[n], after[n]] for n in before if n in after and after[n] != before[n]}


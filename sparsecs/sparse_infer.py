"""Sparse CPU inference: every conv and linear layer on the kernel measured fastest for its
shape, sparsity and batch size on this machine, the logits checked against the dense model's.

    python -m sparsecs.sparse_infer RUN_DIR [--batch 1 64] [--threads 1] [--repeats 15] [--data-dir D]
                                   [--csr FILE] [--json FILE]

    net = sparse_infer.build(model, {1: x[:1], 64: x})   # model: an nn.Module of models/
    net(x)                                               # same logits, sparse where it pays
    net.plan                                             # per layer and batch: kernel, times

How: BatchNorms that follow a conv are folded into it (torch.fx's fuse; exact up to float
rounding, and it keeps the zeros where they were), a ReLU that alone reads a conv is fused
into it, and each conv / linear then gets candidates, timed in rotating order on the layer's
own input at each batch size given; a candidate is kept only if its output equals the dense
layer's (RTOL of the output's scale), and replaces dense only when its fastest call takes
under `margin` of dense's (single-layer timings are noisy; load only ever adds time). A batch size not measured runs dense.
Candidates:
  dense       torch's conv / linear (oneDNN / MKL) on the folded weights;
  direct      this repository's direct sparse convolution (csrc/direct_conv.c, compiled on
              first use with the system C compiler, -O3 -march=native, cached under
              ~/.cache/sparse_infer): zeros cost nothing; any stride / padding / groups
              (depthwise), linear as 1x1, bias and ReLU fused;
  sparseprop  sparseprop's AVX2 kernels (optional: see requirements-sparse.txt), both of its
              vectorizations; groups 1, square kernels, stride 1 or 2. Its batch-vectorized
              form gives wrong outputs unless the batch is a multiple of 8 (sparseprop
              0.1.14): the output check rejects it there;
  csr         linear only: torch.sparse.mm with the weight in CSR.
A missing kernel (no sparseprop, no compiler) is said once on stderr, in one line; the
others are measured without it, down to dense alone. The network built is for this machine
and this process (kernels hold native pointers, the plan holds this machine's timings): build
it again from model.pt or a CSR export (export.load_csr) where it is to run, in seconds.
The CLI builds it for a finished run (RUN_DIR, or a csr export of one in its place, e.g. the
committed results/fashion/weights/<run>/model.csr.pt; a committed run folder, whose model.pt
is not in git, is read from that export, checked, and a line says so), checks its logits on the run's test
images like export.py checks its formats, prints the plan, and with --json writes it.
"""
import argparse
import copy
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsecs import sparse_kernels as K

RTOL = 1e-4            # as export.RTOL: |difference| <= RTOL * max(1, max |reference|)


# ----------------------------------------------------------------------------- the network

class SparseLayer(nn.Module):
    """A conv / linear (BatchNorm folded, ReLU maybe fused) running on the kernel chosen for
    the batch size of its input; dense for a batch size not measured."""

    def __init__(self, dense, relu=False):
        super().__init__()
        self.dense, self.relu = dense, relu
        self.choice = {}        # batch size -> kernel name; absent: dense
        self.kernels = {}

    def forward(self, x):
        name = self.choice.get(x.shape[0])
        if name is not None:
            return self.kernels[name](x)
        y = self.dense(x)
        return F.relu(y) if self.relu else y

    def extra_repr(self):
        return f"relu={self.relu}, choice={self.choice}"


_RELU_FNS = (F.relu, torch.relu, torch.relu_)


def _is_relu(node, modules):
    if node.op == "call_function" and node.target in _RELU_FNS:
        return True
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return True
    return node.op == "call_module" and isinstance(modules.get(node.target), nn.ReLU)


def prepare(model):
    """(a copy of `model` with BatchNorms folded into the convs before them and every conv /
    linear a SparseLayer, still all dense; whether folding worked). ReLU is fused into a
    layer whose output only it reads."""
    model = copy.deepcopy(model).cpu().float().eval()
    try:
        from torch.fx.experimental.optimization import fuse
        gm = fuse(model)
        folded = True
    except Exception:          # not traceable by torch.fx: layer by layer, nothing folded
        gm, folded = model, False
    if folded:
        modules = dict(gm.named_modules())
        for node in list(gm.graph.nodes):
            m = modules.get(node.target) if node.op == "call_module" else None
            if not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            users = list(node.users)
            relu = (len(users) == 1 and _is_relu(users[0], modules)
                    and users[0].args[:1] == (node,))
            _set(gm, node.target, SparseLayer(m, relu))
            if relu:
                users[0].replace_all_uses_with(node)
                gm.graph.erase_node(users[0])
        gm.graph.lint()
        gm.recompile()
    else:
        for name, m in list(gm.named_modules()):
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                _set(gm, name, SparseLayer(m))
    if hasattr(model, "input_shape"):
        gm.input_shape = model.input_shape
    return gm.eval(), folded


def _set(root, name, module):
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def timed(fns, repeats, warmup=2):
    """{name: list of seconds} of each fn(), called in rotating order (none always first)."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    keys, times = list(fns), {k: [] for k in fns}
    for i in range(repeats):
        for k in keys[i % len(keys):] + keys[:i % len(keys)]:
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return times


@torch.no_grad()
def build(model, inputs, kernels=K.KERNELS, repeats=15, margin=0.9):
    """`model` with each conv / linear on its fastest kernel, measured at each batch size of
    `inputs` ({batch: tensor} or a list of tensors, in the model's input shape). The result
    has `plan`: a list of dicts, one per layer and batch (layer, kernel, ms per candidate,
    sparsity, shape), and `folded` (whether BatchNorms were folded)."""
    if isinstance(inputs, torch.Tensor):
        inputs = [inputs]
    if not isinstance(inputs, dict):
        inputs = {int(x.shape[0]): x for x in inputs}
    net, folded = prepare(model)
    layers = [(n, m) for n, m in net.named_modules() if isinstance(m, SparseLayer)]
    per_batch = _layer_inputs(net, layers, inputs)
    plan = []
    for name, layer in layers:
        cands = K.candidates(layer.dense, layer.relu, kernels)
        for b, seen_b in per_batch.items():
            if name in seen_b:
                plan.append(_choose(name, layer, cands, b, seen_b[name], repeats, margin))
    for _, layer in layers:       # drop what no batch chose (sparseprop's copies of weights)
        layer.kernels = {k: f for k, f in layer.kernels.items() if k in layer.choice.values()}
    net.plan, net.folded = plan, folded
    return net


def _layer_inputs(net, layers, inputs):
    """{batch: {layer name: its input}} from one dense pass of `net` at each batch size."""
    seen = {}
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: seen.__setitem__(n, a[0]))
             for n, m in layers]
    try:
        per_batch = {}
        for b, x in inputs.items():
            seen.clear()
            net(x.float())
            per_batch[b] = dict(seen)
    finally:
        for h in hooks:
            h.remove()
    return per_batch


def _correct(cands, xi, ref, tol):
    """({name: kernel} whose output on `xi` equals `ref` within `tol`, [names of the others])."""
    ok, wrong = {}, []
    for k, f in cands.items():
        try:
            y = f(xi)
        except Exception:         # a kernel's own limits (shapes it does not handle)
            wrong.append(k)
            continue
        if y.shape == ref.shape and float((y - ref).abs().max()) <= tol:
            ok[k] = f
        else:
            wrong.append(k)
    return ok, wrong


def _choose(name, layer, cands, b, xi, repeats, margin):
    """Time the correct candidates against dense on the layer's input `xi` (batch `b`), set
    the layer's choice for `b` when one wins by `margin`, and return the plan row."""
    w = layer.dense.weight
    ref = layer(xi)               # dense: no choice made yet
    ok, wrong = _correct(cands, xi, ref, RTOL * max(1.0, float(ref.abs().max())))
    times = timed({"dense": lambda: layer(xi), **{k: (lambda f=f: f(xi)) for k, f in ok.items()}},
                  repeats)
    med = {k: min(v) for k, v in times.items()}    # min: other processes only add time
    best = min(ok, key=med.get, default=None)
    chosen = best if best is not None and med[best] < margin * med["dense"] else "dense"
    if chosen != "dense":
        layer.choice[b] = chosen
        layer.kernels[chosen] = cands[chosen]
    return {"layer": name, "batch": b, "kernel": chosen,
            "ms": {k: v * 1e3 for k, v in med.items()}, "wrong": wrong,
            "sparsity": float((w == 0).float().mean()), "shape": list(w.shape),
            "input": list(xi.shape), "relu": layer.relu}


@torch.no_grad()
def check(reference, net, x):
    """(max |logit difference|, tolerance) of `net` against `reference` on `x`."""
    a, b = reference(x), net(x)
    return float((a - b).abs().max()), RTOL * max(1.0, float(a.abs().max()))


def summary(plan):
    """{batch: 'k of n layers sparse (kernel counts)'}."""
    out = {}
    for b in sorted({p["batch"] for p in plan}):
        rows = [p for p in plan if p["batch"] == b]
        counts = {}
        for p in rows:
            counts[p["kernel"]] = counts.get(p["kernel"], 0) + 1
        sparse = sum(v for k, v in counts.items() if k != "dense")
        out[b] = f"{sparse}/{len(rows)} layers sparse (" + ", ".join(
            f"{k} {v}" for k, v in sorted(counts.items())) + ")"
    return out


# ----------------------------------------------------------------------------- CLI

def _load(run_dir, csr):
    from sparsecs.exporting import csr as exp_csr, files as exp_files
    from sparsecs import modelfile

    if not os.path.exists(run_dir):        # a usage error, exit 2 as train.py's missing config
        raise exp_files.ExportError(f"{run_dir}: no such run folder or export file", 2)
    if exp_csr.is_csr_export(run_dir):      # a committed export stands in for the run folder
        saved, model = exp_csr.load_any(run_dir)
        return model, saved
    committed = exp_csr.load_committed(run_dir, say=lambda line: print(f"sparse_infer.py: {line}", file=sys.stderr))
    if committed is not None:              # a committed run folder: its committed export
        return (exp_csr.load_csr(csr) if csr else committed[1]), committed[0]
    exp_files.finished_run(run_dir)
    saved = modelfile.load_model_file(run_dir)
    model = exp_csr.load_csr(csr) if csr else modelfile.load_model(run_dir)
    return model, saved


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a finished run folder, or a csr export of one")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64], help="batch sizes to measure")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15, help="timed calls per layer and kernel")
    p.add_argument("--csr", help="build from this CSR export (export.py --format csr) instead of model.pt")
    p.add_argument("--data-dir", help="where the data set lives (default: the run's data_dir)")
    p.add_argument("--json", help="write the plan and the check here")
    args = p.parse_args(argv)
    if any(b < 1 for b in args.batch) or args.threads < 1 or args.repeats < 1:
        p.exit(2, "sparse_infer.py: error: --batch, --threads and --repeats must be >= 1\n")
    from sparsecs import data as D
    from sparsecs.exporting import files as exp_files
    from sparsecs import fileio
    from sparsecs import paths

    torch.set_num_threads(args.threads)
    try:
        model, saved = _load(args.run_dir, args.csr)
        data_dir = args.data_dir or exp_files.run_data_dir(args.run_dir)
        x = exp_files.real_batch(saved["dataset"], max(args.batch), data_dir)
    except (exp_files.ExportError, paths.RunFolderError, D.DataError, OSError) as e:
        print(f"sparse_infer.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        return getattr(e, "code", 1) if isinstance(e, exp_files.ExportError) else 1
    net = build(model, {b: x[:b] for b in args.batch}, repeats=args.repeats)
    diff, tol = check(model, net, x)
    for b in args.batch:      # every measured plan, not only the largest batch's
        d, t = check(model, net, x[:b])
        diff, tol = max(diff, d), min(tol, t)
    for row in net.plan:
        ms = "  ".join(f"{k} {v:.3f}" for k, v in row["ms"].items())
        wrong = f"  (wrong output: {', '.join(row['wrong'])})" if row["wrong"] else ""
        print(f"b{row['batch']:<4} {row['layer']:28} {row['sparsity']:6.1%}  -> {row['kernel']:13} ms: {ms}{wrong}")
    for b, s in summary(net.plan).items():
        print(f"batch {b}: {s}")
    print(f"BatchNorm folded: {net.folded}; max |logit difference| {diff:.2g} (tolerance {tol:.2g}) "
          f"on {x.shape[0]} test images")
    if args.json:
        where = os.path.abspath(args.run_dir)     # a file (an export) is named after its folder
        try:   # a full disk, a read-only folder: one line naming the file (fileio.WriteError)
            fileio.save_json({"run": os.path.basename(where if os.path.isdir(where) else os.path.dirname(where)),
                            "threads": args.threads, "folded": net.folded, "max_logit_diff": diff,
                            "tolerance": tol, "plan": net.plan}, args.json)
        except OSError as e:
            print(f"sparse_infer.py: error: {fileio.os_error_text(e)}", file=sys.stderr)
            return 1
    if not diff <= tol:
        print(f"sparse_infer.py: error: sparse network changed the logits: {diff:.3g} > {tol:.3g}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU inference of a trained sparse model: dense against slim against sparse kernels, side by side.

    python benchmarks/bench_inference.py RUN_DIR [RUN_DIR ...] [--threads 1] [--repeats 50]
                                         [--batch 64] [--batch-repeats 10] [--warmup 5]

For each finished run folder, in one process:
  dense        the trained model as it is (zeros multiplied like any weight);
  slim         export.slim_model: filters that are all zero physically removed (what
               `export.py --format slim` writes);
  sparse       every conv as im2col (F.unfold) + torch.sparse.mm with the weight in CSR, every
               linear as CSR matmul; per layer, CSR is kept only where it was faster (by 10%)
               than the dense layer on that layer's own input at that batch size, so this
               column is the best the sparse kernels give here, not a strawman;
  slim+sparse  the same kernels applied to the slim model;
  all-csr      every conv and linear on CSR, whether it pays or not.
Latency at batch 1 (median over --repeats, after --warmup untimed calls) and throughput at
--batch (images/s from the median of --batch-repeats), the variants called in rotating
order so that none always runs first; the ratios against dense; the theoretical speed-up
flops_dense / flops_nonzero of metrics.counts (multiply-adds with nonzero weights). Each
variant's logits are checked against dense first. Results go to RUN_DIR/inference.json.
Not a test: it prints a table. Threads default to 1 (--threads to change); the machine's
load average is printed and recorded, since other processes skew CPU timings.
"""
import argparse
import copy
import datetime
import os
import statistics
import sys
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import export  # noqa: E402
import metrics  # noqa: E402
import runs  # noqa: E402

INFERENCE_JSON = "inference.json"
warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")


class CSRConv2d(nn.Module):
    """A conv as im2col + CSR matmul: out[o, l] = sum over nonzero W[o, j] of cols[j, l]."""

    def __init__(self, conv):
        super().__init__()
        assert conv.groups == 1
        w = conv.weight.detach()
        self.out_channels = w.shape[0]
        self.weight_csr = w.reshape(w.shape[0], -1).to_sparse_csr()
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        self.pointwise = (conv.kernel_size == (1, 1) and conv.stride == (1, 1)
                          and conv.padding == (0, 0))

    def forward(self, x):
        b, _, h, w = x.shape
        kh, kw = self.kernel_size
        ho = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        cols = x.flatten(2) if self.pointwise else F.unfold(x, self.kernel_size, self.dilation,
                                                             self.padding, self.stride)
        if b == 1:
            y = torch.sparse.mm(self.weight_csr, cols[0]).view(1, -1, ho, wo)
        else:   # image by image: faster here than one matmul over a transposed [C*k*k, B*L] copy
            y = torch.stack([torch.sparse.mm(self.weight_csr, c) for c in cols]).view(b, -1, ho, wo)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


class CSRLinear(nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.weight_csr = lin.weight.detach().to_sparse_csr()
        self.bias = None if lin.bias is None else lin.bias.detach()

    def forward(self, x):
        y = torch.sparse.mm(self.weight_csr, x.t()).t()
        return y if self.bias is None else y + self.bias


def _set(model, name, module):
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def median_seconds(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


@torch.no_grad()
def sparse_kernels(model, x, mode="auto", repeats=15, margin=0.9):
    """A copy of `model` with conv / linear layers on CSR kernels: all of them (`mode="all"`),
    or (`"auto"`) those where CSR took under `margin` times the dense layer's time on that
    layer's input `x` (a margin, as single-layer timings are noisy).
    Returns (model, layers on CSR, conv/linear layers)."""
    model = copy.deepcopy(model).eval()
    inputs = {}
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    hooks = [m.register_forward_pre_hook(lambda m, i, n=n: inputs.__setitem__(n, i[0]))
             for n, m in layers]
    model(x)
    for h in hooks:
        h.remove()
    chosen = 0
    for name, m in layers:
        if name not in inputs:
            continue
        s = CSRConv2d(m) if isinstance(m, nn.Conv2d) else CSRLinear(m)
        if mode == "auto":
            xi = inputs[name]
            td = median_seconds(lambda: m(xi), repeats)
            ts = median_seconds(lambda: s(xi), repeats)
            if ts >= margin * td:
                continue
        _set(model, name, s)
        chosen += 1
    return model, chosen, len(layers)


def interleaved(fns, repeats, warmup):
    """Median seconds of each fn, called in rotating order."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    keys, times = list(fns), {k: [] for k in fns}
    for i in range(repeats):
        for k in keys[i % len(keys):] + keys[:i % len(keys)]:
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


@torch.no_grad()
def bench_run(run_dir, args):
    dense = runs.load_model(run_dir)
    saved = runs.load_model_file(run_dir)
    g = torch.Generator().manual_seed(0)
    try:   # real test images when the data set is here; random ones otherwise (same cost)
        xb = export.real_batch(saved["dataset"], args.batch, export.run_data_dir(run_dir))
    except Exception:
        xb = torch.randn(args.batch, *dense.input_shape, generator=g)
    x1 = xb[:1].contiguous()
    counts = metrics.counts(dense)
    slim = export.slim_model(dense)
    variants = {"dense": dense, "slim": slim}
    csr = {}
    for bs, x in (("b1", x1), ("batch", xb)):
        sp, n_sp, n = sparse_kernels(dense, x)
        ssp, n_ssp, _ = sparse_kernels(slim, x)
        allsp, _, _ = sparse_kernels(dense, x, mode="all")
        csr[bs] = {"sparse": sp, "slim+sparse": ssp, "all-csr": allsp,
                   "layers": {"sparse": f"{n_sp}/{n}", "slim+sparse": f"{n_ssp}/{n}"}}
    ref = dense(xb)
    scale = max(1.0, float(ref.abs().max()))
    diffs = {"slim": float((slim(xb) - ref).abs().max())}
    for k in ("sparse", "slim+sparse", "all-csr"):
        diffs[k] = float((csr["batch"][k](xb) - ref).abs().max())
    bad = {k: d for k, d in diffs.items() if d > 1e-4 * scale}
    if bad:
        raise SystemExit(f"bench_inference: {run_dir}: logits differ from dense: {bad}")

    def timed(x, models, repeats, warmup):
        return interleaved({k: (lambda m=m: m(x)) for k, m in models.items()}, repeats, warmup)

    b1 = timed(x1, {**variants, **{k: csr["b1"][k] for k in ("sparse", "slim+sparse", "all-csr")}},
               args.repeats, args.warmup)
    bb = timed(xb, {**variants, **{k: csr["batch"][k] for k in ("sparse", "slim+sparse", "all-csr")}},
               args.batch_repeats, max(1, args.warmup // 2))
    slim_counts = metrics.counts(slim)
    result = {
        "run": os.path.basename(os.path.normpath(run_dir)), "model": saved["model"],
        "threads": torch.get_num_threads(), "batch": args.batch,
        "repeats": args.repeats, "batch_repeats": args.batch_repeats,
        "flops_dense": counts["flops_dense"], "flops_nonzero": counts["flops_nonzero"],
        "flops_slim": slim_counts["flops_dense"], "sparsity": counts["sparsity"],
        "theoretical_speedup": counts["flops_dense"] / max(counts["flops_nonzero"], 1),
        "slim_mac_ratio": counts["flops_dense"] / max(slim_counts["flops_dense"], 1),
        "latency_b1_ms": {k: v * 1e3 for k, v in b1.items()},
        "throughput_images_per_s": {k: args.batch / v for k, v in bb.items()},
        "speedup_b1": {k: b1["dense"] / v for k, v in b1.items() if k != "dense"},
        "speedup_batch": {k: bb["dense"] / v for k, v in bb.items() if k != "dense"},
        "csr_layers_b1": csr["b1"]["layers"], "csr_layers_batch": csr["batch"]["layers"],
        "max_logit_diff": diffs, "load_average": os.getloadavg()[0],
        "device_name": runs.environment()["device_name"], "torch": torch.__version__,
        "measured_at": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    runs.save_json(result, os.path.join(run_dir, INFERENCE_JSON))
    return result


def print_result(r):
    print(f"\n{r['run']}  ({r['model']}, sparsity {r['sparsity']:.3f}, {r['threads']} thread(s), "
          f"load average {r['load_average']:.2f})")
    print(f"theoretical speed-up (nonzero MACs) {r['theoretical_speedup']:.2f}x; "
          f"slim keeps {1 / r['slim_mac_ratio']:.1%} of the MACs ({r['slim_mac_ratio']:.2f}x fewer)")
    batch = f"batch {r['batch']} img/s"
    print(f"{'':12} {'batch 1 ms':>11} {'ratio':>7}   {batch:>14} {'ratio':>7}")
    for k in r["latency_b1_ms"]:
        s1 = r["speedup_b1"].get(k, 1.0)
        sb = r["speedup_batch"].get(k, 1.0)
        print(f"{k:12} {r['latency_b1_ms'][k]:11.3f} {s1:6.2f}x   "
              f"{r['throughput_images_per_s'][k]:14.1f} {sb:6.2f}x")
    print(f"layers on CSR kernels (auto): batch 1 {r['csr_layers_b1']}, batch {r['batch']} "
          f"{r['csr_layers_batch']}; max |logit diff| vs dense "
          + ", ".join(f"{k} {v:.1g}" for k, v in r["max_logit_diff"].items()))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=50, help="timed batch-1 calls per variant")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batch-repeats", type=int, default=10, help="timed batch calls per variant")
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for run_dir in args.run_dirs:
        try:
            export.finished_run(run_dir)
        except export.ExportError as e:
            print(f"bench_inference: {e}", file=sys.stderr)
            return 1
        print_result(bench_run(run_dir, args))
        print(f"-> {os.path.join(run_dir, INFERENCE_JSON)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

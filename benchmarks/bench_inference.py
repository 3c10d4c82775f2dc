"""CPU inference of a trained sparse model: dense against slim against sparse kernels, side by side.

    python -m benchmarks.bench_inference RUN_DIR [RUN_DIR ...] [--threads 1] [--repeats 50]
        [--batch 64] [--batch-repeats 10] [--warmup 5] [--layer-repeats 15]
        [--out-dir DIR] [--csv FILE]

RUN_DIR is a finished run folder or a csr export of one (export.py --format csr, e.g. the
committed results/fashion/weights/<run>/model.csr.pt: the dense model rebuilt bit for bit,
named after the folder that holds it), or a slim export (export.py --format slim or --profile:
RESULTS/<profile>/weights/<run>/model.slim.pt, timed as written; its run's dense model must be
here: the run folder with model.pt, or a model.csr.pt beside it). For each, in one process:
  dense        the trained model as it is (zeros multiplied like any weight);
  folded       BatchNorm folded into the convs, ReLU fused, every layer on torch's dense
               kernels: what the sparse column gains without any sparse kernel;
  slim         export.slim_model: filters that are all zero physically removed (what
               `export.py --format slim` writes);
  sparse       sparse_infer.build: folded, then every conv / linear on the kernel measured
               fastest for it at that batch size (dense, the repository's direct sparse
               convolution, sparseprop when installed); see sparse_infer.py;
  slim+sparse  the same applied to the slim model.
Latency at batch 1 over --repeats calls and throughput at --batch over --batch-repeats calls
(at least 5 each), after --warmup untimed calls; the variants are called in rotating order
within each round, so a round's ratio dense / variant compares calls made moments apart.
Printed: the median with its interquartile range [q1, q3], and the speed-up (median of the
per-round ratios, with their IQR). The theoretical speed-up flops_dense / flops_nonzero of
metrics.counts (multiply-adds with nonzero weights) heads each table. Each variant's logits are
checked against dense first. Results go to RUN_DIR/inference.json (or DIR/<run>/inference.json
with --out-dir), and one CSV row per run, variant and batch to --csv (appended; what
benchmarks/speedup_figure.py draws). Threads default to 1; the machine's load average is
printed and recorded, since other processes skew CPU timings.
"""
import argparse
import csv
import datetime
import os
import statistics
import sys
import warnings

import torch

import export
from sparsecs import fileio
from sparsecs import hardware
from sparsecs import metrics
from sparsecs import sparse_infer
from sparsecs import sparse_kernels

INFERENCE_JSON = "inference.json"
VARIANTS = ("dense", "folded", "slim", "sparse", "slim+sparse")
CSV_FIELDS = ("run", "model", "sparsity", "mac_ratio", "threads", "batch", "variant",
              "median_ms", "q1_ms", "q3_ms", "min_ms", "max_ms", "repeats",
              "speedup", "speedup_q1", "speedup_q3", "load_average", "measured_at")
warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")


def spread(xs):
    """{median, q1, q3, min, max} of a list (quartiles: statistics.quantiles, inclusive)."""
    q1, med, q3 = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else (xs[0],) * 3
    return {"median": med, "q1": q1, "q3": q3, "min": min(xs), "max": max(xs)}


def speedups(times):
    """{variant: spread of dense_i / variant_i over the rounds i}."""
    return {k: spread([d / v for d, v in zip(times["dense"], vs)])
            for k, vs in times.items() if k != "dense"}


def run_name(path):
    """The run a folder or a file in it (a csr export, a model.pt) stands for: the folder's name."""
    path = os.path.abspath(path)
    return os.path.basename(path if os.path.isdir(path) else os.path.dirname(path))


def sources(path):
    """(the dense model's source: a run folder or a csr export, the slim export file or None)
    of RUN_DIR `path`; a slim export (export.py --format slim, --profile) needs its run's
    dense model here too (export.slim_source), else ExportError, one line."""
    if not export.is_slim_export(path):
        if not export.is_csr_export(path):
            export.finished_run(path)
        return path, None
    problem = export.export_problem(path)     # before the pickle is read
    if problem:
        raise export.ExportError(f"{problem}; export the run again")
    dense = export.slim_source(path)
    if dense is None:
        raise export.ExportError(f"{path}: no dense model of its run here to measure it against (its run "
                                 f"folder with model.pt, or a model.csr.pt beside it)")
    return dense, path


def variants(dense, slim, inputs, layer_repeats):
    """{variant: model} of VARIANTS."""
    return {"dense": dense,
            "folded": sparse_infer.build(dense, inputs, kernels=("dense",), repeats=1),
            "slim": slim,
            "sparse": sparse_infer.build(dense, inputs, repeats=layer_repeats),
            "slim+sparse": sparse_infer.build(slim, inputs, repeats=layer_repeats)}


@torch.no_grad()
def bench_run(run_dir, args):
    source, slim_file = sources(run_dir)
    saved, dense = export.load_any(source)
    data_of = source if os.path.isdir(source) else os.path.dirname(os.path.abspath(source))
    try:   # real test images when the data set is here; random ones otherwise (same cost)
        xb = export.real_batch(saved["dataset"], args.batch, args.data_dir or export.run_data_dir(data_of))
    except Exception:
        xb = torch.randn(args.batch, *dense.input_shape, generator=torch.Generator().manual_seed(0))
    x1 = xb[:1].contiguous()
    inputs = {1: x1, args.batch: xb}
    counts = metrics.counts(dense)
    # a committed slim export is timed as written (checked against dense below); else made here
    slim = export.load_slim(slim_file) if slim_file else export.slim_model(dense)
    nets = variants(dense, slim, inputs, args.layer_repeats)
    ref = dense(xb)
    diffs = {k: max(sparse_infer.check(dense, m, xb)[0], sparse_infer.check(dense, m, x1)[0])
             for k, m in nets.items() if k != "dense"}
    scale = max(1.0, float(ref.abs().max()))
    bad = {k: d for k, d in diffs.items() if d > export.RTOL * scale}
    if bad:
        raise SystemExit(f"bench_inference: {run_dir}: logits differ from dense: {bad}")

    def timed(x, repeats, warmup):
        return sparse_infer.timed({k: (lambda m=m: m(x)) for k, m in nets.items()}, repeats, warmup)

    t1 = timed(x1, args.repeats, args.warmup)
    tb = timed(xb, args.batch_repeats, max(1, args.warmup // 2))
    s1, sb = speedups(t1), speedups(tb)
    # graph_macs, not counts: a slim export's folded one-channel convs are functional calls that
    # module hooks miss; this is the count export.json records as macs_slim
    flops_slim = metrics.graph_macs(slim)
    result = {
        "run": run_name(run_dir), "model": saved["model"],
        "threads": torch.get_num_threads(), "batch": args.batch,
        "repeats": args.repeats, "batch_repeats": args.batch_repeats,
        "flops_dense": counts["flops_dense"], "flops_nonzero": counts["flops_nonzero"],
        "flops_slim": flops_slim, "slim_file": slim_file, "sparsity": counts["sparsity"],
        "theoretical_speedup": counts["flops_dense"] / max(counts["flops_nonzero"], 1),
        "slim_mac_ratio": counts["flops_dense"] / max(flops_slim, 1),
        "latency_b1_ms": {k: statistics.median(v) * 1e3 for k, v in t1.items()},
        "throughput_images_per_s": {k: args.batch / statistics.median(v) for k, v in tb.items()},
        "speedup_b1": {k: v["median"] for k, v in s1.items()},
        "speedup_batch": {k: v["median"] for k, v in sb.items()},
        "spread_b1_ms": {k: {q: x * 1e3 for q, x in spread(v).items()} for k, v in t1.items()},
        "spread_batch_ms": {k: {q: x * 1e3 for q, x in spread(v).items()} for k, v in tb.items()},
        "speedup_b1_spread": s1, "speedup_batch_spread": sb,
        "sparse_layers": {k: {str(b): s for b, s in sparse_infer.summary(nets[k].plan).items()}
                          for k in ("sparse", "slim+sparse")},
        "kernels": sparse_kernels.available(),
        "max_logit_diff": diffs, "load_average": os.getloadavg()[0],
        "device_name": hardware.environment()["device_name"], "torch": torch.__version__,
        "measured_at": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    out_dir = (os.path.join(args.out_dir, result["run"]) if args.out_dir
               else run_dir if os.path.isdir(run_dir) else os.path.dirname(os.path.abspath(run_dir)))
    os.makedirs(out_dir, exist_ok=True)
    result["file"] = os.path.join(out_dir, INFERENCE_JSON)
    fileio.save_json(result, result["file"])
    if args.csv:
        write_csv(result, args.csv)
    return result


def csv_rows(r):
    for batch, key, skey in ((1, "spread_b1_ms", "speedup_b1_spread"),
                             (r["batch"], "spread_batch_ms", "speedup_batch_spread")):
        for k, s in r[key].items():
            sp = r[skey].get(k, {"median": 1.0, "q1": 1.0, "q3": 1.0})
            yield {"run": r["run"], "model": r["model"], "sparsity": r["sparsity"],
                   "mac_ratio": r["theoretical_speedup"], "threads": r["threads"], "batch": batch,
                   "variant": k, "median_ms": s["median"], "q1_ms": s["q1"], "q3_ms": s["q3"],
                   "min_ms": s["min"], "max_ms": s["max"],
                   "repeats": r["repeats"] if batch == 1 else r["batch_repeats"],
                   "speedup": sp["median"], "speedup_q1": sp["q1"], "speedup_q3": sp["q3"],
                   "load_average": r["load_average"], "measured_at": r["measured_at"]}


def write_csv(r, path):
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            w.writeheader()
        w.writerows(csv_rows(r))


def print_result(r):
    print(f"\n{r['run']}  ({r['model']}, sparsity {r['sparsity']:.3f}, {r['threads']} thread(s), "
          f"load average {r['load_average']:.2f})")
    print(f"theoretical speed-up (nonzero MACs) {r['theoretical_speedup']:.2f}x; "
          f"slim keeps {1 / r['slim_mac_ratio']:.1%} of the MACs ({r['slim_mac_ratio']:.2f}x fewer)")
    print(f"batch 1: {r['repeats']} rounds, batch {r['batch']}: {r['batch_repeats']} rounds; "
          f"median [q1, q3]")
    print(f"{'':12} {'batch 1 ms':>22} {'speed-up':>20}   {'batch ' + str(r['batch']) + ' img/s':>24} "
          f"{'speed-up':>20}")
    one = {"median": 1.0, "q1": 1.0, "q3": 1.0}
    for k in r["spread_b1_ms"]:
        a, sa = r["spread_b1_ms"][k], r["speedup_b1_spread"].get(k, one)
        b, sb = r["spread_batch_ms"][k], r["speedup_batch_spread"].get(k, one)
        ips = lambda ms: r["batch"] / ms * 1e3  # noqa: E731
        print(f"{k:12} {a['median']:8.3f} [{a['q1']:6.3f},{a['q3']:6.3f}] "
              f"{sa['median']:7.2f}x [{sa['q1']:4.2f},{sa['q3']:4.2f}]   "
              f"{ips(b['median']):8.0f} [{ips(b['q3']):6.0f},{ips(b['q1']):6.0f}] "
              f"{sb['median']:7.2f}x [{sb['q1']:4.2f},{sb['q3']:4.2f}]")
    print("sparse layers: " + "; ".join(f"{k}: " + ", ".join(f"batch {b} {s}" for b, s in v.items())
                                        for k, v in r["sparse_layers"].items()))
    print("max |logit diff| vs dense " + ", ".join(f"{k} {v:.1g}" for k, v in r["max_logit_diff"].items()))


def _at_least(lo):
    def parse(text):
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if n < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {n}")
        return n
    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message):      # one line, not usage + message
        self.exit(2, f"bench_inference.py: error: {message}\n")


def main(argv=None):
    p = _Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="a finished run folder or a csr export (model.csr.pt) of one")
    p.add_argument("--threads", type=_at_least(1), default=1)
    p.add_argument("--repeats", type=_at_least(5), default=50, help="timed batch-1 rounds (>= 5)")
    p.add_argument("--batch", type=_at_least(2), default=64)
    p.add_argument("--batch-repeats", type=_at_least(5), default=10, help="timed batch rounds (>= 5)")
    p.add_argument("--warmup", type=_at_least(1), default=5)
    p.add_argument("--layer-repeats", type=_at_least(1), default=15,
                   help="timed calls per layer and kernel when choosing kernels")
    p.add_argument("--data-dir", help="where the data set lives (default: each run's data_dir)")
    p.add_argument("--out-dir", help="write DIR/<run>/inference.json, not into the run folder")
    p.add_argument("--csv", help="append one row per run, variant and batch to this CSV")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for run_dir in args.run_dirs:
        try:
            sources(run_dir)
        except export.ExportError as e:
            print(f"bench_inference: {e}", file=sys.stderr)
            return 1
        r = bench_run(run_dir, args)
        print_result(r)
        print(f"-> {r['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a small-scale (CPU) run's time goes, and which settings pay on this machine.

    python -m benchmarks.bench_profile [--model resnet20] [--width 1.0] [--method xrda]
                                       [--steps 12] [--batch 128]

Prints, side by side in one process: process start (imports), data loading, and per
training step the data batch, forward, backward and method.step() times; evaluation of the
test set; then the step time with channels_last on/off and torch.compile of the forward,
and threads per run (1 vs all cores) measured by running two 1-thread processes at once
against one process with all threads. Numbers are medians over `--steps` steps after a
warm-up. A benchmark, not a test: it prints ratios, nothing asserts.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

T_START = time.perf_counter()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sparsecs import config as C  # noqa: E402
from sparsecs import data as D  # noqa: E402
from sparsecs import metrics  # noqa: E402
from sparsecs import models  # noqa: E402
from sparsecs.optim import get_method  # noqa: E402

T_IMPORT = time.perf_counter() - T_START


def phases(cfg, data, steps, channels_last, compile_fwd=False):
    model = models.get_model(cfg["model"], num_classes=data.num_classes, width=cfg["width"],
                             input_shape=data.input_shape)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    method = get_method(cfg["method"])(model, cfg["optim"], data.steps_per_epoch(cfg["batch_size"]), 10)
    fwd = torch.compile(model) if compile_fwd else model
    t = {"data": [], "forward": [], "backward": [], "step": []}
    it = iter(())
    epoch = 0
    for i in range(steps + 3):
        t0 = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:
            it = data.train_batches(cfg["batch_size"], 0, epoch, crop_padding=cfg["crop_padding"],
                                    flip=cfg["flip"], channels_last=channels_last)
            epoch += 1
            x, y = next(it)
        t1 = time.perf_counter()
        method.zero_grad()
        loss = F.cross_entropy(fwd(x), y)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        method.step()
        t4 = time.perf_counter()
        if i >= 3:  # warm-up (and compilation) excluded
            for k, v in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                t[k].append(v)
    model.eval()
    t0 = time.perf_counter()
    metrics.evaluate(model, data.test_batches(500, channels_last=channels_last))
    ev = time.perf_counter() - t0
    return {k: statistics.median(v) for k, v in t.items()}, ev


def epoch_seconds_in_parallel(args, jobs, threads):
    """Wall time of `jobs` processes at once, each timing one epoch with `threads` threads."""
    code = ("import time,torch;import benchmarks.bench_profile as b;"
            f"torch.set_num_threads({threads});"
            f"cfg=b.C.build(None,['model={args.model}','width={args.width}','method={args.method}',"
            f"'batch_size={args.batch}']);d=b.D.load('digits');t=time.perf_counter();"
            f"b.phases(cfg,d,{args.steps},True);print(time.perf_counter()-t)")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # where benchmarks.* imports
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=repo, env=env, stdout=subprocess.PIPE)
             for _ in range(jobs)]
    for p in procs:
        p.communicate()
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--method", default="xrda")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--no-parallel", action="store_true", help="skip the threads-vs-processes part")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = C.build(None, [f"model={args.model}", f"width={args.width}", f"method={args.method}",
                         f"batch_size={args.batch}"])
    t0 = time.perf_counter()
    data = D.load("digits")
    t_data = time.perf_counter() - t0
    steps_per_epoch = data.steps_per_epoch(args.batch)
    print(f"{args.model} w{args.width:g} {args.method}, batch {args.batch}, digits "
          f"({steps_per_epoch} steps an epoch), 1 thread")
    print(f"process start: imports {T_IMPORT:.2f}s, data load {t_data:.2f}s")
    base, ev = phases(cfg, data, args.steps, channels_last=True)
    step = sum(base.values())
    print("per step (channels_last):  " + "  ".join(f"{k} {1e3 * v:.0f}ms ({100 * v / step:.0f}%)"
                                                     for k, v in base.items()))
    print(f"one epoch ≈ {steps_per_epoch * step:.1f}s training + {ev:.2f}s evaluation")
    plain, _ = phases(cfg, data, args.steps, channels_last=False)
    print(f"channels_last off: step {1e3 * sum(plain.values()):.0f}ms vs on {1e3 * step:.0f}ms "
          f"(on is {sum(plain.values()) / step:.2f}x faster)")
    try:
        comp, _ = phases(cfg, data, args.steps, channels_last=True, compile_fwd=True)
        print(f"torch.compile forward: step {1e3 * sum(comp.values()):.0f}ms "
              f"({step / sum(comp.values()):.2f}x of eager; compile time excluded)")
    except Exception as e:  # no compiler toolchain: say so
        print(f"torch.compile forward: unavailable here ({type(e).__name__})")
    if not args.no_parallel:
        cores = os.cpu_count() or 1
        par = epoch_seconds_in_parallel(args, cores, 1)
        seq = epoch_seconds_in_parallel(args, 1, cores)
        print(f"{cores} runs x 1 thread at once: {par:.1f}s for {cores} runs; 1 run x {cores} threads: "
              f"{seq:.1f}s for 1 run -> {cores * seq / par:.2f}x more runs per hour with 1 thread each")


if __name__ == "__main__":
    main()

"""CPU training speed: images/s of each setting side by side, and one epoch by part.

    python -m benchmarks.bench_cpu [--models resnet20:0.5 vgg16:0.25] [--method xrda]
                                   [--settings fp32 fp32+cl bf16 bf16+cl] [--repeats 7]
                                   [--steps 8] [--threads 1] [--compile] [--allocator kept]
                                   [--epoch] [--old fp32+cl:default] [--new bf16+cl:kept]
                                   [--concurrent 2] [--out FILE.csv]

Steps: for each model, one training step of train.py (zero_grad, forward under the run's
autocast, cross-entropy, backward, method.step()) at batch 128 on a 28x28 one-channel batch
(Fashion-MNIST's shape), in one process, `--threads` threads. The settings are interleaved
(setting A, B, C, ..., then again) for `--repeats` rounds of `--steps` timed steps each, so a
load that comes and goes (another run on the other core) touches every setting alike. Prints
per setting the median images/s over the rounds, its min-max, and the ratio of medians to the
first setting (the `fashion` profile's: fp32 + channels_last). `--compile` adds the best
eager setting with torch.compile of the forward (and so backward) pass; its compile time is
printed beside it, to be counted over a run.

`--allocator kept` keeps freed memory in the process (hardware.keep_freed_memory, what train.py
does on the CPU); `default` leaves glibc's malloc as it is (train.py before). It applies to
the whole process, so compare allocators in separate invocations.

--epoch: one full epoch of the `fashion` profile's run (Fashion-MNIST, ResNet-20 x0.5, xRDA,
batch 128; `--epoch-model vgg16:0.25` for VGG-16 x0.25 in the same recipe), old setting against new (SETTING:ALLOCATOR each), timed by part: the data (batch
order, crops, flips, normalization), forward, backward, the method's step, the per-epoch
evaluation of the test set (export + 10,000 images), BatchNorm recalibration (bn_recal images)
and the final training-accuracy pass. As the profile runs (`--concurrent` runs of one setting
at once, 1 thread each), each side is `--concurrent` processes started together; the old
side first, then the new. Prints each part's mean over the processes and the ratio of the
epoch's total (training + evaluation, what a run pays every epoch). Needs the data set
(apt-get install dataset-fashion-mnist).

A benchmark, not a test: it prints a table (and --out writes it as CSV); nothing asserts.
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from sparsecs import config as C
from sparsecs import data as D
from sparsecs import distributed
from sparsecs import final_eval
from sparsecs import hardware
import train

BATCH = 128
SETTINGS = {   # name -> config keys
    "fp32": {"precision": "fp32", "channels_last": False},
    "fp32+cl": {"precision": "fp32", "channels_last": True},
    "bf16": {"precision": "bf16", "channels_last": False},
    "bf16+cl": {"precision": "bf16", "channels_last": True},
}
ONE = distributed.Dist()
DEVICE = hardware.environment()["device_name"]


def run_config(model, width, method, setting, compile_=False, **extra):
    over = [f"model={model}", f"width={width}", "dataset=fashion_mnist", f"batch_size={BATCH}",
            "epochs=8", "device=cpu", f"compile={compile_}"]
    over += [f"{k}={v}" for k, v in SETTINGS[setting].items()]
    over += [f"{k}={v}" for k, v in extra.items()]
    return C.build(f"configs/quick/{method}.yaml", over)


class Stepper:
    """One model + method in one setting, stepping on a fixed synthetic batch."""

    def __init__(self, cfg):
        self.cfg = cfg
        torch.manual_seed(0)
        self.model = train.build_model(cfg, 10, torch.device("cpu"), (1, 28, 28))
        self.method = train.build_method(cfg, self.model, 469)
        self.fwd = torch.compile(self.model) if cfg["compile"] else self.model
        g = torch.Generator().manual_seed(0)
        x = torch.randn(BATCH, 1, 28, 28, generator=g)
        self.x = x.contiguous(memory_format=torch.channels_last) if cfg["channels_last"] else x
        self.y = torch.randint(0, 10, (BATCH,), generator=g)
        t = time.perf_counter()
        self.step()
        self.first = time.perf_counter() - t   # includes compilation

    def step(self):
        train.train_step(self.cfg, self.method, self.fwd, self.x, self.y, torch.device("cpu"), ONE, BATCH)

    def rate(self, steps):
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            self.step()
            times.append(time.perf_counter() - t)
        return BATCH / statistics.median(times)


def bench_steps(args):
    rows = []
    for spec in args.models:
        model, width = spec.split(":")
        names = list(args.settings)
        steppers = {s: Stepper(run_config(model, float(width), args.method, s)) for s in names}
        if args.compile:
            best = names[-1]
            steppers[best + "+compile"] = Stepper(run_config(model, float(width), args.method, best, True))
            names.append(best + "+compile")
        for s in steppers.values():   # warm-up
            s.rate(3)
        rates = {s: [] for s in names}
        for _ in range(args.repeats):
            for s in names:
                rates[s].append(steppers[s].rate(args.steps))
        base = statistics.median(rates[names[0]])
        print(f"\n{model} x{width} ({args.method}, batch {BATCH}, 1x28x28, {torch.get_num_threads()} "
              f"thread(s), {args.repeats} rounds of {args.steps} steps)")
        print(f"  {'setting':<18} {'images/s':>9} {'min-max':>13} {'ratio':>6}  first step")
        for s in names:
            med = statistics.median(rates[s])
            lo, hi = min(rates[s]), max(rates[s])
            ratios = sorted(r / base for r in rates[s])
            print(f"  {s:<18} {med:>9.0f} {lo:>6.0f}-{hi:<6.0f} {med / base:>6.2f}  "
                  f"{steppers[s].first:.1f}s")
            rows.append({"part": "step", "model": f"{model}x{width}", "setting": s,
                         "images_per_s": round(med, 1), "min": round(lo, 1), "max": round(hi, 1),
                         "ratio": round(med / base, 3), "ratio_min": round(ratios[0], 3),
                         "ratio_max": round(ratios[-1], 3), "first_step_s": round(steppers[s].first, 2),
                         "device": DEVICE, "threads": torch.get_num_threads()})
    return rows


PARTS = ("data", "forward", "backward", "step", "evaluation", "bn_recal", "final_train_acc")
PER_EPOCH = PARTS[:5]   # what every epoch pays; bn_recal and the final pass come once a run


def one_epoch(setting, subset=0, spec="resnet20:0.5"):
    """{part: seconds} of one epoch of the fashion run in `setting` (module docstring), with the
    model `spec` (MODEL:WIDTH); subset: the first N training images only (a smoke test)."""
    data = D.load("fashion_mnist", "data")
    if subset:
        data.subset(subset)
    cpu = torch.device("cpu")
    name, width = spec.split(":")
    cfg = run_config(name, float(width), "xrda", setting)
    torch.manual_seed(0)
    model = train.build_model(cfg, data.num_classes, cpu, data.input_shape)
    method = train.build_method(cfg, model, data.steps_per_epoch(BATCH))
    eval_model = train.build_model(cfg, data.num_classes, cpu, data.input_shape)
    t = dict.fromkeys(PARTS, 0.0)
    model.train()
    batches = data.train_batches(BATCH, cfg["seed"], 0, channels_last=cfg["channels_last"])
    while True:
        t0 = time.perf_counter()
        try:
            x, y = next(batches)
        except StopIteration:
            break
        t1 = time.perf_counter()
        method.zero_grad()
        with hardware.autocast(cfg, cpu):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        method.step()
        t4 = time.perf_counter()
        t["data"] += t1 - t0
        t["forward"] += t2 - t1
        t["backward"] += t3 - t2
        t["step"] += t4 - t3
    t0 = time.perf_counter()
    method.end_epoch(0)
    eval_model.load_state_dict(method.export())
    train.evaluate(cfg, eval_model, data, cpu, ONE)
    t1 = time.perf_counter()
    final_eval.recalibrate_bn(eval_model, data, cfg, cfg["bn_recal"])
    t2 = time.perf_counter()
    final_eval.final_train_accuracy(cfg, eval_model, data, cpu, ONE)
    t["evaluation"], t["bn_recal"], t["final_train_acc"] = t1 - t0, t2 - t1, time.perf_counter() - t2
    return t


def bench_epoch(args):
    """Old against new, `--concurrent` child processes at once for each (module docstring)."""
    rows, totals = [], {}
    model = args.epoch_model.replace(":", "x")
    print(f"\nepoch of {args.epoch_model} (xRDA, Fashion-MNIST, batch {BATCH})")
    for side, spec in (("old", args.old), ("new", args.new)):
        setting, allocator = spec.split(":")
        cmd = [sys.executable, "-m", "benchmarks.bench_cpu", "--one-epoch", setting, "--allocator", allocator,
               "--threads", str(args.threads), "--subset", str(args.subset), "--epoch-model", args.epoch_model]
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=repo) for _ in range(args.concurrent)]
        results = []
        for p in procs:
            out, _ = p.communicate()
            if p.returncode:
                sys.exit(f"error: the {side} epoch ({spec}) failed (exit {p.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
        mean = {k: statistics.mean(r[k] for r in results) for k in PARTS}
        totals[side] = sum(mean[k] for k in PER_EPOCH)
        print(f"\n{side}: {spec}, {args.concurrent} at once, {args.threads} thread(s) each; seconds "
              f"(mean over the processes, min-max)")
        for k in PARTS:
            lo, hi = min(r[k] for r in results), max(r[k] for r in results)
            print(f"  {k:<16} {mean[k]:7.1f}  {lo:6.1f}-{hi:<6.1f} "
                  f"{100 * mean[k] / totals[side]:5.1f}% of an epoch" if k in PER_EPOCH
                  else f"  {k:<16} {mean[k]:7.1f}  {lo:6.1f}-{hi:<6.1f} once a run")
            rows.append({"part": f"epoch:{k}", "model": model, "setting": spec, "side": side,
                         "seconds": round(mean[k], 2), "min": round(lo, 2), "max": round(hi, 2),
                         "concurrent": args.concurrent, "threads": args.threads, "device": DEVICE})
        per_proc = sorted(sum(r[k] for k in PER_EPOCH) for r in results)
        rows.append({"part": "epoch:total", "model": model, "setting": spec, "side": side,
                     "seconds": round(totals[side], 2), "min": round(per_proc[0], 2),
                     "max": round(per_proc[-1], 2), "concurrent": args.concurrent,
                     "threads": args.threads, "device": DEVICE})
        print(f"  {'epoch':<16} {totals[side]:7.1f}  {per_proc[0]:6.1f}-{per_proc[-1]:<6.1f} "
              f"(training + evaluation)")
    print(f"\nepoch speed-up, new against old: {totals['old'] / totals['new']:.2f}x")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet20:0.5", "vgg16:0.25"])
    ap.add_argument("--method", default="xrda")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--allocator", choices=("default", "kept"), default="kept",
                    help="kept: hardware.keep_freed_memory() as train.py does on the CPU")
    ap.add_argument("--epoch", action="store_true")
    ap.add_argument("--epoch-model", default="resnet20:0.5",
                    help="MODEL:WIDTH of the --epoch run (the fashion profile's ResNet-20 x0.5 by default)")
    ap.add_argument("--old", default="fp32+cl:default", help="SETTING:ALLOCATOR of the old epoch")
    ap.add_argument("--new", default="bf16+cl:kept", help="SETTING:ALLOCATOR of the new epoch")
    ap.add_argument("--concurrent", type=int, default=2, help="runs at once on each side")
    ap.add_argument("--no-steps", action="store_true", help="only the epoch part")
    ap.add_argument("--subset", type=int, default=0, help="first N training images (smoke test)")
    ap.add_argument("--one-epoch", choices=list(SETTINGS), help=argparse.SUPPRESS)   # a child
    ap.add_argument("--out", help="write the rows as CSV")
    args = ap.parse_args()
    for spec in (args.old, args.new):
        setting, _, allocator = spec.partition(":")
        if setting not in SETTINGS or allocator not in ("default", "kept"):
            ap.error(f"--old/--new take SETTING:ALLOCATOR ({', '.join(SETTINGS)} : default or kept), got {spec!r}")
    torch.set_num_threads(args.threads)
    if args.allocator == "kept":
        hardware.keep_freed_memory()
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if args.one_epoch:
        print(json.dumps(one_epoch(args.one_epoch, args.subset, args.epoch_model)))
        return
    print(f"{DEVICE}, torch {torch.__version__}, allocator {args.allocator} (steps)")
    rows = [] if args.no_steps else bench_steps(args)
    if args.epoch:
        rows += bench_epoch(args)
    if args.out:
        keys = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()

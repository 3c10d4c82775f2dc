"""Epoch time of every (model, width, method, batch) the GPU profiles run, and their GPU-hours.

    python -m benchmarks.bench_epoch [--profiles paper short ablation] [--models M ...]
                                     [--methods X ...] [--device auto|cpu|cuda] [--warmup 10]
                                     [--steps 30] [--eval-images 1000] [--width W] [--batch B]
                                     [--quick]
                                     [--out FILE.csv]

`--profiles imagenet` times ResNet-50 and MobileNet-V1 at 224x224 on synthetic tensors.

For each distinct (model, width, method, mode, classes, batch) that a run of the profiles
has (sweep.expand, each run's resolved config: precision, channels_last, compile and the
method's hyperparameters as that run has them), on the current device: synthetic
CIFAR-shaped data (random uint8 [N,3,32,32] in a data.Data, batched and augmented by the
same code as training), the real train.build_model and optim.get_method, and the training
step of train.py (zero_grad, forward under autocast, cross_entropy, backward,
method.step()). `--steps` steps are timed after `--warmup` untimed ones (cudnn autotuning,
torch.compile), with CUDA events on a GPU and perf_counter on the CPU, and scaled to an
epoch of 50,000 images at the config's batch size; one evaluation of `--eval-images`
images (export of the weights included) is scaled to the 10,000 test images.

Per profile: its runs, total epochs and estimated GPU-hours = sum over its runs of epochs x
s/epoch of that run's key / 3600, for one run per GPU. λ searches count their first round;
the upper figure has every search run all its rounds. With --runs-per-gpu K a sweep may
take less wall time than GPU-hours / 1, by a factor (at most K) that this does not measure.
method.end_epoch (pruning steps) is not timed. Not a test: it prints a table.

--width W / --batch B run every key at width W / batch B (and estimate the profiles so),
for smoke tests; --quick is 1 warm-up step, 1 timed step, 16 evaluation images, width 0.125
and batch 8 unless given, one CPU thread: a pipeline check in seconds on the CPU, not a
measurement.
"""
import argparse
import csv
import math
import sys
import time

import torch

from sparsecs import config as C
from sparsecs import distributed
from sparsecs import data as D
from sparsecs import hardware
from sparsecs import metrics
from sparsecs.sweeping import profile as P
from sparsecs.sweeping.expansion import expand
import train
from sparsecs.optim import get_method

ONE_PROCESS = distributed.Dist()
# Sets streamed from disk (ImageNet) are timed on synthetic batches made on the device once
# and reused: the DataLoader's decoding is not timed.
STREAMED = ("imagenet",)


def images(cfg):
    """(training images per epoch, test images) of the run's data set (its registry entry)."""
    spec = D.get(cfg["dataset"])
    return spec.n_train, spec.n_test
COLUMNS = ["model", "width", "method", "mode", "classes", "batch", "dataset", "steps_per_epoch",
           "ms_per_step", "eval_s", "s_per_epoch", "device"]


def key_of(cfg):
    """What an epoch's time depends on (besides precision etc., the same in every profile row)."""
    mode = cfg["optim"].get("mode") or get_method(cfg["method"]).mode
    return (cfg["model"], float(cfg["width"]), cfg["method"], mode, D.get(cfg["dataset"]).num_classes,
            int(cfg["batch_size"]), cfg["dataset"])


def profile_runs(name, width=None, batch=None):
    """[(cfg, epochs, rounds)] for the runs of a profile: one config each (the dependencies'
    target and init_from as placeholders: they do not change the time), a λ search's first
    round with its round limit. Runs that two entries share are counted once."""
    out, seen = [], set()
    for s in expand(P.find_profile(name)):
        ov = list(s.overrides)
        if s.target_from and s.search is None and s.after is None:
            ov.append("optim.target=0.9")
        if s.init_from:
            ov.append("init_from=pending")
        if width is not None:
            ov.append(f"width={width}")
        if batch is not None:
            ov.append(f"batch_size={batch}")
        cfg = C.build(s.config, ov)
        if not s.deps:
            rn = C.run_name(cfg)
            if rn in seen:
                continue
            seen.add(rn)
        out.append((cfg, cfg["epochs"], s.search.rounds if s.search is not None else 1))
    return out


class SyntheticImages:
    """Normalized random [B,3,S,S] batches on the device, the interface of data.Data: for
    ImageNet-sized inputs, whose real pipeline is a DataLoader (not what this times)."""

    def __init__(self, n_train, n_test, k, shape, device, g):
        self.num_classes, self.device, self.input_shape = k, device, tuple(shape)
        self.n_train, self.n_test, self.g = n_train, n_test, g

    def _batches(self, n, batch_size, channels_last):
        x = torch.randn(min(n, batch_size), *self.input_shape, generator=self.g).to(self.device)
        y = torch.randint(0, self.num_classes, (len(x),), generator=self.g).to(self.device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for i in range(0, n, batch_size):
            m = min(batch_size, n - i)
            yield x[:m], y[:m]

    def train_batches(self, batch_size, seed, epoch, channels_last=False, **_):
        return self._batches(self.n_train, batch_size, channels_last)

    def test_batches(self, batch_size, channels_last=False, **_):
        return self._batches(self.n_test, batch_size, channels_last)


def synthetic(cfg, n_train, n_test, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    spec = D.get(cfg["dataset"])
    k, shape = spec.num_classes, spec.input_shape
    if cfg["dataset"] in STREAMED:
        return SyntheticImages(n_train, n_test, k, shape, device, g)
    return D.Data(spec, torch.randint(0, 256, (n_train, *shape), dtype=torch.uint8, generator=g),
                  torch.randint(0, k, (n_train,), generator=g),
                  torch.randint(0, 256, (n_test, *shape), dtype=torch.uint8, generator=g),
                  torch.randint(0, k, (n_test,), generator=g), device=device)


class Timer:
    """Seconds between start() and stop(): CUDA events on a GPU, perf_counter on the CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def start(self):
        if self.cuda:
            self.a, self.b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.a.record()
        else:
            self.t = time.perf_counter()

    def stop(self):
        if self.cuda:
            self.b.record()
            self.b.synchronize()
            return self.a.elapsed_time(self.b) / 1000.0
        return time.perf_counter() - self.t


def bench(cfg, device, warmup, steps, eval_images):
    """(ms per training step, s per evaluation of the test set) for one config."""
    torch.manual_seed(0)
    bs = int(cfg["batch_size"])
    data = synthetic(cfg, bs * (warmup + steps), eval_images, device)
    model = train.build_model(cfg, data.num_classes, device, data.input_shape)
    method = train.build_method(cfg, model, math.ceil(images(cfg)[0] / bs))
    eval_model = train.build_model(cfg, data.num_classes, device, data.input_shape)
    fwd = torch.compile(model) if cfg["compile"] else model
    mem = dict(channels_last=cfg["channels_last"])
    timer = Timer(device)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    batches = data.train_batches(bs, cfg["seed"], 0, augment=cfg["augment"], crop_padding=cfg["crop_padding"],
                                 flip=cfg["flip"], erase=cfg["erase"], **mem)
    for i, (x, y) in enumerate(batches):   # train.py's step
        if i == warmup:
            timer.start()
        loss, logits = train.train_step(cfg, method, fwd, x, y, device, ONE_PROCESS, len(y))
        loss_sum += loss.detach() * y.numel()
        correct += (logits.detach().argmax(1) == y).sum()
    step_s = timer.stop() / steps
    loss_sum.item()
    with hardware.autocast(cfg, device):   # warm-up of the evaluation (cudnn picks its kernels)
        metrics.evaluate(eval_model, data.test_batches(cfg["eval_batch_size"], **mem))
    timer.start()
    eval_model.load_state_dict(method.export())
    with hardware.autocast(cfg, device):
        metrics.evaluate(eval_model, data.test_batches(cfg["eval_batch_size"], **mem))
    eval_s = timer.stop() * images(cfg)[1] / eval_images
    return 1000.0 * step_s, eval_s


def estimate(profile_list, table):
    """Per profile: (runs, epochs, GPU-h, epochs with all λ rounds, GPU-h with them, runs not measured)."""
    out = {}
    for name, items in profile_list.items():
        n = epochs = hours = epochs_max = hours_max = missing = 0
        for cfg, ep, rounds in items:
            row = table.get(key_of(cfg))
            n += 1
            epochs += ep
            epochs_max += ep * rounds
            if row is None:
                missing += 1
                continue
            hours += ep * row["s_per_epoch"] / 3600
            hours_max += ep * rounds * row["s_per_epoch"] / 3600
        out[name] = (n, epochs, hours, epochs_max, hours_max, missing)
    return out


def _parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profiles", nargs="+", default=["paper", "short", "ablation"])
    p.add_argument("--models", nargs="+", help="only these models (default: every model of the profiles)")
    p.add_argument("--methods", nargs="+", help="only these methods")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--eval-images", type=int, default=1000, help="timed evaluation images")
    p.add_argument("--width", type=float, help="every model at this width (smoke tests)")
    p.add_argument("--batch", type=int, help="every run at this batch size (smoke tests)")
    p.add_argument("--quick", action="store_true",
                   help="a pipeline check: 1 + 1 steps, 16 eval images, width 0.125, batch 8")
    p.add_argument("--out", help="write the table as CSV")
    return p


def _device(args):
    """(the device, its name as the tables say it), set up for timing."""
    device = hardware.pick_device(args.device)
    if args.quick and device.type == "cpu":
        torch.set_num_threads(1)   # a check, not a measurement: no oversubscribed cores
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    return device, what


def _todo(profiles, models, methods):
    """{key_of(cfg): one config} of the profiles' runs that --models and --methods keep."""
    todo = {}
    for items in profiles.values():
        for cfg, _, _ in items:
            k = key_of(cfg)
            if (models and k[0] not in models) or (methods and k[2] not in methods):
                continue
            todo.setdefault(k, cfg)
    return todo


def _measure(todo, device, args):
    """{key: row} and the rows in order: each configuration timed, its table line printed."""
    print("| model | width | method | mode | classes | batch | ms/step | s/epoch |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    table, rows = {}, []
    for k in sorted(todo, key=str):
        cfg = todo[k]
        ms, eval_s = bench(cfg, device, args.warmup, args.steps, args.eval_images)
        spe = math.ceil(images(cfg)[0] / k[5])
        row = dict(zip(COLUMNS, (*k, spe, round(ms, 3), round(eval_s, 3), round(ms * spe / 1000 + eval_s, 2),
                                 str(device))))
        table[k] = row
        rows.append(row)
        print(f"| {k[0]} | {k[1]:g} | {k[2]} | {k[3]} | {k[4]} | {k[5]} | {ms:.1f} | {row['s_per_epoch']:.1f} |",
              flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return table, rows


def _print_estimate(profiles, table, what, args):
    print(f"\nEstimated GPU-hours on this device ({what}), one run per GPU"
          + (f", every model at width {args.width:g}" if args.width is not None else "")
          + (f", every run at batch {args.batch}" if args.batch is not None else "") + ":\n")
    print("| profile | runs | epochs | GPU-h | with every λ round: epochs | GPU-h | runs not measured |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (n, ep, h, ep_max, h_max, missing) in estimate(profiles, table).items():
        print(f"| {name} | {n} | {ep:,} | {h:,.1f} | {ep_max:,} | {h_max:,.1f} | {missing} |")
    print("\nGPU-hours are for one run per GPU; sharing a GPU (sweep.py --runs-per-gpu K) can shorten "
          "the wall time by a factor that this does not measure (at most K).")


def main(argv=None):
    p = _parser()
    args = p.parse_args(argv)
    if args.quick:
        args.warmup, args.steps, args.eval_images = 1, 1, 16
        args.width = 0.125 if args.width is None else args.width
        args.batch = 8 if args.batch is None else args.batch
    if args.steps < 1 or args.warmup < 0 or args.eval_images < 1 or (args.batch is not None and args.batch < 1):
        p.error("--steps, --eval-images and --batch must be >= 1, --warmup >= 0")
    device, what = _device(args)
    try:
        profiles = {name: profile_runs(name, args.width, args.batch) for name in args.profiles}
    except (P.ProfileError, C.ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    todo = _todo(profiles, args.models, args.methods)
    if not todo:
        print("error: no run of the profiles matches --models / --methods", file=sys.stderr)
        return 2
    print(f"{len(todo)} configurations on {what}: {args.warmup} warm-up + {args.steps} timed steps each, "
          f"each data set's training and test images per epoch (its registry entry; ImageNet "
          f"on synthetic device batches, data loading not timed)\n")
    table, rows = _measure(todo, device, args)
    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)
    _print_estimate(profiles, table, what, args)
    if args.out:
        print(f"table: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""XRDA's cost next to torch.optim.SGD, measured side by side in one process.

    python -m benchmarks.bench_optim [--threads T] [--repeats N] [--device cpu|cuda] [--fused]

(a) the optimizer step alone on VGG-16's parameters (random gradients): XRDA (elementwise,
    M = 500, lam 1e-6, a = 0.5 so that no a = 0 / a = 1 shortcut applies) against
    torch.optim.SGD(momentum=0.9, foreach=True) with the same weight decay 5e-4, and
    against the same SGD without weight decay. Target: at most 3x.
(b) a full training step (forward, backward, step) of ResNet-20 at batch 128 with random
    data, XRDA against SGD. Target: at most 1.10x.
(c) optimizer state: bytes of the state tensors over bytes of the parameters, per model and
    mode. Target: at most 4. (During a step XRDA also holds one scratch tensor the size of
    the penalized weights; it is freed when the step returns.)

Every measurement is warm (untimed warm-up steps first), the two sides alternate step by
step, and the table shows medians. --fused adds XRDA(fused=True) (torch.compile; compile
time is reported separately and excluded). Not a test: it prints a table.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from sparsecs import data as D
from sparsecs import models
from sparsecs.optim import XRDA

CIFAR = D.get("cifar10")     # the data set the models are built for: its shape and classes


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns, repeats, warmup, device):
    """Median seconds of each fn, called alternately (the order rotates every round, so
    that no side always runs first)."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in fns}
    keys = list(fns)
    for i in range(repeats):
        for k in keys[i % len(keys):] + keys[:i % len(keys)]:
            f = fns[k]
            sync(device)
            t = time.perf_counter()
            f()
            sync(device)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def cifar_model(name):
    """`name` built for CIFAR-10 (what these timings have always measured), from its registry entry."""
    return models.get_model(name, CIFAR.num_classes, input_shape=CIFAR.input_shape)


def with_grads(name, device, seed=0):
    torch.manual_seed(seed)
    m = cifar_model(name).to(device)
    for p in m.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    return m


def make_xrda(params, **kw):
    return XRDA(params, lr=1.0, avg=0.5, lam=1e-6, max_factor=500.0, weight_decay=5e-4, **kw)


def bench_step(device, repeats, fused, model="vgg16"):
    opts, compile_s = {}, None
    opts["xrda"] = make_xrda(with_grads(model, device).parameters())
    opts["sgd"] = torch.optim.SGD(with_grads(model, device).parameters(), lr=0.1, momentum=0.9,
                                  weight_decay=5e-4, foreach=True)
    opts["sgd_nowd"] = torch.optim.SGD(with_grads(model, device).parameters(), lr=0.1,
                                       momentum=0.9, foreach=True)
    if fused:
        opts["xrda_fused"] = make_xrda(with_grads(model, device).parameters(), fused=True)
        t = time.perf_counter()
        opts["xrda_fused"].step()
        sync(device)
        compile_s = time.perf_counter() - t
    n = sum(p.numel() for p in cifar_model(model).parameters())
    return interleaved({k: o.step for k, o in opts.items()}, repeats, 2, device), n, compile_s


def bench_train(device, repeats, fused):
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(128, *CIFAR.input_shape, generator=g).to(device)
    y = torch.randint(0, CIFAR.num_classes, (128,), generator=g).to(device)
    runs = {}

    def make(opt_fn):
        torch.manual_seed(0)
        m = cifar_model("resnet20").to(device)
        opt = opt_fn(m.parameters())

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(x), y).backward()
            opt.step()
        return step

    runs["xrda"] = make(make_xrda)
    runs["sgd"] = make(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=5e-4,
                                                  foreach=True))
    if fused:
        runs["xrda_fused"] = make(lambda ps: make_xrda(ps, fused=True))
        runs["xrda_fused"]()  # compile outside the timing
    return interleaved(runs, repeats, 2, device)


def state_ratios(device):
    rows = []
    for name in ("vgg16", "resnet20", "densenet40"):
        for mode in ("elementwise", "kernel", "channel"):
            m = with_grads(name, device)
            opt = make_xrda(m.parameters(), mode=mode)
            opt.step()
            state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values())
            params = sum(p.numel() * p.element_size() for p in m.parameters())
            pen = sum(p.numel() * p.element_size() for p in m.parameters() if p.dim() in (2, 4))
            rows.append((name, mode, state / params, pen / params))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="torch.set_num_threads (default: all, %(default)s here)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fused", action="store_true", help="also time XRDA(fused=True)")
    ap.add_argument("--skip-train", action="store_true", help="skip (b)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"repeats {args.repeats} (medians)\n")

    t, n, compile_s = bench_step(device, args.repeats, args.fused)
    print(f"(a) optimizer step on VGG-16 parameters ({n / 1e6:.1f}M), ms")
    print(f"    {'optimizer':<34}{'ms':>9}{'/ SGD wd':>11}{'/ SGD no wd':>13}")
    labels = {"sgd": "SGD momentum 0.9, wd 5e-4, foreach", "sgd_nowd": "SGD momentum 0.9, foreach",
              "xrda": "XRDA elementwise M=500", "xrda_fused": "XRDA elementwise M=500, fused"}
    for k in t:
        print(f"    {labels[k]:<34}{t[k] * 1e3:9.1f}{t[k] / t['sgd']:11.2f}{t[k] / t['sgd_nowd']:13.2f}")
    if compile_s is not None:
        print(f"    (fused: first step incl. compile {compile_s:.1f} s, not counted)")
    print("    target: XRDA <= 3x SGD\n")

    if not args.skip_train:
        t = bench_train(device, args.repeats, args.fused)
        print("(b) ResNet-20 training step, batch 128 (forward + backward + step), ms")
        for k in t:
            print(f"    {k:<34}{t[k] * 1e3:9.1f}{t[k] / t['sgd']:11.3f}")
        alone, _, _ = bench_step(device, args.repeats, False, "resnet20")
        extra = alone["xrda"] - alone["sgd"]
        print(f"    the optimizer step alone on ResNet-20: XRDA {alone['xrda'] * 1e3:.1f} ms, "
              f"SGD {alone['sgd'] * 1e3:.1f} ms; the difference makes the training step "
              f"{1 + extra / t['sgd']:.3f}x (less noisy than the ratio above on a busy machine)")
        print("    target: XRDA <= 1.10x SGD\n")

    print("(c) optimizer state bytes / parameter bytes (target <= 4)")
    print(f"    {'model':<12}{'mode':<13}{'state/params':>13}{'penalized share':>17}")
    for name, mode, ratio, pen in state_ratios(device):
        print(f"    {name:<12}{mode:<13}{ratio:13.3f}{pen:17.3f}")


if __name__ == "__main__":
    main()

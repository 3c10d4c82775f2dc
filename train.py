"""One run: a config in, a run folder out.

    python train.py CONFIG.yaml [KEY=VALUE ...] [--out DIR] [--results DIR]

The run folder (default results/runs/<name>-<hash>/) gets config.yaml, metrics.csv (one
row per epoch), checkpoint.pt (every epoch, for resume), and at the end model.pt,
layers.csv, summary.json and a row in results/runs.csv. A finished run with the same
resolved config is skipped; an unfinished one resumes from its last epoch.
"""
import argparse
import contextlib
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

import config as C
import data as D
import metrics
import models
import rundir
from optim import get_method


class RunError(Exception):
    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("device: cuda was asked for but no GPU is visible; use device=auto or cpu", 2)
    return torch.device(name)


def autocast(cfg, device):
    if cfg["precision"] == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_model(cfg, num_classes, device):
    model = models.get_model(cfg["model"], num_classes=num_classes, width=cfg["width"]).to(device)
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return model


def load_weights(path, model, cfg):
    """Load a model.pt (or a run folder's) into `model`; the architecture must match."""
    path = os.path.join(path, "model.pt") if os.path.isdir(path) else path
    if not os.path.exists(path):
        raise RunError(f"init_from: {path} not found (finish that run first)", 2)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "width"):
        if saved[key] != cfg[key]:
            raise RunError(f"init_from: {path} holds {key}={saved[key]!r}, this run has {cfg[key]!r}", 2)
    model.load_state_dict(saved["state_dict"])
    return path


def model_file(cfg, num_classes, state_dict):
    return {"model": cfg["model"], "width": cfg["width"], "num_classes": num_classes,
            "dataset": cfg["dataset"], "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}


def finished_summary(out):
    """The summary of the run finished in folder `out`, or None. A summary without model.pt
    (results committed to git, whose weights are not) does not count: running the config
    again trains it here and writes this machine's numbers over the committed ones."""
    path = os.path.join(out, "summary.json")
    if not (os.path.exists(path) and os.path.exists(os.path.join(out, "model.pt"))):
        return None
    with open(path) as f:
        return json.load(f)


def train(cfg, out=None, results="results", quiet=False):
    """Run (or resume, or skip) one training run; returns its summary dict."""
    name, chash = C.run_name(cfg), C.config_hash(cfg)
    out = out or os.path.join(results, "runs", name)
    say = (lambda *a: None) if quiet else (lambda msg: tqdm.write(msg, file=sys.stderr))
    summary_path = os.path.join(out, "summary.json")
    summary = finished_summary(out)
    if summary is not None and summary.get("config_hash") == chash:
        say(f"{name}: finished already, skipped")
        return summary
    cfg_path = os.path.join(out, "config.yaml")
    if os.path.exists(cfg_path):
        other = C.resolve(C.load_yaml(cfg_path))
        if C.config_hash(other) != chash:
            raise RunError(f"{out} holds a run with another config; pick another --out or delete it", 2)

    seed = cfg["seed"]
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    device = pick_device(cfg["device"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        data = D.load(cfg["dataset"], cfg["data_dir"], device=device, download=cfg["download"])
    except D.DataError as e:
        raise RunError(str(e), 1) from None
    if cfg["train_subset"]:
        data.train_x, data.train_y = data.train_x[:cfg["train_subset"]], data.train_y[:cfg["train_subset"]]

    model = build_model(cfg, data.num_classes, device)
    init_path = load_weights(cfg["init_from"], model, cfg) if cfg["init_from"] else ""
    steps = data.steps_per_epoch(cfg["batch_size"])
    method = get_method(cfg["method"])(model, cfg["optim"], steps, cfg["epochs"])
    eval_model = build_model(cfg, data.num_classes, device)  # the exported weights, as eval.py sees them

    ckpt_path = os.path.join(out, "checkpoint.pt")
    rows, start, train_seconds = [], 0, 0.0
    if os.path.exists(ckpt_path):
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        method.load_state_dict(ckpt["method"])
        torch.set_rng_state(ckpt["rng"])
        rows, start, train_seconds = ckpt["rows"], ckpt["epoch"] + 1, ckpt["train_seconds"]
        say(f"{name}: resuming after epoch {start}")
    else:
        rundir.atomic_write(cfg_path, yaml.safe_dump(cfg, sort_keys=False))

    fwd = torch.compile(model) if cfg["compile"] else model
    mem = dict(channels_last=cfg["channels_last"])
    bar = tqdm(total=cfg["epochs"] * steps, initial=start * steps, desc=name, leave=False,
               disable=True if quiet else None, dynamic_ncols=True)
    for epoch in range(start, cfg["epochs"]):
        t0 = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        n = 0
        for x, y in data.train_batches(cfg["batch_size"], seed, epoch, augment=cfg["augment"], **mem):
            method.zero_grad()
            with autocast(cfg, device):
                logits = fwd(x)
            loss = F.cross_entropy(logits.float(), y)
            loss.backward()
            method.step()
            loss_sum += loss.detach() * y.numel()
            correct += (logits.detach().argmax(1) == y).sum()
            n += y.numel()
            bar.update()
        train_loss = loss_sum.item() / n
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - t0
        if not math.isfinite(train_loss):
            bar.close()
            kept = f"kept the checkpoint of epoch {start}" if start else "no checkpoint yet"
            raise RunError(f"training loss became {train_loss} in epoch {epoch + 1} ({kept} in "
                           f"{out}); lower optim.lr or optim.lam", 3)
        extras = method.end_epoch(epoch)
        eval_model.load_state_dict(method.export())
        with autocast(cfg, device):
            test_loss, test_acc = metrics.evaluate(eval_model, data.test_batches(cfg["eval_batch_size"], **mem))
        sp, nnz = metrics.sparsity(eval_model)
        row = {"epoch": epoch + 1, "lr": method.lr, "train_loss": train_loss,
               "train_acc": 100.0 * correct.item() / n, "test_loss": test_loss, "test_acc": test_acc,
               "sparsity": sp, "nnz": nnz, "seconds": time.perf_counter() - t0, **extras}
        rows.append(row)
        rundir.save_csv(rows, os.path.join(out, "metrics.csv"))
        rundir.save_torch({"model": model.state_dict(), "method": method.state_dict(),
                           "rng": torch.get_rng_state(), "rows": rows, "epoch": epoch,
                           "train_seconds": train_seconds, "config_hash": chash}, ckpt_path)
        start = epoch + 1
        say(f"{name} epoch {epoch + 1}/{cfg['epochs']}: train loss {train_loss:.4f} "
            f"acc {row['train_acc']:.2f} | test loss {test_loss:.4f} acc {test_acc:.2f} | "
            f"sparsity {sp:.4f} | {row['seconds']:.1f}s")
    bar.close()

    state = method.export()
    eval_model.load_state_dict(state)
    rundir.save_torch(model_file(cfg, data.num_classes, state), os.path.join(out, "model.pt"))
    layers = metrics.layer_table(eval_model)
    rundir.save_csv(layers, os.path.join(out, "layers.csv"))
    last = rows[-1]
    summary = {"run": name, "dataset": cfg["dataset"], "model": cfg["model"], "width": cfg["width"],
               "method": cfg["method"], "mode": method.mode, "seed": seed, "epochs": cfg["epochs"],
               "lam": 0.0, **method.summary(), "test_acc": last["test_acc"],
               "test_loss": last["test_loss"], "train_acc": last["train_acc"],
               "train_loss": last["train_loss"], **metrics.counts(eval_model),
               "train_seconds": train_seconds, "config_hash": chash, "init_from": init_path,
               "run_dir": os.path.abspath(out)}
    rundir.save_json(summary, summary_path)
    rundir.upsert_row(os.path.join(results, "runs.csv"), summary)
    say(f"{name}: test acc {summary['test_acc']:.2f}%, sparsity {summary['sparsity']:.4f}, "
        f"{summary['train_seconds']:.0f}s -> {out}")
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="dotted KEY=VALUE, e.g. epochs=2 optim.lam=1e-5")
    p.add_argument("--out", help="run folder (default: RESULTS/runs/<run name>)")
    p.add_argument("--results", default="results", help="where runs.csv and runs/ live")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    args = p.parse_args(argv)
    try:
        cfg = C.build(args.config, args.overrides)
        train(cfg, out=args.out, results=args.results, quiet=args.quiet)
    except C.ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())

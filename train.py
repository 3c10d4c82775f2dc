"""One run: a config in, a run folder out.

    python train.py CONFIG.yaml [KEY=VALUE ...] [--out DIR] [--results DIR]

The run folder (default RESULTS/runs/<name>-<hash>/, RESULTS = scratch/ for ad-hoc runs;
sweeps pass results/) gets config.yaml, metrics.csv (one row per epoch), checkpoint.pt
(every epoch, for resume), and at the end model.pt, layers.csv, summary.json and a row in
RESULTS/runs.csv (runs.py owns these names and the summary's fields). A finished run with
the same resolved config is skipped; an unfinished one resumes from its last epoch.
"""
import argparse
import math
import os
import random
import signal
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
import runs
from optim import get_method


class RunError(Exception):
    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def build_model(cfg, num_classes, device):
    model = models.get_model(cfg["model"], num_classes=num_classes, width=cfg["width"]).to(device)
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return model


def load_weights(path, model, cfg):
    """Load a model.pt (or a run folder's) into `model`; the architecture must match."""
    path = runs.model_path(path)
    if not os.path.exists(path):
        raise RunError(f"init_from: {path} not found (finish that run first)", 2)
    saved = runs.load_model_file(path)
    for key in ("model", "width"):
        if saved[key] != cfg[key]:
            raise RunError(f"init_from: {path} holds {key}={saved[key]!r}, this run has {cfg[key]!r}", 2)
    model.load_state_dict(saved["state_dict"])
    return path


def epochs_before(init_path):
    """Training epochs already spent on the weights a run starts from (0 for random init):
    that run's total_epochs from its summary, so budgets add up along init_from chains."""
    if not init_path:
        return 0
    s = os.path.join(os.path.dirname(init_path), runs.SUMMARY)
    if not os.path.exists(s):
        return 0
    prev = runs.read_summary(os.path.dirname(init_path))
    return int(prev.get("total_epochs", prev.get("epochs", 0)))


def train(cfg, out=None, results=runs.SCRATCH, quiet=False):
    """Run (or resume, or skip) one training run; returns its summary dict. One process per
    run folder: a second one exits at once (RunError, code 4) naming the holder."""
    name = C.run_name(cfg)
    out = out or os.path.join(results, "runs", name)
    say = (lambda *a: None) if quiet else (lambda msg: tqdm.write(msg, file=sys.stderr))
    summary = runs.finished_summary(out, warn=say)
    if summary is not None and summary.get("config_hash") == C.config_hash(cfg):
        say(f"{name}: finished already, skipped")
        return summary
    try:
        with runs.run_lock(out):
            return _train(cfg, out, results, say, quiet)
    except runs.LockedError as e:
        raise RunError(str(e), 4) from None


def load_checkpoint(out, device, chash):
    """The newest readable checkpoint (checkpoint.pt, else the one before it), or None."""
    paths = [runs.path(out, runs.CHECKPOINT), runs.path(out, runs.CHECKPOINT_PREV)]
    present = [p for p in paths if os.path.exists(p)]
    for p in present:
        try:
            ckpt = torch.load(p, map_location=device, weights_only=True)
        except Exception:   # truncated, garbage or not a checkpoint: try the previous one
            continue
        if ckpt.get("config_hash") != chash:   # config.yaml deleted or edited: never mix two runs
            raise RunError(f"{p} was written by another config (hash {ckpt.get('config_hash')}, "
                           f"this run {chash}); delete it to start over, or pick another --out", 2)
        return ckpt, p
    if present:
        raise RunError(f"{' and '.join(present)} unreadable (damaged); delete "
                       f"{'them' if len(present) > 1 else 'it'} to start the run over", 1)
    return None, None


def _train(cfg, out, results, say, quiet):
    name, chash = C.run_name(cfg), C.config_hash(cfg)
    cfg_path = runs.path(out, runs.CONFIG)
    if os.path.exists(cfg_path):
        other = C.resolve(C.load_yaml(cfg_path))
        if C.config_hash(other) != chash:
            raise RunError(f"{out} holds a run with another config; pick another --out or delete it", 2)

    seed = cfg["seed"]
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        device = runs.pick_device(cfg["device"])
    except runs.RunFolderError as e:
        raise RunError(str(e), 2) from None
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
    hp = dict(cfg["optim"])
    if "lr" in hp:   # a row's step-size scale (e.g. a deep, narrow net that needs a smaller step)
        hp["lr"] = hp["lr"] * cfg["lr_scale"]
    method = get_method(cfg["method"])(model, hp, steps, cfg["epochs"])
    eval_model = build_model(cfg, data.num_classes, device)  # the exported weights, as eval.py sees them

    ckpt_path = runs.path(out, runs.CHECKPOINT)
    rows, start, train_seconds = [], 0, 0.0
    ckpt, used = load_checkpoint(out, device, chash)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        method.load_state_dict(ckpt["method"])
        torch.set_rng_state(ckpt["rng"])
        rows, start, train_seconds = ckpt["rows"], ckpt["epoch"] + 1, ckpt["train_seconds"]
        fell_back = "" if used == ckpt_path else f" ({runs.CHECKPOINT} was damaged: from {runs.CHECKPOINT_PREV})"
        say(f"{name}: resuming after epoch {start}{fell_back}")
        if ckpt.get("threads", torch.get_num_threads()) != torch.get_num_threads():
            say(f"{name}: note: this checkpoint was written with {ckpt['threads']} CPU threads, this "
                f"process has {torch.get_num_threads()}; on the CPU a resumed run is bit-identical "
                f"only at the same thread count")
    else:
        runs.atomic_write(cfg_path, yaml.safe_dump(cfg, sort_keys=False))

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
        for x, y in data.train_batches(cfg["batch_size"], seed, epoch, augment=cfg["augment"],
                                       crop_padding=cfg["crop_padding"], flip=cfg["flip"],
                                       erase=cfg["erase"], **mem):
            method.zero_grad()
            with runs.autocast(cfg, device):
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
        with runs.autocast(cfg, device):
            test_loss, test_acc = metrics.evaluate(eval_model, data.test_batches(cfg["eval_batch_size"], **mem))
        bad = [k for k, v in eval_model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad or not math.isfinite(test_loss):
            bar.close()
            kept = f"kept the checkpoint of epoch {start}" if start else "no checkpoint yet"
            what = f"{bad[0]} has non-finite values" if bad else f"test loss is {test_loss}"
            raise RunError(f"after epoch {epoch + 1} {what} ({kept} in {out}); lower optim.lr or optim.lam", 3)
        sp, nnz = metrics.sparsity(eval_model)
        row = {"epoch": epoch + 1, "lr": method.lr, "train_loss": train_loss,
               "train_acc": 100.0 * correct.item() / n, "test_loss": test_loss, "test_acc": test_acc,
               "sparsity": sp, "nnz": nnz, "seconds": time.perf_counter() - t0, **extras}
        rows.append(row)
        runs.save_csv(rows, runs.path(out, runs.METRICS))
        if os.path.exists(ckpt_path):   # keep the last two: a damaged newest one falls back
            os.replace(ckpt_path, runs.path(out, runs.CHECKPOINT_PREV))
        runs.save_torch({"model": model.state_dict(), "method": method.state_dict(),
                         "rng": torch.get_rng_state(), "rows": rows, "epoch": epoch,
                         "train_seconds": train_seconds, "config_hash": chash,
                         "threads": torch.get_num_threads()}, ckpt_path)
        start = epoch + 1
        say(f"{name} epoch {epoch + 1}/{cfg['epochs']}: train loss {train_loss:.4f} "
            f"acc {row['train_acc']:.2f} | test loss {test_loss:.4f} acc {test_acc:.2f} | "
            f"sparsity {sp:.4f} | {row['seconds']:.1f}s")
    bar.close()

    state = method.export()
    eval_model.load_state_dict(state)
    model_bytes = runs.save_torch(runs.model_file(cfg, data.num_classes, state), runs.path(out, runs.MODEL))
    layers = metrics.layer_table(eval_model)
    runs.save_csv(layers, runs.path(out, runs.LAYERS))
    last = rows[-1]
    summary = {"run": name, "dataset": cfg["dataset"], "model": cfg["model"], "width": cfg["width"],
               "method": cfg["method"], "mode": method.mode, "seed": seed, "epochs": cfg["epochs"],
               "total_epochs": cfg["epochs"] + epochs_before(init_path),
               "lam": 0.0, **method.summary(), "test_acc": last["test_acc"],
               "test_loss": last["test_loss"], "train_acc": last["train_acc"],
               "train_loss": last["train_loss"], **metrics.counts(eval_model),
               "train_seconds": train_seconds, "config_hash": chash, "init_from": init_path,
               **cfg["identity"], **runs.environment(), "model_bytes": model_bytes}
    # The index row first, the summary last: summary.json is what makes the run finished, so
    # a row that could not be written (disk full, damaged runs.csv) is retried by a rerun.
    runs.upsert_row(os.path.join(results, runs.INDEX), summary)
    runs.save_json(summary, runs.path(out, runs.SUMMARY))
    say(f"{name}: test acc {summary['test_acc']:.2f}%, sparsity {summary['sparsity']:.4f}, "
        f"{summary['train_seconds']:.0f}s -> {out}")
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="dotted KEY=VALUE, e.g. epochs=2 optim.lam=1e-5")
    p.add_argument("--out", help="run folder (default: RESULTS/runs/<run name>)")
    p.add_argument("--results", default=runs.SCRATCH,
                   help=f"where runs.csv and runs/ live (default: {runs.SCRATCH}/, git-ignored; "
                        f"sweeps write {runs.RESULTS}/)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    args = p.parse_args(argv)
    # SIGTERM (kill, SLURM preemption) ends like Ctrl-C: at the last finished epoch's
    # checkpoint, with one line
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        cfg = C.build(args.config, args.overrides)
        train(cfg, out=args.out, results=args.results, quiet=args.quiet)
    except C.ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except runs.RunFolderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:   # disk full, read-only folder, --out that is a file, ...
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e} (nothing written is half-written; fix it and rerun)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the last finished epoch is checkpointed: run the same command to "
              "resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A run's checkpoints: checkpoint.pt after every epoch and checkpoint.prev.pt, the one
before it (paths.py names them), so a run resumes from its last finished epoch and a damaged
newest file falls back to the previous one. Only rank 0 writes; every rank reads.

A checkpoint holds the unwrapped model, the method's state, the RNG, the metrics rows so far,
the config hash (never mix two configs in one folder), the thread count and world size (a
resume is bit-identical only at the same ones) and the sha256 of the init_from weights.
"""
import contextlib
import os

import torch
import yaml

from sparsecs import cli
from sparsecs import fileio
from sparsecs import paths


def load(out, device, chash):
    """The newest readable checkpoint (checkpoint.pt, else the one before it), or None."""
    files = [paths.path(out, paths.CHECKPOINT), paths.path(out, paths.CHECKPOINT_PREV)]
    present = [p for p in files if os.path.exists(p)]
    for p in present:
        try:
            ckpt = torch.load(p, map_location=device, weights_only=True)
        except Exception:   # truncated, garbage or not a checkpoint: try the previous one
            continue
        if ckpt.get("config_hash") != chash:   # config.yaml deleted or edited: never mix two runs
            raise cli.RunError(f"{p} was written by another config (hash {ckpt.get('config_hash')}, "
                               f"this run {chash}); delete it to start over, or pick another --out", 2)
        return ckpt, p
    if present:
        raise cli.RunError(f"{' and '.join(present)} unreadable (damaged); delete "
                           f"{'them' if len(present) > 1 else 'it'} to start the run over", 1)
    return None, None


def _read_text(p):
    try:
        with open(p, newline="", encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def resume(cfg, out, d, model, method, device, chash, name, say, init_sha=""):
    """(metrics rows so far, first epoch to train, training seconds so far, sha256 of the
    weights the run started from): from the newest readable checkpoint, or a fresh start
    (config.yaml written)."""
    ckpt, used = load(out, device, chash)
    if ckpt is None:
        if d.main:
            fileio.atomic_write(paths.path(out, paths.CONFIG), yaml.safe_dump(cfg, sort_keys=False))
        return [], 0, 0.0, init_sha
    model.load_state_dict(ckpt["model"])
    method.load_state_dict(ckpt["method"])
    torch.set_rng_state(ckpt["rng"])
    rows, start = ckpt["rows"], ckpt["epoch"] + 1
    fell_back = "" if used == paths.path(out, paths.CHECKPOINT) else \
        f" ({paths.CHECKPOINT} was damaged: from {paths.CHECKPOINT_PREV})"
    say(f"{name}: resuming after epoch {start}{fell_back}")
    metrics_path = paths.path(out, paths.METRICS)   # a metrics.csv that lost rows: whole again
    if d.main and _read_text(metrics_path) != fileio.csv_text(rows):
        fileio.save_csv(rows, metrics_path)
    if ckpt.get("world_size", 1) != d.world:
        say(f"{name}: note: this checkpoint was written by {ckpt.get('world_size', 1)} "
            f"process(es), this run has {d.world}: the same batches, other rounding")
    elif ckpt.get("threads", torch.get_num_threads()) != torch.get_num_threads():
        say(f"{name}: note: this checkpoint was written with {ckpt['threads']} CPU threads, this "
            f"process has {torch.get_num_threads()}; on the CPU a resumed run is bit-identical "
            f"only at the same thread count")
    started = ckpt.get("init_sha256", init_sha)   # the weights it started from, not today's file
    if started != init_sha:
        say(f"{name}: note: {cfg['init_from']} has changed since this run started from it; "
            f"the run goes on from its checkpoint and records the weights it started from")
    return rows, start, ckpt["train_seconds"], started


def keep_previous(ckpt_path, prev_path):
    """The current checkpoint becomes the previous one while staying the current one until the
    next is written (a hard link, no copy): a failed write (disk full) leaves both."""
    link = prev_path + ".link"
    with fileio.writing(prev_path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        try:
            os.link(ckpt_path, link)
            os.replace(link, prev_path)
        except OSError:   # a file system without hard links: move it (a failed write leaves prev)
            os.replace(ckpt_path, prev_path)


def save(out, d, rows, model, method, epoch, train_seconds, chash, init_sha=""):
    """metrics.csv and the checkpoint after an epoch (rank 0), the previous one kept."""
    if d.main:
        ckpt_path = paths.path(out, paths.CHECKPOINT)
        fileio.save_csv(rows, paths.path(out, paths.METRICS))
        if os.path.exists(ckpt_path):   # keep the last two: a damaged newest one falls back
            keep_previous(ckpt_path, paths.path(out, paths.CHECKPOINT_PREV))
        fileio.save_torch({"model": model.state_dict(), "method": method.state_dict(),
                           "rng": torch.get_rng_state(), "rows": rows, "epoch": epoch,
                           "train_seconds": train_seconds, "config_hash": chash,
                           "threads": torch.get_num_threads(), "world_size": d.world,
                           "init_sha256": init_sha}, ckpt_path)
    d.barrier()   # no rank runs ahead of the checkpoint it could be resumed from

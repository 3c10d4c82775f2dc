"""One run: a config in, a run folder out.

    python train.py CONFIG.yaml [KEY=VALUE ...] [--out DIR] [--results DIR]
    python train.py --help-config                              # every config key (schema.py)
    torchrun --nproc_per_node=N train.py CONFIG.yaml [...]     # one run across N processes

The run folder (default RESULTS/runs/<name>-<hash>/, RESULTS = scratch/ for ad-hoc runs;
sweeps pass results/) gets config.yaml, metrics.csv (one row per epoch), checkpoint.pt
(every epoch, for resume), and at the end model.pt, layers.csv, summary.json and a row in
RESULTS/runs.csv (paths.py owns these names, summaries.py the summary's fields). A finished
run with the same resolved config is skipped; an unfinished one resumes from its last epoch.
"""
import argparse
import contextlib
import math
import os
import random
import signal
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from sparsecs import checkpoint
from sparsecs import cli
from sparsecs import config as C
from sparsecs import data as D
from sparsecs import distributed as dist_
from sparsecs import final_eval   # at start (it imports exporting): a long run must not import a module edited while it trained
from sparsecs import fileio
from sparsecs import hardware
from sparsecs import metrics
from sparsecs import modelfile
from sparsecs import models
from sparsecs import paths
from sparsecs import schema
from sparsecs import summaries
from sparsecs.optim import get_method
from sparsecs.optim.schedules import WARMUP_KEY


RunError = cli.RunError   # one line and an exit code; train.RunError for tests and scripts


class HelpConfig(argparse.Action):
    """--help-config: every config key with its type, default, range and meaning; exit 0."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="list every config key and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(schema.help_text())
        parser.exit()


class StopAfter(Exception):
    """--stop-after N: N epochs trained in this invocation, checkpointed; not finished."""


def build_model(cfg, num_classes, device, input_shape=None):
    """The run's model, built for the data's input shape (default: its registry entry's), so
    its channels match and MACs are counted at that resolution."""
    shape = input_shape or D.get(cfg["dataset"]).input_shape
    model = models.get_model(cfg["model"], num_classes=num_classes, width=cfg["width"],
                             input_shape=shape).to(device)
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_method(cfg, model, steps_per_epoch):
    """The run's method on `model`, with the run-level keys that act through its schedule."""
    hp = dict(cfg["optim"])
    if "lr" in hp:   # a row's step-size scale (e.g. a deep, narrow net that needs a smaller step)
        hp["lr"] = hp["lr"] * cfg["lr_scale"]
    if cfg["warmup_epochs"]:
        hp[WARMUP_KEY] = cfg["warmup_epochs"]
    return get_method(cfg["method"])(model, hp, steps_per_epoch, cfg["epochs"])


def train_step(cfg, method, fwd, x, y, device, d, global_count):
    """One optimizer step on batch (x, y); returns (loss, logits). `global_count`: the step's
    images over all ranks (see distributed.py)."""
    method.zero_grad()
    with hardware.autocast(cfg, device):
        logits = fwd(x)
    loss = dist_.cross_entropy(logits.float(), y, cfg["label_smoothing"], d, global_count)
    loss.backward()
    method.step()
    return loss, logits


def load_weights(path, model, cfg, num_classes=None):
    """Load a model.pt (or a run folder's) into `model`; the architecture and the number of
    classes must match. Anything else is a RunError of one line (code 2)."""
    path = paths.model_path(path)
    if not os.path.exists(path):
        raise RunError(f"init_from: {path} not found (finish that run first)", 2)
    try:
        saved = modelfile.load_model_file(path)
    except paths.RunFolderError as e:
        raise RunError(f"init_from: {e}", 2) from None
    for key in ("model", "width"):
        if saved[key] != cfg[key]:
            raise RunError(f"init_from: {path} holds {key}={saved[key]!r}, this run has {cfg[key]!r}", 2)
    if num_classes is not None and saved["num_classes"] != num_classes:
        raise RunError(f"init_from: {path} holds a model for {saved['num_classes']} classes "
                       f"({saved['dataset']}), this run's data set {cfg['dataset']} has {num_classes}", 2)
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as e:
        raise RunError(f"init_from: {path} does not fit this run's model "
                       f"({' '.join(str(e).split())[:200]})", 2) from None
    return path


def _check_folder(cfg, out, chash):
    """A run folder that already holds another config's run is never mixed into this one."""
    cfg_path = paths.path(out, paths.CONFIG)
    if os.path.exists(cfg_path):
        other = C.resolve(C.load_yaml(cfg_path))
        if C.config_hash(other) != chash:
            raise RunError(f"{out} holds a run with another config; pick another --out or delete it", 2)


def _setup(cfg, d, say=lambda msg: None):
    """Seeds, the device, the data, the model (from init_from or random), the method, and the
    model the exported weights are evaluated on: (device, data, model, method, eval_model,
    init_path). A setting this machine cannot run is refused here (RunError, code 2), one it
    runs slowly said in one line."""
    seed = cfg["seed"]
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        device = dist_.device_for(d, hardware.pick_device(cfg["device"]))
    except paths.RunFolderError as e:
        raise RunError(str(e), 2) from None
    problem = hardware.device_problem(cfg, device)
    if problem:
        raise RunError(problem, 2)
    note = hardware.device_note(cfg, device)
    if note:
        say(f"{C.run_name(cfg)}: {note}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        hardware.keep_freed_memory()
    try:
        data = D.load(cfg["dataset"], cfg["data_dir"], device=device, download=cfg["download"],
                      workers=cfg["workers"])
    except D.DataError as e:
        raise RunError(str(e), 1) from None
    if cfg["train_subset"]:
        data.subset(cfg["train_subset"])
    model = build_model(cfg, data.num_classes, device, data.input_shape)
    init_path = load_weights(cfg["init_from"], model, cfg, data.num_classes) if cfg["init_from"] else ""
    if d.enabled and cfg["sync_bn"]:
        model = dist_.sync_batchnorm(model, device)
    method = build_method(cfg, model, data.steps_per_epoch(cfg["batch_size"]))
    eval_model = build_model(cfg, data.num_classes, device, data.input_shape)  # the exported weights, as eval.py sees them
    return device, data, model, method, eval_model, init_path


def train_one_epoch(cfg, method, model, fwd, data, epoch, device, d, bar):
    """One epoch of training steps; returns (mean training loss, training accuracy %) over
    every rank's images."""
    bs, n_train = cfg["batch_size"], data.steps_per_epoch(1)   # global batch, training images
    shard = dict(rank=d.rank, world=d.world) if d.enabled else {}
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    batches = data.train_batches(bs, cfg["seed"], epoch, augment=cfg["augment"],
                                 crop_padding=cfg["crop_padding"], flip=cfg["flip"],
                                 erase=cfg["erase"], channels_last=cfg["channels_last"], **shard)
    for i, (x, y) in enumerate(batches):
        global_count = min(bs, n_train - i * bs)   # this step's images over all ranks
        loss, logits = train_step(cfg, method, fwd, x, y, device, d, global_count)
        loss_sum += loss.detach() * (global_count / d.world if d.enabled else y.numel())
        correct += (logits.detach().argmax(1) == y).sum()
        n += y.numel()
        bar.update()
    if d.enabled:
        dist_.broadcast_buffers(model, d)
        total, hits, n = d.sum(loss_sum.item(), correct.item(), n)
        train_loss, hits = total / n, round(hits)
    else:
        train_loss, hits = loss_sum.item() / n, correct.item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return train_loss, 100.0 * hits / n


def evaluate(cfg, eval_model, data, device, d, predictions=None):
    """(test loss, test accuracy %) of `eval_model` over the whole test set (every rank's part);
    `predictions` (a list) receives this rank's predicted classes (see gather_predictions)."""
    shard = dict(rank=d.rank, world=d.world) if d.enabled else {}
    with hardware.autocast(cfg, device):
        return final_eval.evaluate_batches(eval_model, data.test_batches(cfg["eval_batch_size"],
                                                    channels_last=cfg["channels_last"], **shard), d,
                                           predictions)


def _non_finite(what, epoch, start, out):
    """The one error for a run whose numbers left the finite range (code 3)."""
    kept = f"kept the checkpoint of epoch {start}" if start else "no checkpoint yet"
    return RunError(f"{what} in epoch {epoch + 1} ({kept} in {out}); lower optim.lr or optim.lam", 3)


def train(cfg, out=None, results=paths.SCRATCH, quiet=False, dist=None, stop_after=0):
    """Run (or resume, or skip) one training run; returns its summary dict. One process per
    run folder: a second one exits at once (RunError, code 4) naming the holder. Under
    torchrun (`dist`, see distributed.py) every rank trains and rank 0 alone writes.
    stop_after > 0: stop (StopAfter) once that many epochs are trained and checkpointed."""
    d = dist or dist_.Dist()
    quiet = quiet or not d.main
    name = C.run_name(cfg)
    out = out or os.path.join(results, "runs", name)
    say = (lambda *a: None) if quiet else (lambda msg: tqdm.write(msg, file=sys.stderr))
    refused = d.broadcast(fileio.out_problem(out) if d.main else None)   # never a folder not ours
    if refused:
        raise RunError(refused, 2)
    summary = summaries.finished_summary(out, warn=say)
    if summary is not None and summary.get("config_hash") == C.config_hash(cfg):
        say(f"{name}: finished already, skipped")
        return summary
    with contextlib.ExitStack() as stack:
        held = None
        if d.main:
            try:
                stack.enter_context(fileio.run_lock(out))
                fileio.mark_run_folder(out)
            except fileio.LockedError as e:
                held = str(e)
        held = d.broadcast(held)   # every rank stops when rank 0 could not take the folder
        if held:
            raise RunError(held, 4)
        return _train(cfg, out, results, say, quiet, d, stop_after)


def _train(cfg, out, results, say, quiet, d, stop_after):
    name, chash = C.run_name(cfg), C.config_hash(cfg)
    _check_folder(cfg, out, chash)
    device, data, model, method, eval_model, init_path = _setup(cfg, d, say)
    # which weights it starts from: a dense run trained again (on another CPU, say) differs in
    # the last bits, so the summary says which version its followers started from
    init_sha = fileio.file_sha256(init_path) if init_path else ""
    rows, start, train_seconds, init_sha = checkpoint.resume(cfg, out, d, model, method, device, chash,
                                                            name, say, init_sha)

    fwd = dist_.wrap(model, d, device)
    fwd = torch.compile(fwd) if cfg["compile"] else fwd
    bs, n_train = cfg["batch_size"], data.steps_per_epoch(1)   # global batch, training images
    if d.enabled and (bs < d.world or 0 < n_train % bs < d.world):
        raise RunError(f"batch_size {bs} with {n_train} training images leaves a batch with fewer "
                       f"images than the {d.world} processes; change batch_size or train_subset", 2)
    steps = data.steps_per_epoch(bs)
    trained_now, epoch_secs = 0, 0.0
    bar = tqdm(total=cfg["epochs"] * steps, initial=start * steps, desc=name, leave=False,
               disable=True if quiet else None, dynamic_ncols=True)
    for epoch in range(start, cfg["epochs"]):
        t0 = time.perf_counter()
        train_loss, train_acc = train_one_epoch(cfg, method, model, fwd, data, epoch, device, d, bar)
        train_seconds += time.perf_counter() - t0
        if not math.isfinite(train_loss):
            bar.close()
            raise _non_finite(f"training loss became {train_loss}", epoch, start, out)
        extras = method.end_epoch(epoch)
        eval_model.load_state_dict(method.export())
        # the last epoch's predictions are the final ones when there is no bn_recal pass
        last_preds = [] if epoch == cfg["epochs"] - 1 else None
        test_loss, test_acc = evaluate(cfg, eval_model, data, device, d, last_preds)
        bad = [k for k, v in eval_model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad or not math.isfinite(test_loss):
            bar.close()
            raise _non_finite(f"{bad[0]} has non-finite values" if bad else f"test loss is {test_loss}",
                              epoch, start, out)
        sp, nnz = metrics.sparsity(eval_model)
        rows.append({"epoch": epoch + 1, "lr": method.lr, "train_loss": train_loss, "train_acc": train_acc,
                     "test_loss": test_loss, "test_acc": test_acc, "sparsity": sp, "nnz": nnz,
                     "seconds": time.perf_counter() - t0, **extras})
        checkpoint.save(out, d, rows, model, method, epoch, train_seconds, chash, init_sha)
        start = epoch + 1
        trained_now += 1
        # ETA: the mean epoch (training + evaluation) of this process times the epochs left
        epoch_secs += rows[-1]["seconds"]
        eta = cli.duration(epoch_secs / trained_now * (cfg["epochs"] - start))
        say(f"{name} epoch {epoch + 1}/{cfg['epochs']}: train loss {train_loss:.4f} "
            f"acc {train_acc:.2f} | test loss {test_loss:.4f} acc {test_acc:.2f} | "
            f"sparsity {sp:.4f} | {rows[-1]['seconds']:.1f}s, ETA {eta}")
        if stop_after and trained_now >= stop_after and start < cfg["epochs"]:
            bar.close()
            raise StopAfter(f"{name}: stopped after {trained_now} epoch(s) as asked (--stop-after), "
                            f"{start}/{cfg['epochs']} done: run the same command to resume")
    bar.close()
    return _finish(cfg, out, results, say, d, data, method, eval_model, rows, train_seconds, init_path,
                   init_sha, last_preds if trained_now else None)


def _finish(cfg, out, results, say, d, data, method, eval_model, rows, train_seconds, init_path,
            init_sha="", last_preds=None):
    """The final evaluation (BatchNorm statistics recomputed for every method alike, bn_recal;
    the last epoch's numbers with the running statistics stay in metrics.csv and the summary),
    then the run's files (final_eval.write_run, rank 0): predictions.npy holds the final
    evaluation's predicted classes, from the same pass. `last_preds`: the last epoch's
    predicted classes, the final ones without bn_recal (None: that epoch was trained by an
    earlier process, so they are computed again)."""
    device = next(eval_model.parameters()).device
    state = method.export()
    eval_model.load_state_dict(state)
    last = rows[-1]
    recal = final_eval.recalibrate_bn(eval_model, data, cfg, cfg["bn_recal"])
    preds = []
    if recal:
        final_loss, final_acc = evaluate(cfg, eval_model, data, device, d, preds)
        state = eval_model.state_dict()
    else:
        final_loss, final_acc = last["test_loss"], last["test_acc"]
        if last_preds is None:   # resumed after its last epoch: the one extra pass
            evaluate(cfg, eval_model, data, device, d, preds)
        else:
            preds = last_preds
    predicted = final_eval.gather_predictions(preds, d)
    fields = {"test_acc": final_acc, "test_loss": final_loss, "bn_recal_images": recal,
              "train_acc_final": final_eval.final_train_accuracy(cfg, eval_model, data, device, d),
              "train_seconds": train_seconds, "init_from": init_path, "init_sha256": init_sha,
              "world_size": d.world}
    summary = final_eval.write_run(cfg, out, results, say, data, method, eval_model, state, rows,
                                   predicted, fields) if d.main else None
    d.barrier()   # rank 0 writes the run's files; no rank ends before they are whole
    if summary is not None:
        say(f"{C.run_name(cfg)}: test acc {summary['test_acc']:.2f}%, sparsity {summary['sparsity']:.4f}, "
            f"{summary['train_seconds']:.0f}s -> {out}")
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="dotted KEY=VALUE, e.g. epochs=2 optim.lam=1e-5")
    p.add_argument("--out", help="run folder (default: RESULTS/runs/<run name>)")
    p.add_argument("--results", default=paths.SCRATCH,
                   help=f"where runs.csv and runs/ live (default: {paths.SCRATCH}/, git-ignored; "
                        f"sweeps write {paths.RESULTS}/)")
    p.add_argument("--help-config", action=HelpConfig)
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--stop-after", type=int, default=0, metavar="N",
                   help="train at most N epochs in this invocation, then stop at that checkpoint "
                        "(exit 75; the same command resumes): for job slots shorter than a run")
    args = p.parse_args(argv)
    if args.stop_after < 0:
        p.error("--stop-after must be >= 0 (0: train to the end)")
    # SIGTERM (kill, SLURM preemption, torchrun passing it on) ends like Ctrl-C: at the last
    # finished epoch's checkpoint, with one line
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    # the log this output goes to (a sweep's per-run log) on a full disk: named in the error
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = fileio.NamedOutput(sys.stdout, "<stdout>"), fileio.NamedOutput(sys.stderr, "<stderr>")
    try:
        return _main(args)
    finally:
        sys.stdout, sys.stderr = streams


def _main(args):
    d = dist_.Dist()

    def tell(msg):   # one line, from rank 0 only: every rank meets the same error
        if d.main:
            print(msg, file=sys.stderr)
    try:
        d = dist_.from_env()
        cfg = C.build(args.config, args.overrides)
        train(cfg, out=args.out, results=args.results, quiet=args.quiet, dist=d,
              stop_after=args.stop_after)
    except C.ConfigError as e:
        tell(f"config error: {e}")
        return 2
    except RunError as e:
        tell(f"error: {e}")
        return e.code
    except StopAfter as e:
        tell(str(e))
        return 75
    except paths.RunFolderError as e:
        tell(f"error: {e}")
        return 1
    except OSError as e:   # disk full, read-only folder, --out that is a file, ...
        with contextlib.suppress(OSError):   # (the log itself may be what is full)
            print(f"error: {fileio.os_error_text(e)} (nothing written is half-written; fix it and rerun)",
                  file=sys.stderr)
        return 1
    except D.DataError as e:   # an image a data-loader worker could not read, ...
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        tell("interrupted; the last finished epoch is checkpointed: run the same command to resume")
        return 130
    except RuntimeError as e:
        lost = dist_.lost_peer(e, d)
        if lost is None:
            raise
        print(f"error: {lost}", file=sys.stderr)   # every survivor: rank 0 may be the dead one
        return 1
    finally:
        dist_.close(d)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "train.py"))

"""After the last epoch: what train.py's final evaluation computes and what it writes.

BatchNorm statistics recomputed on fixed training images for every method alike
(recalibrate_bn), the final weights' accuracy on training images (final_train_accuracy: what
the collapse rule reads), the slim export's MACs (structural_macs), every rank's predictions
joined (gather_predictions), and rank 0's files of a finished run (write_run): predictions.npy,
the labels, model.pt, layers.csv, the index row and summary.json, last.
"""
import itertools
import math
import os

import numpy as np
import torch

from sparsecs import config as C
from sparsecs import criteria
from sparsecs import fileio
from sparsecs import hardware
from sparsecs import metrics
from sparsecs import modelfile
from sparsecs import paths
from sparsecs import runindex
from sparsecs import summaries
# at start: a long run must not import a module edited while it trained
from sparsecs.exporting.slim import slim_model


def evaluate_batches(model, batches, d, predictions=None):
    """(mean loss, accuracy %) over the test set; under DDP each rank has a part of it.
    `predictions` (a list) receives this rank's predicted classes batch by batch."""
    if not d.enabled:
        return metrics.evaluate(model, batches, predictions)
    n = 0

    def counted():
        nonlocal n
        for x, y in batches:
            n += y.numel()
            yield x, y
    loss, acc = metrics.evaluate(model, counted(), predictions)
    loss_sum, correct, total = d.sum(loss * n, acc * n / 100.0, n)
    return loss_sum / total, 100.0 * round(correct) / total


@torch.no_grad()
def recalibrate_bn(model, data, cfg, n_images):
    """Recompute every BatchNorm's running mean and variance on the first `n_images` training
    images of a fixed order (no augmentation), as an average over them (momentum None), with
    the weights as they are: the final evaluation then does not depend on how far each
    method's statistics lag behind weights that moved (or were pruned) late in training.
    Every rank sees the same images (no sharding), so all ranks compute the same statistics.
    Returns the number of images used (0 when the model has no BatchNorm)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or n_images <= 0:
        return 0
    saved = [(m, m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None   # cumulative average over the batches below
    was_training = model.training
    model.train()
    device = next(model.parameters()).device
    seen = 0
    try:
        batches = data.train_batches(cfg["eval_batch_size"], cfg["seed"], epoch=cfg["epochs"],
                                     augment=False, channels_last=cfg["channels_last"])
        for x, _ in batches:
            x = x[: n_images - seen]
            with hardware.autocast(cfg, device):
                model(x)
            seen += len(x)
            if seen >= n_images:
                break
    finally:
        for m, mom in saved:
            m.momentum = mom
        model.train(was_training)
    return seen


def final_train_accuracy(cfg, eval_model, data, device, d, n_images=criteria.FINAL_TRAIN_IMAGES):
    """Accuracy % of the final weights (eval mode, after bn_recal) on the first `n_images`
    training images of bn_recal's fixed order, without augmentation (whole batches of
    eval_batch_size; every rank its part of each): what the collapse rule reads. The last
    epoch's train_acc averages over weights that were still changing, and a threshold that
    grows to the last step can break a model that average calls fine."""
    bs = cfg["eval_batch_size"]
    shard = dict(rank=d.rank, world=d.world) if d.enabled else {}
    batches = data.train_batches(bs, cfg["seed"], epoch=cfg["epochs"], augment=False,
                                 channels_last=cfg["channels_last"], **shard)
    with hardware.autocast(cfg, device):
        return evaluate_batches(eval_model, itertools.islice(batches, math.ceil(n_images / bs)), d)[1]


def structural_macs(model):
    """Multiply-adds of one input once every all-zero output filter and the input channels it
    feeds are removed: the MACs of the slim export (export.slim_model), which is what a
    structured method really saves. NaN when the model cannot be slimmed (said by the caller).

    Counted on every conv, linear and matrix product the slim graph runs (metrics.graph_macs),
    not on its nn.Conv2d / nn.Linear modules alone: what removed channels passed on to padded
    convs is added back as conv(ones, K) (exporting/slim.py), a functional conv the module
    hooks never saw (issue 33: 1,313,440 by the hooks against 1,435,552 by torch's
    FlopCounterMode on one filter-pruning run). Those convs run on every forward of the
    exported file, so they are part of its cost; the export could precompute their constant
    output instead, at the price of a [C, H, W] map in the file, and then this count would
    drop with it. tests/test_structural_macs.py holds it to FlopCounterMode within 1%."""
    try:
        slim = slim_model(model)
    except Exception:   # a graph slim export does not handle: no structural count
        return math.nan
    return float(metrics.graph_macs(slim))


def gather_predictions(parts, d):
    """The predicted class of every test image in the test set's order, from each rank's
    batches (`parts`): under DDP rank r holds the r-th contiguous part (data.shard), so the
    parts joined in rank order are the whole set. Every rank must call it (a collective)."""
    mine = torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.int64)
    return np.concatenate(d.gather(mine))


def epochs_before(init_path):
    """Training epochs already spent on the weights a run starts from (0 for random init):
    that run's total_epochs from its summary, so budgets add up along init_from chains."""
    if not init_path:
        return 0
    s = os.path.join(os.path.dirname(init_path), paths.SUMMARY)
    if not os.path.exists(s):
        return 0
    prev = summaries.read_summary(os.path.dirname(init_path))
    return int(prev.get("total_epochs", prev.get("epochs", 0)))


def write_run(cfg, out, results, say, data, method, eval_model, state, rows, predicted, fields):
    """Rank 0's files of a finished run, summary.json last; returns the summary. `state`: the
    final weights; `predicted`: gather_predictions' classes; `fields`: the summary's values
    only the training loop knows (test_acc, test_loss, bn_recal_images, train_acc_final,
    train_seconds, init_from, init_sha256, world_size). The last epoch's numbers with the
    running statistics (`rows`) stay in the summary beside the final ones."""
    name, chash, last = C.run_name(cfg), C.config_hash(cfg), rows[-1]
    fileio.save_predictions(out, predicted, data.num_classes)
    fileio.save_labels(results, cfg["dataset"], data.test_labels(), data.num_classes)
    model_bytes, model_sha256 = fileio.save_torch_sha(modelfile.model_file(cfg, data.num_classes, state),
                                                      paths.path(out, paths.MODEL))
    fileio.save_csv(metrics.layer_table(eval_model), paths.path(out, paths.LAYERS))
    macs_structural = structural_macs(eval_model)
    if not math.isfinite(macs_structural):
        say(f"{name}: note: slim export could not trace this model: macs_structural is NaN")
    summary = {"run": name, "dataset": cfg["dataset"], "model": cfg["model"], "width": cfg["width"],
               "method": cfg["method"], "mode": method.mode,
               "method_revision": C.method_revision(cfg["method"], cfg["optim"]),
               "seed": cfg["seed"], "epochs": cfg["epochs"],
               "total_epochs": cfg["epochs"] + epochs_before(fields["init_from"]),
               "lam": 0.0, **method.summary(), "test_acc": fields["test_acc"], "test_loss": fields["test_loss"],
               "test_acc_running_bn": last["test_acc"], "test_loss_running_bn": last["test_loss"],
               "bn_recal_images": fields["bn_recal_images"], "train_acc": last["train_acc"],
               "train_loss": last["train_loss"], "train_acc_final": fields["train_acc_final"],
               **metrics.counts(eval_model), "macs_structural": macs_structural,
               "train_seconds": fields["train_seconds"], "config_hash": chash, "init_from": fields["init_from"],
               "init_sha256": fields["init_sha256"],
               **cfg["identity"], **hardware.environment(), "world_size": fields["world_size"],
               "model_bytes": model_bytes, "model_sha256": model_sha256}
    # The index row first, the summary last: summary.json is what makes the run finished, so
    # a row that could not be written (disk full, damaged runs.csv) is retried by a rerun.
    runindex.upsert_row(os.path.join(results, paths.INDEX), summary)
    fileio.save_json(summary, paths.path(out, paths.SUMMARY))
    return summary

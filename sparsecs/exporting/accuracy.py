"""The slim export's accuracy on its run's test set, measured as the run's final accuracy was,
against the run's own predictions.

train.py's final evaluation (train.evaluate -> metrics.evaluate): the whole test set in batches
of eval_batch_size, the run's precision (bf16: autocast) and memory format, the argmax of the
float logits. Here the slim model and the dense model.pt are evaluated that way; the slim
model's predictions are compared image by image with the run's predictions.npy (without one:
with dense's, re-evaluated), and its accuracy with the run's test_acc.

The slim model computes the same function with fewer, reordered sums and folded constants, so
its logits differ from dense's by rounding only, and a prediction may change only where the
dense model's two top logits are that close: a tie. A differing prediction counts as a tie
where dense's top-two margin on that image is at most MARGIN_RTOL[precision] x max(1, max
|logit|): fp32 1e-4 (export's own logit check); bf16 2^-5 (bf16 keeps 8 significant bits, a
relative step of 2^-8, rounded again after every layer). Any differing prediction that is not
a tie, or an accuracy further from the run's than its ties allow, is ExportError naming the run.
"""
import os

import numpy as np
import torch

from sparsecs import config as C
from sparsecs import data as D
from sparsecs import hardware
from sparsecs import paths

from .files import ExportError

MARGIN_RTOL = {"fp32": 1e-4, "bf16": 2 ** -5}


def run_config(run_dir, saved):
    """The run's resolved config (its config.yaml), else the defaults for the saved model."""
    cfg_path = paths.path(run_dir, paths.CONFIG)
    if os.path.exists(cfg_path):
        return C.resolve(C.load_yaml(cfg_path))
    return dict(C.DEFAULTS, dataset=saved["dataset"], model=saved["model"], width=saved["width"])


@torch.no_grad()
def test_logits(model, data, cfg, most=None):
    """(float logits [N, classes], labels [N]) of `model` on the whole test set, evaluated as
    train.evaluate does (the run's precision, memory format and eval batch size); `most`: stop
    after the batch that reaches that many images (the same batches as the run's, so the same
    numbers, on fewer of them)."""
    model = model.eval()
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    outs, labels = [], []
    with hardware.autocast(cfg, torch.device("cpu")):
        for x, y in data.test_batches(cfg["eval_batch_size"], channels_last=cfg["channels_last"]):
            outs.append(model(x).float())
            labels.append(y)
            if most is not None and sum(len(t) for t in labels) >= most:
                break
    return torch.cat(outs), torch.cat(labels)


def ties(logits, rtol):
    """Per image: whether the top-two margin of `logits` is at most rtol x max(1, max |logit|)."""
    top = logits.topk(2, dim=1).values
    scale = logits.abs().max(dim=1).values.clamp(min=1.0)
    return (top[:, 0] - top[:, 1]) <= rtol * scale


def recorded_predictions(run_dir, n):
    """The run's predictions.npy (its final evaluation's classes), or None (older runs, or not
    one per test image)."""
    file = paths.path(run_dir, paths.PREDICTIONS)
    if not os.path.exists(file):
        return None
    pred = np.load(file, allow_pickle=False)
    return torch.from_numpy(pred.astype(np.int64)) if pred.shape == (n,) else None


def slim_accuracy(run_dir, saved, dense, slim, test_acc, data_dir=None):
    """The facts of the slim model's test accuracy against the run's (`test_acc`, its summary);
    ExportError, one line naming the run, where it is not the run's up to ties."""
    cfg = run_config(run_dir, saved)
    data = D.load(saved["dataset"], data_dir or cfg["data_dir"], device="cpu", download=False)
    dense_logits, y = test_logits(dense, data, cfg)
    slim_logits, _ = test_logits(slim, data, cfg)
    n = len(y)
    recorded = recorded_predictions(run_dir, n)
    ref = recorded if recorded is not None else dense_logits.argmax(1)
    pred = slim_logits.argmax(1)
    rtol = MARGIN_RTOL[cfg["precision"]]
    differ = pred != ref
    tied = differ & ties(dense_logits, rtol)
    acc = 100.0 * int((pred == y).sum()) / n
    facts = {"test_acc": test_acc, "test_acc_export": acc,
             "test_acc_dense": 100.0 * int((dense_logits.argmax(1) == y).sum()) / n,
             "test_images_eval": n, "precision": cfg["precision"], "compared_with":
             "predictions.npy" if recorded is not None else "model.pt re-evaluated",
             "differing_predictions": int(differ.sum()), "tied_predictions": int(tied.sum()),
             "margin_rtol": rtol}
    off = int(differ.sum()) - int(tied.sum())
    if off or abs(acc - test_acc) > 100.0 * int(tied.sum()) / n + 1e-6:
        raise ExportError(
            f"{os.path.basename(os.path.abspath(run_dir))}: slim export's test accuracy {acc:.2f}% is not "
            f"the run's {test_acc:.2f}% (dense model.pt {facts['test_acc_dense']:.2f}%): "
            f"{int(differ.sum())} of {n} predictions differ from the run's, {off} of them not at a tie "
            f"(dense top-two margin > {rtol:g} of the logit scale); nothing written")
    return facts

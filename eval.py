"""Recompute accuracy, sparsity, FLOPs and the per-layer table from saved weights.

    python eval.py RUN_DIR_or_model.pt_or_CSR_EXPORT [--json] [--layers] [--data-dir DIR]

Numbers come from the weights, never from the run's logs. A csr export (export.py --format
csr, e.g. a committed results/fashion/weights/<run>/model.csr.pt) is read back exactly,
after the check against its sha256; without a run's config.yaml beside it, the defaults'
precision and memory format are used. A committed run folder (results/runs/<run>: no model.pt
in git) is read from its committed export (results/<profile>/weights/<run>/model.csr.pt),
checked against its sha256 and the run's summary, and a line on stderr says so.
"""
import argparse
import os
import sys

import torch

from sparsecs import cli
from sparsecs import config as C
from sparsecs import data as D
from sparsecs import fileio
from sparsecs import hardware
from sparsecs import metrics
from sparsecs import paths
from sparsecs.exporting.csr import ExportError, is_csr_export, load_any
from sparsecs.exporting.files import committed_export


def evaluate_file(path, data_dir=None, device="auto"):
    run_dir = path if os.path.isdir(path) else os.path.dirname(path)
    model_path = path if is_csr_export(path) else committed_export(path) or paths.model_path(path)
    dev = hardware.pick_device(device)
    saved, model = load_any(path, dev)
    cfg_path = paths.path(run_dir, paths.CONFIG)
    # The run's own precision and memory format, so that the numbers match its summary.
    cfg = C.resolve(C.load_yaml(cfg_path)) if os.path.exists(cfg_path) else dict(
        C.DEFAULTS, dataset=saved["dataset"], model=saved["model"], width=saved["width"])
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    data = D.load(saved["dataset"], data_dir or cfg["data_dir"], device=dev, download=False,
                  workers=cfg["workers"])
    model.input_shape = tuple(data.input_shape)   # FLOPs at the data's resolution, as train.py
    with hardware.autocast(cfg, dev):
        loss, acc = metrics.evaluate(model, data.test_batches(cfg["eval_batch_size"],
                                                              channels_last=cfg["channels_last"]))
    return {"model_file": model_path, "dataset": saved["dataset"], "model": saved["model"],
            "test_acc": acc, "test_loss": loss, **metrics.counts(model)}, metrics.layer_table(model)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path", help="a run folder, a model.pt or a csr export")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--layers", action="store_true", help="also print the per-layer table")
    p.add_argument("--data-dir", help="where the data set lives (default: the run's data_dir)")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if not os.path.exists(args.path):   # a usage error, exit 2 as train.py's missing config
        print(f"error: {args.path}: no such run folder or model file", file=sys.stderr)
        return 2
    try:
        result, layers = evaluate_file(args.path, args.data_dir, args.device)
    except C.ConfigError as e:   # exit codes as every tool's (README)
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (paths.RunFolderError, D.DataError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(fileio.json_text({**result, **({"layers": layers} if args.layers else {})}))
        return 0
    print(f"{result['model']} on {result['dataset']}: test acc {result['test_acc']:.2f}% "
          f"(loss {result['test_loss']:.4f})")
    print(f"sparsity {result['sparsity']:.4f} of {result['n_weights']:,} conv/linear weights "
          f"({result['nnz']:,} nonzero), {result['sparsity_all']:.4f} of all {result['n_params']:,} "
          f"parameters; FLOPs {result['flops_nonzero']:,.0f} of {result['flops_dense']:,} "
          f"({result['flops_dense'] / max(result['flops_nonzero'], 1):.1f}x fewer)")
    if args.layers:
        import pandas as pd
        print(pd.DataFrame(layers)[["layer", "shape", "nnz", "sparsity", "zero_kernels",
                                    "zero_filters", "flops_nonzero"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "eval.py"))

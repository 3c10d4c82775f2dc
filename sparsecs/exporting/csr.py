"""The weights-file exports: csr (the trained weights, conv and linear weights stored sparse)
and dense (the state dict as model.pt holds it: the size baseline). Both load with
torch.load(weights_only=True) and rebuild the model with this repository's models/.

csr: per conv / linear weight the smaller of CSR (row pointers + column indices + nonzero
values) or a bitmask + nonzero values; every other tensor dense; all values of a dtype in one
flat buffer (fewer, smaller records in the file). read_csr(file) gives back what model.pt
holds (model, width, num_classes, dataset, state_dict), bit for bit; load_csr(file) the model.
"""
import math
import os
import warnings

import numpy as np
import torch

from sparsecs import modelfile
from sparsecs import paths
from sparsecs import summaries

from .files import (ExportError, committed_export, export_problem, name_of, open_export, recorded_sha,
                    with_content_sha)

CSR_FORMAT = "sparse-weights-v1"
HEADER = ("model", "width", "num_classes", "dataset")     # what rebuilds the model (models.from_saved)


def _encode(state_dict):
    """Conv/linear weights (>= 2-D floats) as CSR or bitmask + values, whichever is smaller;
    other float tensors dense; all values of a dtype in one flat buffer (fewer, smaller
    records in the file). Integer tensors (BatchNorm's step count) go in as they are."""
    meta, vals, cols, crows, bits, others = [], {}, [], [], [], {}
    ncols_max = max([t[0].numel() for t in state_dict.values() if t.dim() >= 2] or [1])
    col_dtype = torch.int16 if ncols_max < 2 ** 15 else torch.int32
    for name, t in state_dict.items():
        t = t.detach().cpu()
        if not t.is_floating_point():
            others[name] = t
            continue
        key = str(t.dtype).replace("torch.", "")
        buf = vals.setdefault(key, [])
        entry = {"name": name, "shape": list(t.shape), "dtype": key}
        if t.dim() >= 2:
            w = t.reshape(t.shape[0], -1)
            nz = w != 0
            nnz = int(nz.sum())
            item = t.element_size()
            csr_bytes = nnz * (item + col_dtype.itemsize) + (w.shape[0] + 1) * 4
            mask_bytes = math.ceil(w.numel() / 8) + nnz * item
            if csr_bytes <= mask_bytes:
                with warnings.catch_warnings():     # "sparse CSR support is in beta"
                    warnings.simplefilter("ignore", UserWarning)
                    c = w.to_sparse_csr()
                entry.update(kind="csr", nnz=nnz)
                crows.append(c.crow_indices().to(torch.int32))
                cols.append(c.col_indices().to(col_dtype))
                buf.append(c.values())
            else:
                entry.update(kind="mask", nnz=nnz, nbits=w.numel())
                bits.append(torch.from_numpy(np.packbits(nz.flatten().numpy())))
                buf.append(w[nz])
        else:
            entry.update(kind="dense", nnz=t.numel())
            buf.append(t.flatten())
        meta.append(entry)
    cat = lambda xs, dt: torch.cat(xs) if xs else torch.zeros(0, dtype=dt)  # noqa: E731
    return {"tensors": meta, "values": {k: torch.cat(v) for k, v in vals.items()},
            "crow": cat(crows, torch.int32), "col": cat(cols, col_dtype),
            "bits": cat(bits, torch.uint8), "others": others}


def _decode(enc):
    sd, pos = {}, {k: 0 for k in enc["values"]}
    crow_at = col_at = bit_at = 0
    for e in enc["tensors"]:
        vals = enc["values"][e["dtype"]]
        shape = e["shape"]
        p, n = pos[e["dtype"]], e["nnz"]
        v = vals[p:p + n]
        pos[e["dtype"]] = p + n
        if e["kind"] == "dense":
            t = v.reshape(shape).clone()
        elif e["kind"] == "csr":
            rows, ncols = shape[0], math.prod(shape[1:])
            crow = enc["crow"][crow_at:crow_at + rows + 1].long()
            col = enc["col"][col_at:col_at + n].long()
            crow_at, col_at = crow_at + rows + 1, col_at + n
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                # invariants checked: the indices come from a file
                t = torch.sparse_csr_tensor(crow, col, v, size=(rows, ncols),
                                            check_invariants=True).to_dense().reshape(shape)
        else:
            nbytes = math.ceil(e["nbits"] / 8)
            mask = np.unpackbits(enc["bits"][bit_at:bit_at + nbytes].numpy(), count=e["nbits"])
            bit_at += nbytes
            t = torch.zeros(e["nbits"], dtype=vals.dtype)
            t[torch.from_numpy(mask.astype(bool))] = v
            t = t.reshape(shape)
        sd[e["name"]] = t
    sd.update(enc["others"])
    return sd


def csr_file(saved):
    """What a csr export holds, from what model.pt holds (modelfile.model_file), its checksum inside."""
    return with_content_sha({"format": CSR_FORMAT, **{k: saved[k] for k in HEADER},
                             "weights": _encode(saved["state_dict"]), "order": list(saved["state_dict"])})


def dense_file(saved):
    """What a dense export holds: model.pt's header and state dict, its checksum inside."""
    return with_content_sha({**{k: saved[k] for k in HEADER}, "state_dict": dict(saved["state_dict"])})


def read_csr(file):
    """What model.pt holds (model, width, num_classes, dataset, state_dict in the saved
    order), rebuilt exactly from a csr export (a path, checked against its sha256, or a file
    object). The dense state dict without building a model: for other inference code."""
    obj = open_export(file)
    if not isinstance(obj, dict) or obj.get("format") != CSR_FORMAT:
        raise ExportError(f"{name_of(file)}: not a csr export (no format {CSR_FORMAT!r})")
    try:
        sd = _decode(obj["weights"])
        state_dict = {k: sd[k] for k in obj["order"]}
        return {**{k: obj[k] for k in HEADER}, "state_dict": state_dict}
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ExportError(f"{name_of(file)}: damaged csr export ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:120]})") from None


def model_from(saved, device="cpu", file="export"):
    """The model (models/) of a saved header + state dict, in eval mode on `device`."""
    from sparsecs import models

    try:
        model = models.from_saved(saved)
        model.load_state_dict(saved["state_dict"])
    except Exception as e:      # another version's file: one line, not a traceback
        raise ExportError(f"{file}: does not fit a model of this version "
                          f"({' '.join(str(e).split())[:160]})") from None
    return model.to(device).eval()


def load_csr(file, device="cpu"):
    """The dense model (models/), weights rebuilt exactly from a csr export, eval mode."""
    return model_from(read_csr(file), device, name_of(file))


def load_dense(file, device="cpu"):
    """The model of a dense export (a path, checked against its sha256, or a file object),
    eval mode."""
    saved = open_export(file)
    if not isinstance(saved, dict) or not all(k in saved for k in HEADER + ("state_dict",)):
        raise ExportError(f"{name_of(file)}: not a dense export (no {', '.join(HEADER)}, state_dict)")
    return model_from(saved, device, name_of(file))


def is_csr_export(path):
    """Whether `path` is a file holding a csr export (a run folder or a model.pt is not). A file
    that no longer matches the sha256 recorded beside it is ExportError, before it is read."""
    if not os.path.isfile(path):
        return False
    # a record beside it: checked first (a damaged file may not even load); without one only a
    # csr export is checked (the checksum inside it), not a model.pt
    problem = export_problem(path) if recorded_sha(path) is not None else None
    if problem:
        raise ExportError(f"{problem}; export the run again")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:        # not plain tensors: not a csr export (the caller says what it is)
        return False
    csr = isinstance(obj, dict) and obj.get("format") == CSR_FORMAT
    problem = export_problem(path) if csr else None
    if problem:
        raise ExportError(f"{problem}; export the run again")
    return csr


def _not_the_run(summary, saved, model):
    """Why the model read from a committed export is not the run `summary` describes, or None:
    its model, width and data set, and its parameter and nonzero counts (summary's n_params
    and sparsity_all, which train.py counted on the same weights)."""
    for k in ("model", "width", "dataset"):
        if k in summary and saved[k] != summary[k]:
            return f"its {k} is {saved[k]!r}, the run's {summary[k]!r}"
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    nnz = sum(int(torch.count_nonzero(p)) for p in params)
    if "n_params" in summary and n != summary["n_params"]:
        return f"{n:,} parameters, the run's {summary['n_params']:,}"
    if "sparsity_all" in summary and abs(nnz - (1 - summary["sparsity_all"]) * n) > 0.5:
        return f"{nnz:,} nonzero parameters, the run's {round((1 - summary['sparsity_all']) * n):,}"
    return None


def load_committed(run_dir, device="cpu", say=None):
    """(what model.pt holds, the model, the export file) of a committed run: folder `run_dir`
    without model.pt, its results complete (summaries.complete_summary), whose committed export
    (files.committed_export) matches its sha256 record and rebuilds the run its summary
    describes; `say` gets one line that the export is used. None where the folder has no
    committed export or its results are incomplete (the caller says "not finished");
    ExportError (one line) for an export that fails a check."""
    file = committed_export(run_dir)
    if file is None:
        return None
    try:
        summary = summaries.complete_summary(run_dir)
    except (OSError, paths.RunFolderError):
        return None
    if summary is None:
        return None
    if recorded_sha(file) is None:    # committed with its sha256 record beside it: nothing less
        raise ExportError(f"{file}: the committed export of {run_dir} has no "
                          f"{os.path.basename(file)}.sha256 beside it; restore it (git checkout)")
    saved = read_csr(file)            # checked against that record before it is read
    model = model_from(saved, device, file)
    problem = _not_the_run(summary, saved, model)
    if problem:
        raise ExportError(f"{file}: not the export of run {run_dir} ({problem}); restore it (git checkout)")
    (say or _stderr)(f"note: {run_dir} has no model.pt (not committed): using its committed export "
                     f"{file} (sha256 checked)")
    return saved, model, file


def _stderr(line):
    import sys
    print(line, file=sys.stderr)


def load_any(path, device="cpu", say=None):
    """(what model.pt holds, the model in eval mode) of a finished run folder, a model.pt or a
    csr export file, so that eval, the benchmarks and torch.hub take a committed export where
    no model.pt was committed; a committed run folder (no model.pt) is read from its committed
    export (load_committed; `say` gets the line that says so). Run folders and model.pt:
    paths.RunFolderError; exports: ExportError (both one line)."""
    if is_csr_export(path):
        saved = read_csr(path)
        return saved, model_from(saved, device, path)
    committed = load_committed(path, device, say)
    if committed is not None:
        return committed[:2]
    return modelfile.load_model_file(path), modelfile.load_model(path, device)

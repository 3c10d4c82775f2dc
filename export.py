"""Export a finished run's model in one of three forms, each checked on export.

    python export.py RUN_DIR|CSR_EXPORT --format slim|csr|dense [--out FILE] [--batch N] [--data-dir DIR]
                     [--test-set]
    python export.py --check FILE [FILE ...]
    python export.py --profile PROFILE [--results DIR]

The source is a finished run folder, or a csr export of one in its place (e.g. the committed
results/fashion/weights/<run>/model.csr.pt). A committed run folder (results/runs/<run>: its
model.pt is not in git) is read from its committed export, checked against its sha256 and the
run's summary; one line says so. Read from an export, the new file and its export.json go to
--out's folder, by default scratch/exports/<run>/ (committed folders are never written to).

slim   Conv filters whose weights are all zero, and channels that no later layer reads, are
       physically removed and what they still passed on is folded into the layers that read
       them, so the logits do not change (exporting/slim.py says how). The file is the pruned
       network as a torch.fx GraphModule saved whole with torch.save: only torch.nn layers and
       generated code, so it loads without this repository (`load_slim(file)`, or
       torch.load(file, weights_only=False): a pickle, load only files you trust). It expects
       inputs of the run's data set's shape.
csr    The trained weights, conv and linear weights stored sparse (per tensor the smaller of CSR
       or a bitmask + nonzero values), every other tensor dense (exporting/csr.py).
       `load_csr(file)` rebuilds the dense model bit for bit, `read_csr(file)` its state dict
       (both need this repository's models/). Loads with torch.load(weights_only=True).
dense  The state dict with the model's name and width (what model.pt holds): the size baseline.
       `load_dense(file)`.

Every export is checked: the file is read back and its logits on a batch of the run's test
data must equal the original model's (to 1e-4 of the logit scale). The file size is printed
next to the dense size, and the facts go to RUN_DIR/export.json, one key per format. Each file
is written with FILE.sha256 beside it (`sha256sum -c` reads it); every loader above, and
`--check`, compares the file with it before reading, so an export altered even at the same
size is refused; a copy without FILE.sha256 is checked against the checksum stored inside it
(csr, dense). An existing file at --out that is not an earlier export is replaced only with
--force, a run folder's own files never. A failed check or bad input ends with one line on stderr and a non-zero exit
(2: usage, 1: the run or a file); nothing is written.

--profile: the csr export of every run at the profile's `export_levels: [0.98, 0.99]` (the
calibrated point of each λ search at those targets, a grid's runs at those targets; every
seed), into RESULTS/<profile>/weights/<run>/ with model.csr.pt.sha256 and export.json beside
it, so that they can be committed; the run folders are not written to. And the slim export of
every structured run at the profile's `export_macs_levels: [0.5, 0.3, 0.2]` (every seed of the
calibrated point of each kernel / channel mode entry searched on target_metric
macs_structural_fraction at that level: the points the report's structured claim compares),
model.slim.pt beside them, with --test-set's check; export.json records its MACs and
parameters against dense and its test accuracy beside the run's. Runs without model.pt here
(committed, trained elsewhere) are named on stderr and skipped.

--test-set (slim, a run folder): the export evaluated on the whole test set as the run's final
accuracy was (exporting/accuracy.py): its predictions must be the run's (predictions.npy) but
for ties of the dense logits (top-two margin within float rounding), its accuracy the run's
test_acc; test_acc_export and the differing predictions go to export.json. Otherwise one line
naming the run, exit 1, nothing written.
"""
import argparse
import io
import os
import re
import sys

import torch

from sparsecs import cli
from sparsecs import fileio
from sparsecs import metrics
from sparsecs import modelfile
from sparsecs import paths
from sparsecs import summaries
from sparsecs.exporting.accuracy import slim_accuracy
from sparsecs.exporting.csr import (CSR_FORMAT, csr_file, dense_file, is_csr_export, load_any, load_committed,
                                    load_csr, load_dense, read_csr)
from sparsecs.exporting.files import (EXPORT_JSON, RUN_FILES, SHA_SUFFIX, ExportError, export_problem,
                                      finished_run, is_slim_export, real_batch, record, recorded_sha,
                                      run_data_dir, run_file, sha_path, slim_source, write_export)
from sparsecs.exporting.levels import MACS, level_runs, profile_of, structured_runs  # noqa: F401
from sparsecs.exporting.slim import channels, load_slim, slim_model, slim_report

# the API (benchmarks, hubconf-style callers, tests): export and read back, each format's loader
__all__ = ["FORMATS", "DEFAULT_OUT", "EXPORT_JSON", "RUN_FILES", "SHA_SUFFIX", "ExportError",
           "export", "verify", "check", "real_batch", "finished_run", "run_data_dir", "size_ratio",
           "slim_model", "slim_report", "load_slim", "csr_file", "read_csr", "load_csr",
           "dense_file", "load_dense", "export_problem", "is_csr_export", "load_any", "load_committed",
           "is_slim_export", "slim_source", "export_profile", "level_runs", "structured_runs",
           "main"]

FORMATS = ("slim", "csr", "dense")
DEFAULT_OUT = {"slim": "model.slim.pt", "csr": "model.csr.pt", "dense": "model.dense.pt"}
RTOL = 1e-4          # allowed |logit difference| / max(1, max |logit|)


# ----------------------------------------------------------------------------- check

def _bytes(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def check(reference, exported, x):
    """(max |logit difference|, tolerance) of `exported` against `reference` on `x`."""
    a, b = reference(x), exported(x)
    if a.shape != b.shape:
        raise ExportError(f"exported model gives logits of shape {tuple(b.shape)}, "
                          f"not {tuple(a.shape)}")
    return float((a - b).abs().max()), RTOL * max(1.0, float(a.abs().max()))


# ----------------------------------------------------------------------------- export

def _out_path(run_dir, fmt, out, force=False):
    """Where the export goes: `out`, or RUN_DIR/model.<fmt>.pt; never a folder or a file of any
    run folder, and a file that is not an earlier export (its FILE.sha256 beside it, matching)
    only with `force`."""
    default = os.path.join(run_dir, DEFAULT_OUT[fmt])
    out = out or default
    if os.path.isdir(out):
        raise ExportError(f"--out {out} is a folder: give a file name")
    own = run_file(run_dir, out)
    if own:
        raise ExportError(f"--out {out} is {own}, a file of the run being exported: give another "
                          f"file name (default: {default}); nothing written", 2)
    real = os.path.realpath(out)
    folder = os.path.dirname(real)
    if os.path.basename(real) in RUN_FILES and any(
            os.path.exists(os.path.join(folder, n)) for n in (paths.MARKER, paths.CONFIG, paths.SUMMARY)):
        raise ExportError(f"--out {out} is {os.path.basename(real)} of the run folder {folder}: an "
                          f"export never replaces a run's files; give another file name; nothing "
                          f"written", 2)
    if not force and (os.path.lexists(out) or os.path.lexists(sha_path(out))) and not _our_export(out):
        raise ExportError(f"--out {out}: a file export.py did not write is there already (no "
                          f"{os.path.basename(sha_path(out))} beside it that matches it): give a new file "
                          f"name, or --force to replace it; nothing written", 2)
    return out


def _our_export(out):
    """Whether `out` is an export this tool wrote (maybe damaged since): the sha256 record
    beside it names it, in the line write_export writes."""
    try:
        with open(sha_path(out)) as f:
            words = f.read(512).split()
    except (OSError, UnicodeDecodeError):
        return False
    return (len(words) == 2 and bool(re.fullmatch(r"[0-9a-f]{64}", words[0]))
            and words[1] == os.path.basename(out))


def _build(fmt, model, dense_obj, dense_blob):
    """(file bytes, the model read back from them, facts of this format)."""
    if fmt == "dense":
        return dense_blob, load_dense(io.BytesIO(dense_blob)), {"params_after": _n_params(model)}
    if fmt == "csr":
        blob = _bytes(csr_file(dense_obj))
        exported = load_csr(io.BytesIO(blob))
        for k, v in model.state_dict().items():
            if not torch.equal(v, exported.state_dict()[k]):
                raise ExportError(f"csr export changed tensor {k}")
        # parameters the file stores: the nonzeros of conv / linear weights, every other one
        return blob, exported, {"params_after": sum(
            int(torch.count_nonzero(p)) if p.dim() >= 2 else p.numel() for p in model.parameters())}
    gm, skipped = slim_report(model)
    blob = _bytes(gm)
    exported = load_slim(io.BytesIO(blob))
    # the multiply-adds of one image, slim against dense, as the run's macs_structural counts them
    # (final_eval.structural_macs): their ratio is the MACs level the report places the run at
    macs_dense, macs_slim = metrics.counts(model)["flops_dense"], metrics.graph_macs(exported)
    return blob, exported, {"params_after": _n_params(exported), "channels": channels(model, exported),
                            "kept_zero_filters": len(skipped), "macs_dense": macs_dense,
                            "macs_slim": macs_slim, "macs_fraction": macs_slim / macs_dense}


def _same_file(a, b):
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _source(run_dir, say=None):
    """(the run folder or None, what model.pt holds, the model, the file read or None for a
    run's own model.pt) of a run folder, a committed run folder (its committed export) or a
    csr export standing in for its run."""
    if not os.path.exists(run_dir):
        raise ExportError(f"{run_dir}: no such run folder or export file", 2)
    if is_csr_export(run_dir):
        saved, model = load_any(run_dir)
        return None, saved, model, run_dir
    committed = load_committed(run_dir, say=say)
    if committed is not None:
        return (run_dir, *committed)
    finished_run(run_dir)
    return run_dir, modelfile.load_model_file(run_dir), modelfile.load_model(run_dir), None


def _run_name(path):
    """The run a folder, or an export in the run's folder of exports, stands for: the folder's name."""
    path = os.path.abspath(path)
    return os.path.basename(path if os.path.isdir(path) else os.path.dirname(path))


def export(run_dir, fmt, out=None, batch=256, data_dir=None, force=False, record_dir=None, say=None,
           test_set=False):
    """Export the run in `run_dir` (a run folder, or a csr export standing in for one) as
    `fmt`; returns the facts written to export.json (in `record_dir`, default the run
    folder). `test_set` (slim, from a run folder): the export's accuracy on the whole test set
    must be the run's (exporting/accuracy.py), recorded beside it. An existing file at `out` that is not an
    earlier export is replaced only with `force`; the source file never. Read from an export
    (given, or a committed run folder's), the file and export.json go to --out's folder, by
    default scratch/exports/<run>/: committed folders are evidence, never written to."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ExportError(f"--batch must be a positive number of test images, got {batch!r}", 2)
    run, saved, model, source = _source(run_dir, say)
    if test_set and (fmt != "slim" or run is None):
        raise ExportError("--test-set checks a slim export of a run folder (its summary and "
                          "predictions): give a run folder and --format slim", 2)
    if source is not None:
        out = out or os.path.join(paths.SCRATCH, "exports", _run_name(run_dir), DEFAULT_OUT[fmt])
        if any(_same_file(out, f) for f in (source, sha_path(source))):
            # `export.py model.csr.pt --format csr` would write over the file it reads
            raise ExportError(f"--out {out} is the export being read (or its sha256 record): give "
                              f"another file name; nothing written", 2)
    out = _out_path(run or os.path.dirname(os.path.abspath(out)), fmt, out, force)
    home = run if source is None else os.path.dirname(os.path.abspath(out))   # where export.json goes
    x = real_batch(saved["dataset"], batch, data_dir or run_data_dir(run or home))
    dense_obj = dense_file({**saved, "state_dict": model.state_dict()})
    dense_blob = _bytes(dense_obj)
    blob, exported, facts = _build(fmt, model, dense_obj, dense_blob)
    diff, tol = check(model, exported, x)
    if not diff <= tol:
        raise ExportError(f"{fmt} export changed the logits: max |difference| {diff:.3g} > "
                          f"tolerance {tol:.3g}; nothing written")
    if test_set:
        summary = summaries.read_summary(run)
        facts.update(slim_accuracy(run, saved, model, exported, float(summary["test_acc"]), data_dir))
    # relative to the run folder (where export.json is): stays true when the folder moves
    record_dir = record_dir or home
    facts = {"format": fmt, "file": os.path.relpath(os.path.abspath(out), os.path.abspath(record_dir)), "dense_bytes": len(dense_blob),
             "params_before": _n_params(model), "test_images": int(x.shape[0]), **facts,
             "bytes": len(blob), "max_logit_diff": diff, "tolerance": tol}
    if source is not None:     # relative too: a committed export.json names no machine's paths
        facts["source"] = os.path.relpath(os.path.abspath(source), os.path.abspath(record_dir))
    facts["sha256"] = write_export(out, blob)
    record(record_dir, fmt, facts)
    return {**facts, "path": out}    # (the path as given: for the line printed, not recorded)


# ----------------------------------------------------------------------------- a profile's levels

def export_profile(profile, results, batch=256, data_dir=None, rounds=False):
    """Into RESULTS/<profile>/weights/<run>/ (the run folders are not written to), each file
    with its sha256 and export.json beside it: the csr export of every run at the profile's
    export_levels, and the slim export of every structured run at its export_macs_levels,
    whose accuracy on the whole test set must be the run's (export(test_set=True)). `rounds`:
    the csr export of every λ-search round at an export level too (--rounds). A run without
    model.pt whose export is there already and reads back against its sha256 is kept as it is.
    Returns ([(format, level, run, facts)], [runs without weights here and no export: committed,
    trained elsewhere], [(format, run, file) kept])."""
    from sparsecs.reporting import load

    prof = profile_of(profile)
    if not prof.get("export_levels") and not prof.get("export_macs_levels"):
        raise ExportError(f"{profile}: the profile has no export_levels: [...] nor export_macs_levels: "
                          f"[...] (the levels whose runs export.py --profile exports)", 2)
    df = load.load(profile, results)[0]
    jobs = [("csr", level_runs(profile, results, df, rounds) if prof.get("export_levels") else {}),
            ("slim", structured_runs(profile, results, df))]
    name = os.path.basename(profile).removesuffix(".yaml")
    done, missing, kept = [], [], []
    for fmt, levels in jobs:
        for lv, folders in levels.items():
            for folder in folders:
                run = os.path.basename(folder)
                dest = os.path.join(results, name, "weights", run)
                if not os.path.exists(paths.path(folder, paths.MODEL)):
                    earlier = os.path.join(dest, DEFAULT_OUT[fmt])
                    if os.path.isfile(earlier):
                        verify(earlier)          # a damaged one: ExportError, one line
                        kept.append((fmt, run, earlier))
                    else:
                        missing.append(run)
                    continue
                done.append((fmt, lv, run, _export_into(dest, folder, fmt, batch, data_dir)))
    return done, missing, kept


def _export_into(dest, folder, fmt, batch, data_dir):
    """export() of run `folder` into folder `dest`; a `dest` made here is removed again if it fails."""
    made = not os.path.isdir(dest)
    os.makedirs(dest, exist_ok=True)
    try:
        return export(folder, fmt, os.path.join(dest, DEFAULT_OUT[fmt]), batch, data_dir,
                      record_dir=dest, test_set=fmt == "slim")
    except BaseException:
        if made and not os.listdir(dest):
            os.rmdir(dest)
        raise


def verify(file):
    """(format, sha256) of export `file`, read back after the check against its recorded
    sha256; no record, a mismatch or an unreadable file: ExportError, one line."""
    if not os.path.isfile(file):
        raise ExportError(f"{file}: no such export file")
    problem = export_problem(file)       # before anything is unpickled
    if problem:
        raise ExportError(f"{problem}; export the run again")
    sha = recorded_sha(file) or fileio.file_sha256(file)   # checked inside it or by export.json
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception:      # not plain tensors: a slim export, the pickle whose sha256 we recorded
        load_slim(file)
        return "slim", sha
    if isinstance(obj, dict) and obj.get("format") == CSR_FORMAT:
        load_csr(file)
        return "csr", sha
    load_dense(file)
    return "dense", sha


# ----------------------------------------------------------------------------- CLI

def _positive(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (test images the check uses), got {n}")
    return n


def size_ratio(nbytes, dense_bytes):
    """'2.50x smaller' or '1.20x larger' than the dense file ('the same size' within 0.5%)."""
    if nbytes <= 0 or dense_bytes <= 0:
        return "size unknown"
    r = dense_bytes / nbytes
    if abs(r - 1) < 0.005:
        return "the same size as dense"
    return f"{r:.2f}x smaller" if r > 1 else f"{1 / r:.2f}x larger"


class _Parser(argparse.ArgumentParser):
    def error(self, message):      # one line, not usage + message
        self.exit(2, f"export.py: error: {message}\n")


def _print_facts(fmt, f):
    print(f"{fmt}: {f.get('path', f['file'])}  {f['bytes']:,} bytes (dense {f['dense_bytes']:,} bytes, "
          f"{size_ratio(f['bytes'], f['dense_bytes'])}); sha256 {f['sha256'][:16]}...")
    print(f"parameters {f['params_before']:,} -> {f['params_after']:,}; max |logit difference| "
          f"{f['max_logit_diff']:.2g} (tolerance {f['tolerance']:.2g}) on {f['test_images']} test images")
    if f.get("channels"):
        print("channels: " + ", ".join(f"{n} {a}->{b}" for n, (a, b) in f["channels"].items()))
    if "macs_slim" in f:
        print(f"multiply-adds an image {f['macs_dense']:,} -> {f['macs_slim']:,} ({f['macs_fraction']:.1%})")
    if "test_acc_export" in f:
        print(f"test acc {f['test_acc_export']:.2f}% on {f['test_images_eval']} test images, the run's "
              f"{f['test_acc']:.2f}% ({f['differing_predictions']} predictions differ, all ties)")


def _profile_line(fmt, lv, run, f):
    if fmt == "csr":
        return f"{100 * lv:g}%: {run}: {f['bytes']:,} B (sha256 {f['sha256'][:16]}...)"
    return (f"{100 * lv:g}% MACs: {run}: slim {f['bytes']:,} B (sha256 {f['sha256'][:16]}...), "
            f"{f['macs_fraction']:.1%} of the dense MACs, {f['params_after']:,} of {f['params_before']:,} "
            f"parameters; test acc {f['test_acc_export']:.2f}%, the run's {f['test_acc']:.2f}% "
            f"({f['differing_predictions']} of {f['test_images_eval']} predictions differ, all ties)")


def main(argv=None):
    p = _Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", nargs="?", help="a finished run folder, or a csr export of one")
    p.add_argument("--format", choices=FORMATS)
    p.add_argument("--out", help="output file (default: RUN_DIR/model.<format>.pt; read from an export: "
                                 "scratch/exports/<run>/model.<format>.pt)")
    p.add_argument("--force", action="store_true",
                   help="replace a file at --out that is not an earlier export (never a run's file)")
    p.add_argument("--batch", type=_positive, default=256, help="test images the check uses")
    p.add_argument("--data-dir", help="where the data set lives (default: the run's data_dir)")
    p.add_argument("--test-set", action="store_true",
                   help="slim: the export's accuracy on the whole test set must be the run's (recorded)")
    p.add_argument("--profile", help="export every run at the profile's export_levels (csr) and its "
                                     "structured runs at export_macs_levels (slim, --test-set) into "
                                     "RESULTS/<profile>/weights/<run>/")
    p.add_argument("--results", default="results", help="with --profile: the results folder")
    p.add_argument("--rounds", action="store_true",
                   help="with --profile: also every λ-search round at an export level (while a search "
                        "goes on any round may become its point, and weights do not outlive the "
                        "machine that trained them: export at the end of each session)")
    p.add_argument("--check", nargs="+", metavar="FILE",
                   help="read exports back against their recorded sha256 instead of exporting")
    args = p.parse_args(argv)
    if args.check and (args.run_dir or args.format or args.out):
        p.error("--check FILE ... takes no RUN_DIR, --format or --out")
    if args.rounds and not args.profile:
        p.error("--rounds goes with --profile")
    if args.profile and (args.check or args.run_dir or args.format or args.out):
        p.error("--profile PROFILE takes no RUN_DIR, --format, --out or --check (it writes csr and slim exports)")
    if not args.check and not args.profile and not (args.run_dir and args.format):
        p.error("give RUN_DIR and --format (or --check FILE ..., or --profile PROFILE)")
    from sparsecs import data as D
    from sparsecs.reporting.load import ReportError
    from sparsecs.sweeping.profile import ProfileError
    try:
        for file in args.check or ():
            fmt, sha = verify(file)
            print(f"{file}: ok ({fmt} export, sha256 {sha[:16]}... as recorded)")
        if args.profile:
            done, missing, kept = export_profile(args.profile, args.results, args.batch, args.data_dir,
                                                 args.rounds)
            for fmt, lv, run, f in done:
                print(_profile_line(fmt, lv, run, f))
            for fmt, run, file in kept:
                print(f"kept: {file}: exported earlier, reads back against its sha256 ({run} has no "
                      f"model.pt here)")
            for run in missing:
                print(f"not exported: {run}: no model.pt here (a committed run, trained elsewhere)",
                      file=sys.stderr)
        elif not args.check:
            _print_facts(args.format, export(args.run_dir, args.format, args.out, args.batch,
                                             args.data_dir, args.force,
                                             say=lambda line: print(f"export.py: {line}", file=sys.stderr),
                                             test_set=args.test_set))
    except (ExportError, paths.RunFolderError, D.DataError, OSError, ReportError, ProfileError) as e:
        text = fileio.os_error_text(e) if isinstance(e, OSError) else str(e)
        print(f"export.py: error: {' '.join(text.split())}", file=sys.stderr)
        if isinstance(e, ProfileError):
            return 2
        return getattr(e, "code", 1) if isinstance(e, (ExportError, ReportError)) else 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "export.py"))

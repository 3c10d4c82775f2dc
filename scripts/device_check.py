"""The CUDA paths of train.py run for real, in a few minutes of a lent GPU (no network there).

    scripts/device_check.sh [--dry] [--out DIR] [--budget SECONDS] [--fashion-gz DIR]

Parts, in this order, each in its own process with its own timeout (a failure or timeout is
recorded and the next part runs); all parts together stay inside --budget (default 450 s on
a GPU; what is left when a part is due cuts its timeout, and a part with under 20 s left is
skipped):

  env          python, torch, CUDA, the GPU, bf16 support, compilers, Triton
  bf16_cl      train.py, digits, ResNet-20, precision=bf16 channels_last=true, 2 epochs
  resume       the same run stopped after epoch 1 (--stop-after 1, exit 75), rerun to the end,
               and its model.pt compared with bf16_cl's: bit-identical or the largest |difference|
  ddp_nccl     the same run under torchrun --nproc_per_node=1 as a DDP run (scripts/ddp_one.py:
               NCCL process group, DistributedDataParallel), compared with bf16_cl's weights
  fashion      Fashion-MNIST, ResNet-20 x0.5 at batch 128, bf16 + channels_last, 1 epoch of all
               60,000 images, from the carried IDX files (below)
  compile      bf16_cl's run with compile=true, 1 epoch: its epoch time against bf16_cl's first
  bench_epoch  benchmarks/bench_epoch.py's GPU-hours of the paper/short/ablation profiles,
               3 warm-up + 5 timed steps a configuration (default 10 + 30)

Written into --out (default $OUT, the folder the device tool brings back; at most 8 files
come back, so there are 4): summary.md (a table: part, status, seconds, details), summary.csv
(the same), log.txt (every part's command and output), bench_epoch.csv. Commit them as
results/device/<date>-<gpu>/. Exit 0 when every part that ran passed, 1 otherwise.

--dry: the same parts on the CPU (device=cpu, width 0.125, 64 images, bench_epoch --quick on
the ablation profile's ResNet-20 keys), for a check here and for tests/scripts/test_device_check.py;
compile is skipped with a line saying why. On the CPU a resumed run must be bit-identical
(train.py's contract at one thread count); on a GPU it need not be (cudnn.benchmark picks
kernels per process) and the row records which it was.

The interpreter (scripts/device_check.sh picks it, never installing anything): the active
virtual environment; else ./.venv if it imports torch; else python3. A .venv cannot travel
to the GPU machine: the one scripts/venv.sh makes here holds torch 2.14.1+cu130, the CUDA
build from PyPI, but it is ~6 GB and its python links to this machine's Python 3.11, while
the device tool carries at most 64 MiB. The GPU machine's own python3 (Python 3.12, torch
2.11.0+cu130, torchvision, numpy, PyYAML, tqdm, scikit-learn) has every package train.py and
bench_epoch.py import; the summary records the versions that ran.

Data: train.py reads Fashion-MNIST from DATA_DIR/FashionMNIST/raw/ (the 4 uncompressed IDX
files, 55 MB) or extracts it from a folder of the 4 gzipped ones (FASHION_MNIST_SYSTEM_DIR,
Debian's layout, 30 MB). This carries the gzipped ones: `scripts/device_check.sh
--stage-data` copies them here into data/fashion-mnist-gz/ (git-ignored), and the device
call names that folder: carry ["data/fashion-mnist-gz"]. The digits set ships with
scikit-learn; CIFAR is not needed (bench_epoch.py times synthetic batches).
"""
import argparse
import csv
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
FASHION_GZ = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"
DEFAULT_GZ = os.path.join("data", "fashion-mnist-gz")
COLUMNS = ["part", "status", "seconds", "details"]
MIN_LEFT = 20   # seconds: a part with less than this left of the budget is skipped

ENV_PROBE = r"""
import os, platform, shutil, sys
import torch
from sparsecs import hardware   # -c runs in REPO: its folder is on sys.path
print("python", platform.python_version(), sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", torch.cuda.get_device_name(0), f"sm_{p.major}{p.minor}", f"{p.total_memory / 2**30:.0f} GiB")
    print("bf16", torch.cuda.is_bf16_supported(including_emulation=False))
    print("nccl", torch.distributed.is_nccl_available(), torch.cuda.nccl.version())
else:
    print("gpu none; cpu", hardware._cpu_name(), "native bf16", hardware.cpu_native_bf16())
print("triton", hardware.has_triton(), "cc", hardware.c_compiler(), "cxx", hardware.cxx_compiler())
"""



def compare_models(a_path, b_path):
    """'identical True|False max_abs_diff X' between two model.pt files (loaded on the CPU, in
    this process: one torch import instead of one per comparison)."""
    import torch
    a, b = (torch.load(p, map_location="cpu", weights_only=True)["state_dict"] for p in (a_path, b_path))
    if a.keys() != b.keys():
        return "identical False (different tensors)"
    same = all(torch.equal(a[k], b[k]) for k in a)
    gap = max(((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point()),
              default=0.0)
    return f"identical {same} max_abs_diff {gap:.3g}"


class Check:
    """The parts' rows, their log, and the time budget they share."""

    def __init__(self, out, budget, dry):
        self.out, self.dry, self.rows = out, dry, []
        self.deadline = time.monotonic() + budget
        self.work = tempfile.mkdtemp(prefix="device-check-")
        self.log = open(os.path.join(out, "log.txt"), "w", encoding="utf-8")
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        if dry:   # tiny tensors on a shared CPU: one thread each (also what resume compares at)
            self.env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    def left(self):
        return self.deadline - time.monotonic()

    def write(self, text):
        self.log.write(text)
        self.log.flush()

    def run(self, cmd, timeout, env=None):
        """(exit code or 'timeout', output) of `cmd` in its own process group, killed whole
        (torchrun's workers too) at the timeout."""
        timeout = max(1, min(timeout, self.left()))
        self.write(f"\n$ {' '.join(cmd)}   # timeout {timeout:.0f}s\n")
        p = subprocess.Popen(cmd, cwd=REPO, env=env or self.env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            text, _ = p.communicate(timeout=timeout)
            code = p.returncode
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            text, _ = p.communicate()
            code = "timeout"
        self.write(text + f"[exit {code}]\n")
        return code, text

    def part(self, name, timeout, fn):
        """Run one part: fn(timeout) -> (status, details); any exception is a FAIL row."""
        self.write(f"\n===== {name}\n")
        t0 = time.monotonic()
        if self.left() < MIN_LEFT:
            status, details = "skipped", f"time budget spent ({self.left():.0f}s left)"
        else:
            try:
                status, details = fn(min(timeout, self.left()))
            except Exception as e:   # the check goes on: one broken part is one row
                status, details = "FAIL", f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        row = {"part": name, "status": status, "seconds": round(time.monotonic() - t0, 1), "details": details}
        self.rows.append(row)
        print(f"{name:12s} {status:8s} {row['seconds']:7.1f}s  {details}", flush=True)
        self.write(f"----- {name}: {status}: {details}\n")
        return row


def summary_of(folder):
    with open(os.path.join(folder, "summary.json")) as f:
        return json.load(f)


def epoch_seconds(folder):
    with open(os.path.join(folder, "metrics.csv"), newline="") as f:
        return [float(r["seconds"]) for r in csv.DictReader(f)]


def last_line(text):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " ".join(lines[-1].split())[:200] if lines else ""


def find_fashion(gz_dir):
    """(env additions, data_dir) for the Fashion-MNIST run, or None: the IDX files already in
    data/FashionMNIST/raw, else a folder of the gzipped ones (carried, or Debian's)."""
    raw = os.path.join(REPO, "data", "FashionMNIST", "raw")
    if all(os.path.isfile(os.path.join(raw, f[:-3])) for f in FASHION_GZ):
        return {}, os.path.join(REPO, "data")
    for d in (gz_dir, DEBIAN_FASHION):
        if d and all(os.path.isfile(os.path.join(d, f)) for f in FASHION_GZ):
            return {"FASHION_MNIST_SYSTEM_DIR": os.path.abspath(d)}, None
    return None


def stage_data(dest):
    """Copy Debian's gzipped Fashion-MNIST (apt-get install dataset-fashion-mnist) to `dest`."""
    if not all(os.path.isfile(os.path.join(DEBIAN_FASHION, f)) for f in FASHION_GZ):
        print(f"error: {DEBIAN_FASHION} lacks the 4 Fashion-MNIST files: "
              f"apt-get install dataset-fashion-mnist", file=sys.stderr)
        return 1
    os.makedirs(dest, exist_ok=True)
    for f in FASHION_GZ:
        shutil.copyfile(os.path.join(DEBIAN_FASHION, f), os.path.join(dest, f))
    mb = sum(os.path.getsize(os.path.join(dest, f)) for f in FASHION_GZ) / 1e6
    print(f"{dest}: {mb:.0f} MB; name it in the device call's carry: [\"{os.path.relpath(dest, REPO)}\"]")
    return 0


def parts(c, args):
    """The parts as (name, timeout s, function(timeout) -> (status, details))."""
    k = Parts(c, args)
    return [("env", 60, k.env), ("bf16_cl", 120, k.bf16_cl), ("resume", 150, k.resume),
            ("ddp_nccl", 120, k.ddp), ("fashion", 150, k.fashion), ("compile", 200, k.compile_),
            ("bench_epoch", 300, k.bench)]


class Parts:
    """Each part one method (timeout s) -> (status, details); the later parts compare their
    weights with bf16_cl's run (ref), so they share its folders and base config."""

    def __init__(self, c, args):
        self.c, self.args = c, args
        self.dev = "cpu" if c.dry else "cuda"
        small = ["width=0.125", "train_subset=64"] if c.dry else ["width=0.25"]
        self.base = ["configs/quick/sgd.yaml", "model=resnet20", *small, f"device={self.dev}",
                     "precision=bf16", "channels_last=true", "epochs=2"]
        self.results = os.path.join(c.work, "results")
        self.ref = os.path.join(c.work, "bf16_cl")
        self.train_py = [PY, "train.py"]

    def env(self, t):
        code, text = self.c.run([PY, "-c", ENV_PROBE], t)
        info = "; ".join(ln for ln in text.splitlines() if ln.split(" ")[0] in
                         ("torch", "gpu", "bf16", "nccl", "triton"))
        if code != 0:
            return ("timeout" if code == "timeout" else "FAIL"), last_line(text)
        if not self.c.dry and "gpu none" in text:
            return "FAIL", "no GPU visible: " + info
        return "ok", info

    def bf16_cl(self, t):
        code, text = self.c.run([*self.train_py, *self.base, "--out", self.ref, "--results", self.results,
                                 "--quiet"], t)
        if code != 0:
            return status_of(code), last_line(text)
        s = summary_of(self.ref)
        return "ok", (f"test_acc {s['test_acc']:.2f}, train {s['train_seconds']:.1f}s, "
                      f"epochs {', '.join(f'{x:.2f}' for x in epoch_seconds(self.ref))}s, {s['device_name']}")

    def compare(self, folder):
        if not os.path.isfile(os.path.join(self.ref, "model.pt")):
            return None
        return compare_models(os.path.join(self.ref, "model.pt"), os.path.join(folder, "model.pt"))

    def resume(self, t):
        out = os.path.join(self.c.work, "resumed")
        t0 = time.monotonic()
        cmd = [*self.train_py, *self.base, "--out", out, "--results", self.results, "--quiet"]
        code, text = self.c.run([*cmd, "--stop-after", "1"], t)
        if code != 75:
            return status_of(code, ok=75), f"--stop-after 1 gave exit {code}, not 75: {last_line(text)}"
        code, text = self.c.run(cmd, t - (time.monotonic() - t0))
        if code != 0:
            return status_of(code), f"rerun: {last_line(text)}"
        same = self.compare(out)
        if same is None:
            return "ok", "resumed to the end; no bf16_cl run to compare with"
        if "identical True" in same:
            return "ok", "stopped after epoch 1 (exit 75), resumed: bit-identical to the uninterrupted run"
        # the CPU promises bit-identity at one thread count; cudnn.benchmark on a GPU does not
        return ("FAIL" if self.c.dry else "ok"), f"resumed: NOT bit-identical to the uninterrupted run ({same})"

    def ddp(self, t):
        out = os.path.join(self.c.work, "ddp")
        code, text = self.c.run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                                 "-m", "scripts.ddp_one", *self.base, "--out", out, "--results", self.results], t)
        if code != 0:
            return status_of(code), last_line(text)
        backend = next((ln for ln in text.splitlines() if ln.startswith("backend")), "backend ?")
        s = summary_of(out)
        return "ok", f"{backend}, test_acc {s['test_acc']:.2f}; against bf16_cl: {self.compare(out)}"

    def fashion(self, t):
        found = find_fashion(self.args.fashion_gz)
        if found is None:
            return "skipped", (f"no Fashion-MNIST here: run scripts/device_check.sh --stage-data and "
                               f"carry {DEFAULT_GZ}")
        extra, data_dir = found
        out = os.path.join(self.c.work, "fashion")
        size = ["width=0.125", "train_subset=256"] if self.c.dry else ["width=0.5"]
        cmd = [*self.train_py, "configs/quick/sgd.yaml", "dataset=fashion_mnist", "model=resnet20", *size,
               "epochs=1", "batch_size=128", f"device={self.dev}", "precision=bf16", "channels_last=true",
               "download=false", f"data_dir={data_dir or os.path.join(self.c.work, 'data')}",
               "--out", out, "--results", self.results, "--quiet"]
        code, text = self.c.run(cmd, t, env=dict(self.c.env, **extra))
        if code != 0:
            return status_of(code), last_line(text)
        s = summary_of(out)
        n = s.get("bn_recal_images", 0)
        return "ok", (f"1 epoch of {'256' if self.c.dry else '60,000'} images in {s['train_seconds']:.1f}s "
                      f"(training), test_acc {s['test_acc']:.2f} (bn_recal {n}), {s['device_name']}")

    def compile_(self, t):
        if self.c.dry:
            return "skipped", ("--dry: inductor's C++ compile takes minutes on this CPU; "
                               "tests/test_train.py runs compile=true on the CPU")
        out = os.path.join(self.c.work, "compiled")
        code, text = self.c.run([*self.train_py, *self.base[:-1], "epochs=1", "compile=true", "--out", out,
                                 "--results", self.results, "--quiet"], t)
        if code != 0:
            return status_of(code), last_line(text)
        s = summary_of(out)
        first = epoch_seconds(out)[0]
        eager = epoch_seconds(self.ref)[0] if os.path.isfile(os.path.join(self.ref, "metrics.csv")) else float("nan")
        return "ok", (f"test_acc {s['test_acc']:.2f}; epoch 1 with compiling {first:.1f}s "
                      f"(eager bf16_cl epoch 1: {eager:.1f}s)")

    def bench(self, t):
        csv_out = os.path.join(self.c.out, "bench_epoch.csv")
        if self.c.dry:
            cmd = [PY, "-m", "benchmarks.bench_epoch", "--device", "cpu", "--quick", "--profiles", "ablation",
                   "--models", "resnet20", "--out", csv_out]
        else:
            cmd = [PY, "-m", "benchmarks.bench_epoch", "--device", "cuda", "--warmup", "3", "--steps", "5",
                   "--eval-images", "500", "--out", csv_out]
        code, text = self.c.run(cmd, t)
        if code != 0:
            return status_of(code), last_line(text)
        gpu_h = [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| profile")
                 and ln.count("|") == 8]
        est = "; ".join(f"{cells[1]}: {cells[4]} GPU-h ({cells[6]} with every λ round)"
                        for cells in ([x.strip() for x in ln.split("|")] for ln in gpu_h))
        return "ok", est or last_line(text)


def status_of(code, ok=0):
    return "timeout" if code == "timeout" else ("ok" if code == ok else "FAIL")


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def write_summary(c, args, started, total):
    with open(os.path.join(c.out, "summary.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(c.rows)
    env_row = next((r for r in c.rows if r["part"] == "env"), {"details": ""})
    lines = [f"# Device check{' (--dry, CPU)' if c.dry else ''}", "",
             f"{started:%Y-%m-%d %H:%M} UTC, commit {git_commit()}, {total:.0f} s of a {args.budget:.0f} s "
             f"budget: `scripts/device_check.sh{' --dry' if c.dry else ''}`", "",
             f"Environment: {env_row['details']}", "",
             "| part | status | seconds | details |", "|---|---|---:|---|"]
    lines += [f"| {r['part']} | {r['status']} | {r['seconds']} | {r['details'].replace('|', '/')} |" for r in c.rows]
    lines += ["", "Logs: log.txt; bench_epoch.py's table: bench_epoch.csv. What each part runs: "
              "scripts/device_check.py's docstring."]
    with open(os.path.join(c.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry", action="store_true", help="the same parts on the CPU, tiny (no GPU needed)")
    p.add_argument("--out", default=os.environ.get("OUT"), help="where the summary and logs go (default: $OUT)")
    p.add_argument("--budget", type=float, help="seconds for all parts (default 450 on a GPU, 240 with --dry)")
    p.add_argument("--fashion-gz", default=DEFAULT_GZ,
                   help=f"folder of the 4 gzipped Fashion-MNIST files (default {DEFAULT_GZ})")
    p.add_argument("--stage-data", action="store_true",
                   help=f"copy {DEBIAN_FASHION}'s files into --fashion-gz, to carry, and stop")
    args = p.parse_args(argv)
    if args.stage_data:
        return stage_data(os.path.join(REPO, args.fashion_gz))
    if not args.out:
        p.error("--out DIR is needed where $OUT is not set")
    args.budget = args.budget or (240.0 if args.dry else 450.0)
    if args.budget <= 0:
        p.error("--budget must be > 0")
    args.fashion_gz = os.path.join(REPO, args.fashion_gz)
    os.makedirs(args.out, exist_ok=True)
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.monotonic()
    c = Check(args.out, args.budget, args.dry)
    print(f"device check{' (--dry)' if args.dry else ''}: {PY}, budget {args.budget:.0f}s, "
          f"work {c.work}, summary -> {args.out}", flush=True)
    try:
        for name, timeout, fn in parts(c, args):
            c.part(name, timeout, fn)
    finally:
        write_summary(c, args, started, time.monotonic() - t0)
        c.log.close()
        shutil.rmtree(c.work, ignore_errors=True)
    bad = [r["part"] for r in c.rows if r["status"] in ("FAIL", "timeout")]
    print(f"{len(c.rows) - len(bad)}/{len(c.rows)} parts without failure"
          + (f"; failed: {', '.join(bad)}" if bad else "") + f" -> {os.path.join(args.out, 'summary.md')}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""The machine a run trains on, in one place: the device, what it can run (a compiler for
torch.compile, native bf16), autocast for precision=bf16, the CPU's name and the thread count
a summary records, and the allocator setting of a CPU run (keep_freed_memory). A config
resolves and hashes the same on every machine; what this machine makes of it is decided here
when a run starts.
"""
import contextlib
import ctypes
import os
import platform
import shutil

import torch

from sparsecs import paths


def environment():
    """Versions and hardware a run's numbers depend on, for its summary."""
    import numpy
    try:
        import torchvision
        tv = torchvision.__version__
    except ImportError:
        tv = ""
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = _cpu_name() or platform.processor() or platform.machine()
    return {"torch": torch.__version__, "torchvision": tv, "numpy": numpy.__version__,
            "device_name": device, "threads": torch.get_num_threads()}


def _cpu_fields(cpuinfo="/proc/cpuinfo"):
    """/proc/cpuinfo's first processor block as {field: value} ({} where there is none)."""
    first = {}
    with contextlib.suppress(OSError):
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip():
                    break                       # the first processor's block is enough
                key, _, value = line.partition(":")
                first[key.strip()] = value.strip()
    return first


def _cpu_name(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name, with its family, model and widest vector unit where the name
    alone does not tell machines apart (a VM may show "AMD EPYC" for CPUs whose epochs took
    53 s and 126 s): "AMD EPYC (family 26 model 2, AVX-512)"."""
    first = _cpu_fields(cpuinfo)
    name = first.get("model name", "")
    if not name:
        return ""
    flags = set(first.get("flags", "").split())
    isa = ("AMX" if "amx_bf16" in flags else "AVX-512" if "avx512f" in flags else
           "AVX2" if "avx2" in flags else "")
    what = [f"family {first['cpu family']} model {first['model']}"] if "cpu family" in first and "model" in first else []
    what += [isa] if isa else []
    return f"{name} ({', '.join(what)})" if what else name


# ----------------------------------------------------------------------------- devices

def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise paths.RunFolderError("device: cuda was asked for but no GPU is visible; use device=auto or cpu")
    return torch.device(name)


def keep_freed_memory():
    """Keep freed memory in the process instead of returning it to the OS (glibc's malloc).
    By default glibc gives large freed blocks back (mmap threshold, heap trim), and a CPU
    training step frees and allocates the same multi-megabyte activations every step, so each
    step faults them in again: ~10,000 minor page faults a step for ResNet-20 x0.5 at batch 128
    in fp32, ~0 with this (benchmarks/bench_cpu.py --allocator). Only where memory comes from
    changes, not a number computed. Returns whether it applied (False off glibc)."""
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # <malloc.h>
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # 32 MiB is glibc's largest mmap threshold on 64 bits: blocks above it still go to mmap
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


def cpu_native_bf16(cpuinfo="/proc/cpuinfo"):
    """Whether the CPU computes in bf16 itself (AVX512-BF16 or AMX-BF16). Without either
    (an AVX2-only CPU) oneDNN has no bf16 kernels and autocast's bf16 is emulated: slower
    than fp32, not faster. Reads the flags (ISA limits such as ONEDNN_MAX_CPU_ISA are not
    seen); torch's own probes where there is no /proc/cpuinfo."""
    flags = _cpu_fields(cpuinfo).get("flags")
    if flags is not None:
        return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))
    probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(p() for p in probes if p is not None)


def cxx_compiler():
    """The C++ compiler torch.compile's inductor would use for CPU code (its search list:
    $CXX, else g++), or None where none of them is on PATH."""
    try:
        from torch._inductor import config as inductor
        names = [c for c in inductor.cpp.cxx if c] if isinstance(inductor.cpp.cxx, (list, tuple)) \
            else [inductor.cpp.cxx]
    except Exception:   # a torch without inductor: its default
        names = [os.environ.get("CXX", "g++")]
    return next((shutil.which(n) for n in names if n and shutil.which(n)), None)


def c_compiler():
    """The C compiler Triton builds its GPU launcher with ($CC, else gcc, else clang), or None."""
    names = [os.environ["CC"]] if os.environ.get("CC") else ["gcc", "clang"]
    return next((shutil.which(n) for n in names if shutil.which(n)), None)


def has_triton():
    try:
        from torch.utils._triton import has_triton as probe
        return probe()
    except ImportError:
        return False


# An AVX2-only CPU emulated on an AMX one (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2;
# ATEN_CPU_CAPABILITY alone leaves oneDNN's bf16 convolutions native, 1.57x fp32):
# benchmarks/bench_cpu.py --models resnet20:0.5 --settings fp32+cl bf16+cl fp32 bf16
# --repeats 3 --steps 4, 1 thread, median images/s fp32+cl 214, bf16+cl 31 (0.14x), fp32 207,
# bf16 32 (0.15x): oneDNN has no AVX2 bf16 convolution and falls back to a reference one.
BF16_EMULATED_SLOWDOWN = "about 7x slower than fp32 (measured with oneDNN limited to AVX2)"


def device_problem(cfg, device):
    """Why this machine cannot run `cfg` on `device` (one line), or None. Checked when a run
    starts, not by config.resolve: a config resolves (and hashes) the same on every machine."""
    if cfg["compile"]:
        if device.type == "cpu" and cxx_compiler() is None:
            return ("compile=true: torch.compile builds C++ for the CPU and finds no C++ compiler "
                    "(g++ or $CXX) on PATH; install one (apt-get install g++) or use compile=false")
        if device.type == "cuda" and not has_triton():
            return "compile=true: torch.compile on a GPU needs Triton, which this torch cannot import; use compile=false"
        if device.type == "cuda" and c_compiler() is None:
            return ("compile=true: Triton builds its GPU launcher with a C compiler and finds none "
                    "(gcc, clang or $CC) on PATH; install one or use compile=false")
    if cfg["precision"] == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return (f"precision=bf16: this GPU ({torch.cuda.get_device_name(device)}) has no bfloat16 "
                f"support (torch.cuda.is_bf16_supported() is False); use precision=fp32")
    return None


def device_note(cfg, device):
    """One line for a setting this machine runs, but slowly, or None."""
    if cfg["precision"] == "bf16" and device.type == "cpu" and not cpu_native_bf16():
        return (f"note: precision=bf16 on a CPU without native bf16 (no AVX512-BF16 or AMX): "
                f"autocast emulates it, {BF16_EMULATED_SLOWDOWN}; precision=fp32 is faster here")
    if cfg["precision"] == "bf16" and device.type == "cuda" and \
            not torch.cuda.is_bf16_supported(including_emulation=False):
        return ("note: precision=bf16 on a GPU older than compute capability 8.0: bfloat16 is "
                "emulated, expect it slower than fp32")
    return None


def autocast(cfg, device):
    if cfg["precision"] == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

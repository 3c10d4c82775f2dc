"""The kernels sparse_infer.py chooses from for one conv / linear layer (its docstring's
Candidates say what each is): the optional ones (the direct kernel compiled on first use,
sparseprop), each said once when missing, and the candidates a layer fits."""
import ctypes
import hashlib
import importlib
import os
import subprocess
import sys
import tempfile
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "csrc", "direct_conv.c")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                     "sparse_infer")
KERNELS = ("dense", "direct", "sparseprop", "csr")
INSTALL_HINT = "pip install pybind11 && pip install --no-build-isolation -r requirements-sparse.txt"


# ----------------------------------------------------------------------------- optional kernels

_missing_said = set()
_lib = {}          # compiler + flags -> ctypes library or the reason there is none
_sparseprop = {}


def _say_missing(what, why):
    """One line on stderr, once per process and kernel."""
    if what not in _missing_said:
        _missing_said.add(what)
        print(f"sparse_infer: {what} kernel unavailable ({why}); measuring the others",
              file=sys.stderr)


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return ""


def direct_library():
    """The compiled direct kernel (ctypes), or None with the reason said once. Compiled into
    CACHE, named by a hash of the source, compiler, flags and CPU (as -march=native binds it
    to this CPU), so an edit or another machine compiles afresh."""
    cc = os.environ.get("CC", "cc")
    if cc in _lib:
        return _lib[cc] if not isinstance(_lib[cc], str) else None
    try:
        with open(SOURCE, "rb") as f:
            src = f.read()
    except OSError as e:
        _lib[cc] = f"{SOURCE}: {e.strerror}"
        _say_missing("direct", _lib[cc])
        return None
    why = "no C compiler"
    for flags in (["-O3", "-march=native", "-fopenmp"], ["-O3", "-march=native"], ["-O3"]):
        key = hashlib.sha256(src + repr((cc, flags)).encode() + _cpu_flags().encode()).hexdigest()[:16]
        so = os.path.join(CACHE, f"direct_conv-{key}.so")
        if not os.path.exists(so):
            try:
                os.makedirs(CACHE, exist_ok=True)
                fd, tmp = tempfile.mkstemp(suffix=".so", dir=CACHE)
                os.close(fd)
                r = subprocess.run([cc, *flags, "-shared", "-fPIC", "-std=c99", SOURCE, "-o", tmp],
                                   capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.SubprocessError) as e:
                why = f"compiler {cc!r}: {e}"
                continue
            if r.returncode != 0:
                os.unlink(tmp)
                why = f"{cc} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
                continue
            os.replace(tmp, so)      # atomic: a parallel process sees all of it or nothing
        try:
            lib = ctypes.CDLL(so)
        except OSError as e:
            why = str(e)
            continue
        fn = lib.sparse_conv2d
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        _lib[cc] = lib
        return lib
    _lib[cc] = why
    _say_missing("direct", why)
    return None


def sparseprop_modules():
    """sparseprop.modules, or None with the install line said once."""
    if "mod" not in _sparseprop:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _sparseprop["mod"] = importlib.import_module("sparseprop.modules")
        except Exception as e:       # ImportError, or a build for another CPU
            _sparseprop["mod"] = None
            _say_missing("sparseprop", f"{type(e).__name__}: {e}; {INSTALL_HINT}")
    return _sparseprop["mod"]


def available():
    """{kernel: True/False} on this machine (says once what is missing)."""
    return {"dense": True, "direct": direct_library() is not None,
            "sparseprop": sparseprop_modules() is not None, "csr": True}


# ----------------------------------------------------------------------------- kernels

def _weights(m):
    w = m.weight.detach().float()
    b = None if m.bias is None else m.bias.detach().float().contiguous()
    return w, b


class Direct:
    """csrc/direct_conv.c on one layer (Conv2d, or Linear as 1x1), bias and ReLU fused."""

    def __init__(self, m, relu, lib):
        w, self.bias = _weights(m)
        self.linear = isinstance(m, nn.Linear)
        if self.linear:
            kh, kw, sh, sw, ph, pw, groups = 1, 1, 1, 1, 0, 0, 1
        else:
            (kh, kw), (sh, sw), (ph, pw), groups = m.kernel_size, m.stride, m.padding, m.groups
        o = w.shape[0]
        w2 = w.reshape(o, -1)
        nz = w2 != 0
        self.rowptr = torch.zeros(o + 1, dtype=torch.int32)
        self.rowptr[1:] = nz.sum(1).cumsum(0).to(torch.int32)
        self.col = nz.nonzero()[:, 1].to(torch.int32).contiguous()
        self.val = w2[nz].contiguous()
        self.out_channels, self.in_channels = o, w2.shape[1] // (kh * kw) * groups
        self.k, self.s, self.p, self.groups, self.relu = (kh, kw), (sh, sw), (ph, pw), groups, relu
        self.fn = lib.sparse_conv2d
        self.shape_params = {}

    def _params(self, h, w):
        key = (h, w)
        if key not in self.shape_params:
            (kh, kw), (sh, sw), (ph, pw) = self.k, self.s, self.p
            ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            p = torch.tensor([self.in_channels, h, w, self.out_channels, kh, kw, sh, sw, ph, pw,
                              self.groups, ho, wo, int(self.relu)], dtype=torch.int32)
            self.shape_params[key] = (p, ho, wo)
        return self.shape_params[key]

    def __call__(self, x):
        shape = x.shape
        if self.linear:
            x = x.reshape(-1, shape[-1], 1, 1)
        x = x.contiguous()
        b, _, h, w = x.shape
        p, ho, wo = self._params(h, w)
        out = torch.empty(b, self.out_channels, ho, wo)
        self.fn(x.data_ptr(), out.data_ptr(), 0 if self.bias is None else self.bias.data_ptr(),
                self.rowptr.data_ptr(), self.col.data_ptr(), self.val.data_ptr(), b,
                p.data_ptr(), torch.get_num_threads())
        return out.reshape(*shape[:-1], self.out_channels) if self.linear else out


class Sparseprop:
    """sparseprop's SparseConv2d / SparseLinear on one layer; ReLU applied after."""

    def __init__(self, m, relu, mods, over_on=False):
        if isinstance(m, nn.Linear):
            self.layer = mods.SparseLinear.from_dense(m)
        else:
            self.layer = mods.SparseConv2d.from_dense(m, vectorizing_over_on=over_on)
        self.relu = relu

    def __call__(self, x):
        # its over-width form reads the input as contiguous NCHW whatever its strides, and its
        # own outputs are permuted views: without this a chain of them computes garbage
        y = self.layer(x.contiguous())
        return F.relu(y) if self.relu else y


class CSRLinear:
    def __init__(self, m, relu):
        w, self.bias = _weights(m)
        with warnings.catch_warnings():     # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            self.w = w.to_sparse_csr()
        self.relu = relu

    def __call__(self, x):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = torch.sparse.mm(self.w, x.reshape(-1, x.shape[-1]).t()).t()
        y = y if self.bias is None else y + self.bias
        y = y.reshape(*x.shape[:-1], y.shape[-1])
        return F.relu(y) if self.relu else y


def _sparseprop_fits(m):
    return (isinstance(m, nn.Linear) or
            (m.groups == 1 and m.dilation == (1, 1) and m.padding_mode == "zeros"
             and m.kernel_size[0] == m.kernel_size[1] and m.stride[0] == m.stride[1] in (1, 2)
             and isinstance(m.padding, tuple) and m.padding[0] == m.padding[1]))


def candidates(m, relu, kernels=KERNELS):
    """{name: callable(x) -> layer output (ReLU applied when `relu`)} for layer `m`."""
    out = {}
    if isinstance(m, nn.Conv2d) and (m.dilation != (1, 1) or m.padding_mode != "zeros"
                                     or isinstance(m.padding, str)):
        return out            # only dense handles these
    if "direct" in kernels and (lib := direct_library()) is not None:
        out["direct"] = Direct(m, relu, lib)
    if "sparseprop" in kernels and _sparseprop_fits(m) and (mods := sparseprop_modules()):
        if isinstance(m, nn.Linear):
            out["sparseprop"] = Sparseprop(m, relu, mods)
        else:
            out["sparseprop"] = Sparseprop(m, relu, mods, over_on=False)
            if m.stride[0] == 1:     # its other vectorization does stride 1 only
                out["sparseprop-on"] = Sparseprop(m, relu, mods, over_on=True)
    if "csr" in kernels and isinstance(m, nn.Linear):
        out["csr"] = CSRLinear(m, relu)
    return out

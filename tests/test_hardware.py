"""A setting the machine cannot run is refused when the run starts (one line, exit 2), one it
runs slowly is said in one line; config resolution stays the same on every machine. The
capability probes are patched: this CPU machine stands in for the others."""
import os
import stat

import pytest
import torch

from sparsecs import config as C
from sparsecs import hardware
import train

TINY = ["configs/quick/sgd.yaml", "model=resnet20", "width=0.125", "epochs=1", "train_subset=64",
        "device=cpu", "bn_recal=0"]


def run_main(tmp_path, capsys, *overrides):
    code = train.main([*TINY, *overrides, "--results", str(tmp_path), "--quiet"])
    return code, capsys.readouterr().err


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    block = "processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse2 avx2 {more}\n\n"
    for more, want in (("avx512f avx512bw avx512_bf16", True), ("avx512f amx_tile amx_bf16", True),
                       ("avx512f avx512bw", False), ("", False)):
        p = tmp_path / "cpuinfo"
        p.write_text(block.format(more=more))
        assert hardware.cpu_native_bf16(str(p)) is want, more


def test_the_cxx_probe_follows_path(tmp_path, monkeypatch):
    """inductor's C++ compiler is g++ (or $CXX) on PATH: none on PATH, none found; a g++ there, found."""
    monkeypatch.delenv("CXX", raising=False)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert hardware.cxx_compiler() is None
    gxx = empty / "g++"
    gxx.write_text("#!/bin/sh\n")
    gxx.chmod(gxx.stat().st_mode | stat.S_IXUSR)
    assert hardware.cxx_compiler() == str(gxx)


def test_compile_without_a_cxx_compiler_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(hardware, "cxx_compiler", lambda: None)
    code, err = run_main(tmp_path, capsys, "compile=true")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: compile=true:") and "C++ compiler" in err
    # resolution does not look at the machine: the same config and hash as anywhere else
    cfg = C.build(TINY[0], [*TINY[1:], "compile=true"])
    assert cfg["compile"] is True and C.config_hash(cfg) == C.config_hash(C.resolve(dict(cfg)))


def fake_gpu(monkeypatch, bf16, emulated=False):
    """A CUDA device as train._setup sees it, on a CPU machine: refused before any CUDA call."""
    monkeypatch.setattr(hardware, "pick_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: bf16 or (emulated and including_emulation))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla P100")


def test_bf16_on_a_gpu_without_bf16_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    fake_gpu(monkeypatch, bf16=False)
    code, err = run_main(tmp_path, capsys, "precision=bf16", "device=cuda")
    assert code == 2
    assert err.count("\n") == 1 and "precision=bf16: this GPU (Tesla P100) has no bfloat16" in err
    cuda = torch.device("cuda")
    fp32 = C.build(TINY[0], TINY[1:])
    assert hardware.device_problem(fp32, cuda) is None   # fp32 on the same GPU is fine


def test_compile_on_a_gpu_needs_triton_and_a_c_compiler(monkeypatch):
    fake_gpu(monkeypatch, bf16=True)
    cfg, cuda = C.build(TINY[0], [*TINY[1:], "compile=true"]), torch.device("cuda")
    monkeypatch.setattr(hardware, "has_triton", lambda: True)
    monkeypatch.setattr(hardware, "c_compiler", lambda: "/usr/bin/gcc")
    assert hardware.device_problem(cfg, cuda) is None
    monkeypatch.setattr(hardware, "c_compiler", lambda: None)
    assert "C compiler" in hardware.device_problem(cfg, cuda)
    monkeypatch.setattr(hardware, "has_triton", lambda: False)
    assert "needs Triton" in hardware.device_problem(cfg, cuda)
    # the CPU's own compiler is not what a GPU compile needs, nor the reverse
    monkeypatch.setattr(hardware, "cxx_compiler", lambda: None)
    assert hardware.device_problem(cfg, torch.device("cpu")).startswith("compile=true: torch.compile builds C++")


def test_emulated_bf16_is_a_note_not_a_refusal(monkeypatch):
    cfg = C.build(TINY[0], [*TINY[1:], "precision=bf16"])
    fake_gpu(monkeypatch, bf16=False, emulated=True)
    cuda = torch.device("cuda")
    assert hardware.device_problem(cfg, cuda) is None and "emulated" in hardware.device_note(cfg, cuda)
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: True)
    assert hardware.device_note(cfg, torch.device("cpu")) is None


def test_bf16_on_a_cpu_without_native_bf16_says_so_once_and_trains(tmp_path, capsys, monkeypatch, one_thread):
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: False)
    code = train.main([*TINY, "precision=bf16", "--results", str(tmp_path)])
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "without native bf16" in line]
    assert code == 0 and len(notes) == 1, err
    assert "slower than fp32" in notes[0] and "precision=fp32 is faster here" in notes[0]
    assert os.path.isfile(os.path.join(tmp_path, "runs.csv"))

"""scripts/venv.sh's TORCH_INDEX (issue 37): the pip commands it builds, checked with a stand-in
.venv/bin/python that records its arguments (PyTorch's index is not reachable from CI)."""
import os
import shutil
import subprocess

import pytest

from tests import REPO

BASE = "-m pip install --quiet --disable-pip-version-check"


@pytest.fixture
def repo(tmp_path):
    os.makedirs(tmp_path / "scripts")
    for f in ("scripts/venv.sh", "requirements.txt", "requirements.lock"):
        shutil.copy(os.path.join(REPO, f), tmp_path / f)
    os.makedirs(tmp_path / ".venv" / "bin")
    py = tmp_path / ".venv" / "bin" / "python"
    py.write_text('#!/bin/sh\necho "$*" >> "$(dirname "$0")/calls"\n')
    py.chmod(0o755)
    (tmp_path / ".venv" / "bin" / "activate").write_text("")
    return tmp_path


def source(repo, **env):
    """Source venv.sh as test.sh does; (exit status, stderr, the pip calls made)."""
    calls = repo / ".venv" / "bin" / "calls"
    if calls.exists():
        calls.unlink()
    e = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "TORCH_INDEX", "REQUIREMENTS")}
    r = subprocess.run(["bash", "-c", "set -euo pipefail; source scripts/venv.sh"], cwd=repo,
                       env={**e, **env}, capture_output=True, text=True)
    return r.returncode, r.stderr, calls.read_text().splitlines() if calls.exists() else []


def test_default_installs_everything_from_pypi_in_one_call(repo):
    code, _, calls = source(repo)
    assert code == 0 and calls == [f"{BASE} -r requirements.txt -c requirements.lock"]


def test_torch_index_cpu_takes_torch_and_torchvision_from_pytorchs_cpu_index_first(repo):
    code, err, calls = source(repo, TORCH_INDEX="cpu")
    assert code == 0 and calls == [
        f"{BASE} --upgrade --no-deps --index-url https://download.pytorch.org/whl/cpu torch torchvision "
        f"-c requirements.lock",
        f"{BASE} -r requirements.txt -c requirements.lock"]
    assert "torch from https://download.pytorch.org/whl/cpu" in err
    assert source(repo, TORCH_INDEX="cpu")[2] == []            # installed: nothing again
    # switching back reinstalls (the stamp holds the index); ranges: no lock
    assert source(repo)[2] == [f"{BASE} -r requirements.txt -c requirements.lock"]
    code, _, calls = source(repo, TORCH_INDEX="https://example.org/simple", REQUIREMENTS="ranges")
    assert code == 0 and calls == [
        f"{BASE} --upgrade --no-deps --index-url https://example.org/simple torch torchvision",
        f"{BASE} -r requirements.txt"]
    assert source(repo, TORCH_INDEX="cu126")[2][0].endswith("--index-url https://download.pytorch.org/whl/cu126 "
                                                            "torch torchvision -c requirements.lock")


def test_a_bad_torch_index_is_one_line_and_exit_2(repo):
    code, err, calls = source(repo, TORCH_INDEX="gpu")
    assert code == 2 and calls == [] and err.strip().splitlines() == [
        "error: TORCH_INDEX must be cpu, a CUDA tag such as cu126, or an index URL, got 'gpu'"]


def test_an_unreachable_torch_index_stops_with_one_line(repo):
    py = repo / ".venv" / "bin" / "python"     # pip fails on the torch index, as it does here
    py.write_text('#!/bin/sh\necho "$*" >> "$(dirname "$0")/calls"\ncase "$*" in *--index-url*) exit 1;; esac\n')
    code, err, calls = source(repo, TORCH_INDEX="cpu")
    assert code == 1 and len(calls) == 1 and err.strip().splitlines()[-1] == (
        "error: pip could not install torch and torchvision from https://download.pytorch.org/whl/cpu; "
        "unset TORCH_INDEX to take them from PyPI")
    assert not (repo / ".venv" / ".requirements.sha1").exists()   # retried next time

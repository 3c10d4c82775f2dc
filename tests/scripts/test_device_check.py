"""scripts/device_check.py, the prepared check for a lent GPU, end to end in its CPU mode
(--dry): one row per part with a status, the summary files written, the CPU's promises kept
(a resumed run bit-identical, the one-process DDP run the same weights)."""
import csv
import os
import subprocess
import sys
import time

import pytest

from tests import REPO
from scripts import device_check

PARTS = ["env", "bf16_cl", "resume", "ddp_nccl", "fashion", "compile", "bench_epoch"]


def rows(out):
    with open(os.path.join(out, "summary.csv"), newline="") as f:
        return {r["part"]: r for r in csv.DictReader(f)}


def test_dry_mode_runs_every_part_on_the_cpu(tmp_path):
    # ~50 s on a quiet 2-core machine; the budget is what a loaded one needs (a part cut by the
    # budget would be a timeout row, not what this test is about)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "scripts.device_check", "--dry", "--out", str(out),
                        "--budget", "1200"], cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(out)
    assert list(got) == PARTS
    assert {p: got[p]["status"] for p in PARTS if got[p]["status"] not in ("ok", "skipped")} == {}
    assert got["compile"]["status"] == "skipped" and "--dry" in got["compile"]["details"]
    assert got["resume"]["status"] == "ok" and "bit-identical to the uninterrupted run" in got["resume"]["details"]
    assert "backend gloo" in got["ddp_nccl"]["details"] and "identical True" in got["ddp_nccl"]["details"]
    assert "GPU-h" in got["bench_epoch"]["details"] and (out / "bench_epoch.csv").is_file()
    md = (out / "summary.md").read_text()
    assert all(f"| {p} | {got[p]['status']} |" in md for p in PARTS)
    # at most 8 files come back from the device machine
    assert sorted(os.listdir(out)) == ["bench_epoch.csv", "log.txt", "summary.csv", "summary.md"]


def test_a_spent_budget_skips_every_part_with_a_row_each(tmp_path):
    assert device_check.main(["--dry", "--out", str(tmp_path), "--budget", "5"]) == 0
    got = rows(tmp_path)
    assert list(got) == PARTS and all(r["status"] == "skipped" and "time budget spent" in r["details"]
                                      for r in got.values())


def test_a_timed_out_part_is_killed_with_its_children_and_the_next_part_runs(tmp_path):
    c = device_check.Check(str(tmp_path), 60, dry=True)
    t0 = time.monotonic()
    # a child that outlives its parent's kill would keep the pipe open and hang communicate()
    code, _ = c.run(["sh", "-c", "sleep 30 & sleep 30"], timeout=1)
    assert code == "timeout" and time.monotonic() - t0 < 10
    row = c.part("boom", 10, lambda t: 1 / 0)
    assert row["status"] == "FAIL" and "ZeroDivisionError" in row["details"]
    assert c.part("next", 10, lambda t: ("ok", "ran"))["status"] == "ok"
    c.log.close()


@pytest.mark.parametrize("present", [True, False])
def test_fashion_data_is_found_in_the_carried_folder(tmp_path, monkeypatch, present):
    monkeypatch.setattr(device_check, "DEBIAN_FASHION", str(tmp_path / "nowhere"))
    monkeypatch.setattr(device_check, "REPO", str(tmp_path))
    gz = tmp_path / "gz"
    gz.mkdir()
    for f in device_check.FASHION_GZ[: None if present else -1]:
        (gz / f).write_bytes(b"")
    found = device_check.find_fashion(str(gz))
    assert found == (({"FASHION_MNIST_SYSTEM_DIR": str(gz)}, None) if present else None)

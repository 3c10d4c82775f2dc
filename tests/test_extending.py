"""Adding a method is one file in optim/ plus one registry line; adding a data set is one
registry entry. Both are tried for real: a copy of the repository gets a toy structured method
(an epoch-valued key, a key that takes a target from another entry, its own mode, label and
colour), a small profile runs it with epochs_scale and target_from, and the report shows it; a
toy data set of 1x16x16 images trains for one epoch."""
import csv
import os
import shutil
import subprocess
import sys

import torch

from sparsecs import config as C
from sparsecs import data
import train

from tests import REPO

TOY_METHOD = '''"""Toy method for tests/test_extending.py: SGD that zeroes a random `target` fraction of every
conv layer's filters after epoch `prune_epoch` and keeps them zero."""
import torch
from torch import nn

from .sgd import SGD


class RandomFilters(SGD):
    name = "random_filters"
    label, role, color, marker = "Random filters", "baseline", "#999933", "h"
    mode = "channel"
    defaults = {**SGD.defaults, "target": 0.5, "prune_epoch": 3}
    # its own key (target and milestones are declared in schema.OPTIM): an epoch, scaled
    keys = {"prune_epoch": dict(type="int", range=">= 1", role="epochs", help="epoch to prune after")}

    def __init__(self, model, hp, steps_per_epoch, epochs):
        super().__init__(model, hp, steps_per_epoch, epochs)
        self.convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        self.masks = None

    def end_epoch(self, epoch):
        if epoch + 1 == self.hp["prune_epoch"] and self.masks is None:
            g = torch.Generator().manual_seed(0)
            self.masks = []
            for m in self.convs:
                k = int(round(self.hp["target"] * m.out_channels))
                keep = torch.ones(m.out_channels)
                keep[torch.randperm(m.out_channels, generator=g)[:k]] = 0
                self.masks.append(keep.view(-1, 1, 1, 1).to(m.weight))
            self._apply()
        return {}

    def step(self):
        super().step()
        if self.masks is not None:
            self._apply()

    @torch.no_grad()
    def _apply(self):
        for m, keep in zip(self.convs, self.masks):
            m.weight.mul_(keep)
            buf = self.optimizer.state.get(m.weight, {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(keep)

    def state_dict(self):
        return {**super().state_dict(), "masks": self.masks}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.masks = state["masks"]

    def summary(self):
        return {**super().summary(), "target": self.hp["target"]}
'''

PROFILE = """evidence: small-scale
seeds: [0]
overrides: [model=resnet20, width=0.25, epochs=4, batch_size=64, train_subset=256, device=cpu]
epochs_scale: 0.5
runs:
  - name: sgd
    config: configs/quick/sgd.yaml
  - name: filters
    config: configs/quick/filter_prune.yaml
    overrides: [optim.prune_end=1]
    grid: {optim.target: [0.25, 0.5]}
  - name: toy
    config: configs/toy.yaml
    target_from: filters
    target_metric: filter_sparsity
"""


def _copy_repo(dst):
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in files.decode().split("\0"):
        if not rel or rel.startswith("results/"):
            continue
        src = os.path.join(REPO, rel)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(dst, rel)) or dst, exist_ok=True)
            shutil.copy2(src, os.path.join(dst, rel))


def test_a_new_method_is_one_file_and_one_registry_line(tmp_path, one_thread):
    repo = tmp_path / "repo"
    _copy_repo(repo)
    (repo / "optim" / "random_filters.py").write_text(TOY_METHOD)
    reg = (repo / "optim" / "__init__.py").read_text()
    # the one registry line (and its import, as every method has)
    reg = reg.replace("from .sgd import SGD\n", "from .random_filters import RandomFilters\nfrom .sgd import SGD\n")
    reg = reg.replace("    SGD,\n", "    SGD,\n    RandomFilters,\n", 1)
    (repo / "optim" / "__init__.py").write_text(reg)
    (repo / "configs" / "toy.yaml").write_text(
        "inherit: quick/base.yaml\nmethod: random_filters\noptim: {lr: 0.1, prune_epoch: 4, target: 0.5}\n")
    (repo / "configs" / "profiles" / "toy.yaml").write_text(PROFILE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    p = subprocess.run([sys.executable, "sweep.py", "toy", "--jobs", "1", "--threads", "1"], cwd=repo,
                       capture_output=True, text=True, env=env, timeout=1800)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    runs_dir = repo / "results" / "runs"
    toy = [d for d in os.listdir(runs_dir) if "-random_filters-" in d]
    assert len(toy) == 2                                    # one per filter_prune point
    import yaml
    for d in toy:
        cfg = yaml.safe_load((runs_dir / d / "config.yaml").read_text())
        # epochs_scale reached its key: 4 x 0.5 = 2, kept inside the 2 epochs (at most epochs - 1)
        assert cfg["epochs"] == 2 and cfg["optim"]["prune_epoch"] == 1
        assert cfg["optim"]["target"] in (0.25, 0.5)        # its target key took filter_prune's fraction
        assert d.startswith("digits-resnet20-w0.25-random_filters-t0.")   # its run-name tag
    p = subprocess.run([sys.executable, "report.py", "toy"], cwd=repo, capture_output=True, text=True,
                       env=env, timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    with open(repo / "results" / "toy" / "tables" / "points.csv", newline="") as f:
        pts = [r for r in csv.DictReader(f) if r["entry"] == "toy"]
    assert len(pts) == 2 and {r["method"] for r in pts} == {"random_filters"}
    assert {r["mode"] for r in pts} == {"channel"}
    report = (repo / "results" / "toy" / "REPORT.md").read_text()
    assert "Random filters" in report                       # its own label, in the tables
    tables = [t for t in os.listdir(repo / "results" / "toy" / "tables") if t.endswith(".md")]
    assert any("Random filters" in (repo / "results" / "toy" / "tables" / t).read_text() for t in tables)
    # its look reaches the figures: its own marker (colours are given per figure from the
    # Okabe-Ito palette, distinct within the figure)
    q = subprocess.run([sys.executable, "-c", "from sparsecs.reporting import style; "
                        "print(style.looks([('random_filters', 'toy')])[('random_filters', 'toy')])"],
                       cwd=repo, capture_output=True, text=True, env=env)
    assert "'marker': 'h'" in q.stdout, q.stdout + q.stderr


def test_a_new_data_set_is_one_registry_entry(tmp_path, one_thread):
    g = torch.Generator().manual_seed(0)

    def read(spec, root, download=True, device="cpu", workers=0):
        x = torch.randint(0, 256, (96, *spec.input_shape), dtype=torch.uint8, generator=g)
        y = torch.arange(96) % spec.num_classes
        return data.Data(spec, x, y, x[:32].clone(), y[:32].clone(), device=device)

    spec = data.register(data.DataSet("toy16", "Toy-16", 4, (1, 16, 16), (0.5,), (0.25,), 1, True, read, 96, 32))
    try:
        cfg = C.build(None, ["dataset=toy16", "model=resnet20", "width=0.125", "epochs=1", "batch_size=32",
                             "device=cpu"])
        assert cfg["crop_padding"] == 1 and cfg["flip"] is True     # its augmentation defaults
        s = train.train(cfg, results=str(tmp_path), quiet=True)
        assert s["dataset"] == "toy16" and s["epochs"] == 1
        # the model was built for its 1x16x16 input: 1-channel stem, MACs at 16x16
        m = train.build_model(cfg, spec.num_classes, "cpu")
        assert m.stem[0].in_channels == 1 and m.input_shape == (1, 16, 16)
        # conv MACs scale with the image area: at 16x16 about a quarter of what 32x32 gives
        at32 = train.metrics.counts(train.build_model(cfg, spec.num_classes, "cpu", (1, 32, 32)))
        assert at32["flops_dense"] / 4.1 < s["flops_dense"] < at32["flops_dense"] / 3.9
    finally:
        data.DATASETS.pop("toy16")

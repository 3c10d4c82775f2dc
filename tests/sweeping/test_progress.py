"""Progress on long work: the sweep's [k/N] start/done lines with their ETA, train.py's ETA,
and what --dry-run says a profile costs."""
import os
import re

from sparsecs import cli
from sparsecs import config as C
from sparsecs import fileio
from sparsecs import hardware
from sparsecs import paths
from sparsecs import summaries
import sweep
import train
from sparsecs.sweeping import schedule
from tests import synthetic
from tests import REPO
from tests.sweeping.test_sweep import SGD, profile

ST = os.path.join(REPO, "configs", "quick", "soft_threshold.yaml")


def test_duration_reads_as_hours_minutes_seconds():
    assert [cli.duration(s) for s in (0, 45, 59.6, 725, 3600, 11220, -3)] == [
        "0s", "45s", "1m 00s", "12m 05s", "1h 00m", "3h 07m", "0s"]


class Clocked:
    """A launcher that trains nothing: `jobs` runs at once, each ending at the time the test
    gives it (the sweep's clock is the test's)."""

    def __init__(self, clock, ends, jobs=2):
        self.clock, self.ends, self.jobs, self.running = clock, list(ends), jobs, []

    def free(self, running):
        return self.jobs - running

    def submit(self, specs):
        out = {}
        for s in specs:
            h = object()
            self.running.append(h)
            out[h] = s
        return out

    def wait(self, handles):
        h = self.running.pop(0)          # in the order they started
        self.clock[0] = self.ends.pop(0)
        return [(handles[h], 0, "")]

    def close(self, cancel=False, handles=()):
        pass


def test_the_sweep_prints_k_of_n_with_elapsed_and_eta(tmp_path, monkeypatch, capsys):
    clock = [0.0]
    monkeypatch.setattr(schedule.time, "time", lambda: clock[0])
    path = profile(tmp_path, f"seeds: [0, 1, 2]\noverrides: [epochs=1]\nruns:\n  - name: a\n    config: {SGD}\n")
    # two at once: runs 1 and 2 start at 0 s; run 1 ends at 100 s and run 3 starts; run 2 ends
    # at 160 s, run 3 at 220 s (took 100, 160, 120 s)
    state = sweep.run_all(sweep.expand(path), str(tmp_path / "r"), Clocked(clock, [100, 160, 220]))
    assert sorted(v[0] for v in state.values()) == ["finished"] * 3
    out = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[")]
    names = [ln.split()[-1] for ln in out if " start " in ln]
    assert len(set(names)) == 3
    assert out == [
        f"[1/3] start {names[0]}", f"[2/3] start {names[1]}",
        # ETA = mean of the finished runs' times x runs left / 2 at once: 100 x 2 / 2 = 100 s
        f"[1/3] done {names[0]} (took 1m 40s; elapsed 1m 40s, ETA 1m 40s)",
        f"[3/3] start {names[2]}",
        # (100 + 160) / 2 x 1 / 2 = 65 s
        f"[2/3] done {names[1]} (took 2m 40s; elapsed 2m 40s, ETA 1m 05s)",
        f"[3/3] done {names[2]} (took 2m 00s; elapsed 3m 40s, ETA 0s)"]


class OutOfOrder(Clocked):
    """Clocked, but the runs end in the order the test gives (indices into the started ones)."""

    def __init__(self, clock, ends, order, jobs=2):
        super().__init__(clock, ends, jobs)
        self.order, self.started = list(order), []

    def submit(self, specs):
        out = super().submit(specs)
        self.started += list(out)
        return out

    def wait(self, handles):
        h = self.started[self.order.pop(0)]
        self.running.remove(h)
        self.clock[0] = self.ends.pop(0)
        return [(handles[h], 0, "")]


def test_a_done_line_carries_its_own_start_number(tmp_path, monkeypatch, capsys):
    """issue 37: `[2/64] start X` was followed by `[1/64] done X` when the second run ended first."""
    clock = [0.0]
    monkeypatch.setattr(schedule.time, "time", lambda: clock[0])
    path = profile(tmp_path, f"seeds: [0, 1]\noverrides: [epochs=1]\nruns:\n  - name: a\n    config: {SGD}\n")
    sweep.run_all(sweep.expand(path), str(tmp_path / "r"), OutOfOrder(clock, [50, 80], order=[1, 0]))
    out = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[")]
    started = {ln.split()[-1]: ln.split()[0] for ln in out if " start " in ln}
    done = [(ln.split()[0], ln.split()[2]) for ln in out if " done " in ln]
    assert [k for k, _ in done] == ["[2/2]", "[1/2]"]           # the second run ended first
    assert all(started[name] == k for k, name in done)


def test_the_first_eta_weighs_the_runs_left_by_their_cost(tmp_path, monkeypatch, capsys):
    """The costly run goes first: 8 epochs in 80 s, then three 1-epoch runs of the same data,
    model and method are left. Their cost is 1/8 of it each: ETA 3 x 10 s = 30 s, where the
    mean time of the runs ended (80 s x 3 = 4 min) said eight times that."""
    clock = [0.0]
    monkeypatch.setattr(schedule.time, "time", lambda: clock[0])
    path = profile(tmp_path, f"seeds: [0]\nruns:\n  - name: big\n    config: {SGD}\n    overrides: [epochs=8]\n"
                             f"  - name: small\n    config: {SGD}\n    overrides: [epochs=1]\n"
                             f"  - name: small2\n    config: {SGD}\n    overrides: [epochs=1, optim.momentum=0.8]\n"
                             f"  - name: small3\n    config: {SGD}\n    overrides: [epochs=1, optim.momentum=0.7]\n")
    sweep.run_all(sweep.expand(path), str(tmp_path / "r"), Clocked(clock, [80, 90, 100, 110], jobs=1))
    done = [ln for ln in capsys.readouterr().out.splitlines() if " done " in ln]
    assert done[0].endswith("(took 1m 20s; elapsed 1m 20s, ETA 30s)"), done[0]
    assert done[1].endswith("ETA 20s)") and done[-1].endswith("ETA 0s)"), done


def test_train_log_lines_carry_an_eta_from_the_epochs_so_far(tmp_path, capsys):
    cfg = C.build(None, ["model=resnet20", "width=0.125", "epochs=3", "device=cpu", "train_subset=128",
                         "bn_recal=0"])
    train.train(cfg, results=str(tmp_path), quiet=False)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if re.search(r" epoch \d/3: ", ln)]
    assert len(lines) == 3
    secs = [float(r["seconds"]) for r in summaries.read_metrics(str(tmp_path / "runs" / C.run_name(cfg)))]
    for k, ln in enumerate(lines, 1):
        want = cli.duration(sum(secs[:k]) / k * (3 - k))   # mean epoch so far x epochs left
        assert ln.endswith(f"s, ETA {want}"), (ln, want)
    assert lines[-1].endswith("ETA 0s")


COST = f"""
seeds: [0, 1]
overrides: [epochs=2, train_subset=128, model=resnet20, width=0.125, device=cpu]
runs:
  - name: a
    config: {SGD}
  - name: b
    config: {SGD}
    overrides: [model=vgg16, epochs=3]
    seeds: [0]
  - name: st
    config: {ST}
    target_sparsity: [0.9]
    calibrate: {{key: optim.lam, start: 1.0e-3, tolerance: 0.3, rounds: 3}}
"""


def test_dry_run_prints_each_runs_epochs_and_the_cost_left(tmp_path, capsys):
    path = profile(tmp_path, COST)
    results = tmp_path / "results"
    a0 = next(s for s in sweep.expand(path) if s.entry == "a")
    sweep.materialize(a0, str(results))
    # a complete run of `a` (committed results: no weights) that took 180 s an epoch
    timed_run(str(results), a0.name, a0.cfg, 180.0, hardware.environment()["device_name"])
    # --retrain: the committed complete run is to train again, and the dry run says it writes over it
    assert sweep.main([path, "--dry-run", "--retrain", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"todo  {a0.name}  2 epochs  \(committed complete run: --retrain trains it again, "
                     rf"writing over it\)$", out, re.M)
    assert ("1 committed complete run(s) would be retrained, writing over them (--retrain); without "
            "--retrain they count as done") in out
    assert re.search(r"todo  digits-vgg16-w0.125-sgd-s0-\w+  3 epochs$", out, re.M)
    assert re.search(r"wait  st\[target_sparsity=0.9, seed=1\]  \(the λ search of .+\)  2 epochs$", out, re.M), out
    # to train: a (2 x 2 epochs), b (3), st's first round and its follower (2 + 2) = 11; only
    # a's runs have a measured epoch: 4 x 180 s = 0.2 h; the search may take 2 more rounds of 2
    here = hardware.environment()["device_name"]
    assert (f"cost: 11 run-epochs to train; 0.2 h in all (0.2 h at epoch times measured on this CPU "
            f"({here}); from {results}/runs) (3 run(s) with no measured epoch time not counted); the λ "
            f"searches' later rounds may add up to 4 run-epochs") in out
    # by default (and with the old --reuse-complete) committed complete runs count as done: 2
    # epochs fewer, 0.1 h, and the dry run says how many and how to retrain them
    for flags in ([], ["--reuse-complete"]):
        assert sweep.main([path, "--dry-run", *flags, "--results", str(results)]) == 0
        out = capsys.readouterr().out
        assert re.search(rf"done  {a0.name}  2 epochs$", out, re.M)
        assert "cost: 9 run-epochs to train; 0.1 h in all (0.1 h at epoch times measured on this CPU" in out
        assert ("1 of the finished runs are committed complete runs (no weights here), counted as done; "
                "--retrain would train them again, writing over them") in out
    # nothing measured: run-epochs only, and it says why
    assert sweep.main([path, "--dry-run", "--results", str(tmp_path / "empty")]) == 0
    assert "cost: 11 run-epochs to train; no epoch time measured" in capsys.readouterr().out


def timed_run(results, name, cfg, seconds, device, **setting):
    """A complete run folder (tests/synthetic) whose epochs took `seconds` each on `device`,
    with its config.yaml, in the setting of cfg changed by `setting` (precision=..., ...)."""
    import yaml
    synthetic.write_run(results, name, cfg)
    d = paths.run_dir(results, name)
    fileio.save_csv([{**r, "seconds": seconds} for r in summaries.read_metrics(d)], paths.path(d, paths.METRICS))
    summary = summaries.read_summary(d)
    fileio.save_json({**summary, "device_name": device}, paths.path(d, paths.SUMMARY))
    with open(paths.path(d, paths.CONFIG), "w") as f:
        yaml.safe_dump({**cfg, **setting}, f, sort_keys=False)


TIMED = f"""
seeds: [0]
overrides: [epochs=2, train_subset=128, model=resnet20, width=0.125, device=cpu, precision=fp32,
            channels_last=true, compile=false]
runs:
  - name: a
    config: {SGD}
"""


def test_dry_run_times_runs_by_this_machine_and_setting_first(tmp_path, capsys):
    """Epoch times: this machine's runs in the run's setting; else other machines' in it, said
    so; else this machine's in another setting, with a note. Runs of seeds 1-4 stand for
    committed runs of the same data, model, width and method (their seconds set by hand)."""
    from sparsecs.sweeping import timing
    here = hardware.environment()["device_name"]
    path = profile(tmp_path, TIMED)
    results = str(tmp_path / "results")
    a0 = sweep.materialize(sweep.expand(path)[0], results)
    cfg = lambda seed: C.build(a0.config, a0.overrides + [f"seed={seed}"])  # noqa: E731
    made = {}

    def put(seed, seconds, device, **setting):
        c = cfg(seed)
        made[seed] = C.run_name(c)
        timed_run(results, made[seed], c, seconds, device, **setting)

    put(1, 100.0, here)                                   # this machine, this setting
    put(2, 90.0, here)
    put(3, 300.0, "Other CPU (AVX2)")                     # another machine, this setting
    put(4, 50.0, here, precision="bf16")                  # this machine, another setting
    m = timing.epoch_seconds(results)
    assert timing.epoch_time(m, a0.cfg, here)[:2] == (95.0, "here")      # (2 x 100 + 2 x 90) / 4
    assert sweep.main([path, "--dry-run", "--results", results]) == 0
    out = capsys.readouterr().out
    assert f"0.1 h in all (0.1 h at epoch times measured on this CPU ({here}); from {results}/runs)" in out
    import shutil
    for seed in (1, 2):
        shutil.rmtree(paths.run_dir(results, made[seed]))
    m = timing.epoch_seconds(results)
    assert timing.epoch_time(m, a0.cfg, here)[:2] == (300.0, "other")
    assert sweep.main([path, "--dry-run", "--results", results]) == 0
    out = capsys.readouterr().out      # 2 epochs x 300 s
    assert f"0.2 h in all (0.2 h at epoch times of another CPU: Other CPU (AVX2); from {results}/runs)" in out
    assert "another setting" not in out
    shutil.rmtree(paths.run_dir(results, made[3]))
    m = timing.epoch_seconds(results)
    assert timing.epoch_time(m, a0.cfg, here)[:2] == (50.0, "setting")
    assert sweep.main([path, "--dry-run", "--results", results]) == 0
    out = capsys.readouterr().out      # 2 epochs x 50 s, this machine, in bf16: said so
    assert (f"0.0 h in all (0.0 h at epoch times measured on this CPU ({here}); from {results}/runs); "
            f"note: runs in precision fp32, channels_last True, compile False are timed by runs in "
            f"precision bf16, channels_last True, compile False, another setting") in out


def test_several_profiles_one_sweep_an_earlier_profiles_ready_runs_first(tmp_path, monkeypatch, capsys):
    """`sweep.py A B`: B's runs take only the slots A leaves free. A has 3 runs, B 2, one slot:
    A's three start before any of B's; with two slots and A down to its last run, B fills the
    other."""
    clock = [0.0]
    monkeypatch.setattr(schedule.time, "time", lambda: clock[0])
    a = profile(tmp_path, f"seeds: [0, 1, 2]\noverrides: [epochs=1]\nruns:\n  - name: a\n    config: {SGD}\n", "a.yaml")
    b = profile(tmp_path, f"seeds: [0, 1]\noverrides: [epochs=2]\nruns:\n  - name: b\n    config: {SGD}\n", "b.yaml")
    results = str(tmp_path / "r")
    args = sweep._parser().parse_args([b, a])       # B listed first: B's runs go first
    specs, _ = sweep._plan(args, results)
    assert [s.rank for s in specs] == [0, 0, 1, 1, 1]
    args = sweep._parser().parse_args([a, b])
    specs, _ = sweep._plan(args, results)
    assert [(s.rank, s.identity["profile"]) for s in specs] == [(0, "a")] * 3 + [(1, "b")] * 2
    epochs = {s.name: s.cfg["epochs"] for s in specs}
    sweep.run_all(specs, results, Clocked(clock, [10, 20, 30, 40, 50], jobs=1))
    started = [ln.split()[-1] for ln in capsys.readouterr().out.splitlines() if " start " in ln]
    assert [epochs[n] for n in started] == [1, 1, 1, 2, 2]
    specs, _ = sweep._plan(sweep._parser().parse_args([a, b]), str(tmp_path / "r2"))
    epochs = {s.name: s.cfg["epochs"] for s in specs}
    # two slots: A's runs 1-2 start; run 1 ends, A's run 3 takes its slot; run 2 ends with
    # nothing of A's ready, so B's first run starts beside A's last
    sweep.run_all(specs, str(tmp_path / "r2"), Clocked(clock, [10, 20, 30, 40, 50], jobs=2))
    started = [ln.split()[-1] for ln in capsys.readouterr().out.splitlines() if " start " in ln]
    assert [epochs[n] for n in started] == [1, 1, 1, 2, 2]


def test_several_profiles_refuse_narrowing_and_different_folders(tmp_path, capsys):
    a = profile(tmp_path, f"seeds: [0]\nruns:\n  - name: a\n    config: {SGD}\n", "a.yaml")
    b = profile(tmp_path, f"seeds: [0]\nruns:\n  - name: b\n    config: {SGD}\n", "b.yaml")
    c = profile(tmp_path, f"results: scratch/elsewhere\nseeds: [0]\nruns:\n  - name: c\n    config: {SGD}\n",
                "c.yaml")
    assert sweep.main([a, b, "--only", "a", "--dry-run", "--results", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --only, --seeds and --levels narrow one profile; give one"]
    assert sweep.main([a, c, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: these profiles keep their runs in different folders")


UNTIL = f"""
seeds: [0, 1, 2]
overrides: [epochs=8, train_subset=128, model=resnet20, width=0.125, device=cpu, precision=fp32,
            channels_last=true, compile=false]
runs:
  - name: a
    config: {SGD}
"""


def test_until_starts_only_runs_whose_estimate_ends_before_it(tmp_path, monkeypatch, capsys):
    """--until: a run starts only if (epochs left x the measured epoch time) x 1.1 + 60 s ends
    before it. Epochs here take 100 s (a complete run of the same data, model and method), so
    an 8-epoch run needs 940 s, a 1-epoch run (profile b) and the 8-epoch run that already has
    7 epochs in its metrics.csv 170 s each. One slot, until t = 1100 s: a's first run starts at
    0; at 900 s a's resumed run (ends by 1070) goes before b's runs, which fit as well; at 950 s
    neither a's third (1890) nor b's (1120) fits, so the sweep stops with 3 runs not run."""
    clock = [0.0]
    monkeypatch.setattr(schedule.time, "time", lambda: clock[0])
    here = hardware.environment()["device_name"]
    a = profile(tmp_path, UNTIL, "a.yaml")
    b = profile(tmp_path, UNTIL.replace("seeds: [0, 1, 2]", "seeds: [0, 1]").replace("epochs=8", "epochs=1")
                .replace("name: a", "name: b"), "b.yaml")
    results = str(tmp_path / "r")
    specs, _ = sweep._plan(sweep._parser().parse_args([a, b]), results)
    a0 = specs[0]
    timed = C.build(a0.config, a0.overrides + ["seed=9"])
    timed_run(results, C.run_name(timed), timed, 100.0, here)
    partial = paths.run_dir(results, specs[1].name)          # a's seed 1: 7 of 8 epochs done
    os.makedirs(partial)
    fileio.save_csv([{"epoch": e, "seconds": 100.0} for e in range(1, 8)], paths.path(partial, paths.METRICS))
    state = sweep.run_all(specs, results, Clocked(clock, [900, 950], jobs=1), until=1100.0)
    out = capsys.readouterr().out.splitlines()
    started = [ln.split()[-1] for ln in out if " start " in ln]
    assert started == [specs[0].name, specs[1].name]
    assert sorted(v[0] for v in state.values()) == ["finished"] * 2 + ["not run"] * 3
    stop = [ln for ln in out if ln.startswith("--until ")]
    assert len(stop) == 1 and "stopped; 3 ready run(s) would end after it" in stop[0], out


def test_until_starts_nothing_without_a_measured_epoch_and_refuses_slurm(tmp_path, monkeypatch, capsys):
    clock = [0.0]
    monkeypatch.setattr(schedule.time, "time", lambda: clock[0])
    a = profile(tmp_path, UNTIL, "a.yaml")
    specs, _ = sweep._plan(sweep._parser().parse_args([a]), str(tmp_path / "r"))
    state = sweep.run_all(specs, str(tmp_path / "r"), Clocked(clock, [], jobs=2), until=1e12)
    assert [v[0] for v in state.values()] == ["not run"] * 3
    assert not [ln for ln in capsys.readouterr().out.splitlines() if " start " in ln]
    assert sweep.main([a, "--launcher", "slurm", "--until", "23:59", "--results", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == "error: --until is for the local launcher (a SLURM job has --time)"
    import pytest
    for bad in ("25:00", "soon", "2020-01-01T00:00"):
        with pytest.raises(SystemExit) as e:
            sweep.main([a, "--until", bad])
        assert e.value.code == 2
        assert "--until" in capsys.readouterr().err

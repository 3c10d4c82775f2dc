"""Verdicts against the budget (issue 35): a synthetic pair of profiles whose verdicts are
known by construction, the same-setting rule, the budget partner's validation, the budget
estimate from the dense model's gap, and the figure.

The pair: the same entries (dense SGD, xRDA at two λ, GMP at two targets) at 2 and 8 epochs.
Accuracy (tests/reporting/test_report.write_run, train accuracy 100): dense 98 + 0.1·seed at both
budgets; xRDA 97 − (decades of nonzeros − 1) + 0.1·seed at 2 epochs, 2 pp more at 8; GMP
2 pp below xRDA at the same sparsity at both budgets. xRDA's λ 1e-2 is 98% sparse at 2
epochs and 99% at 8, so 99% is reached only at the longer budget. Hence by hand:
claim A1 (xRDA against GMP) +2 pp at every level at both budgets: supported, held; claim A4
(xRDA against dense 98.1): −1.0 pp at 90% at 2 epochs (every level a loss: refuted), +1.0 pp
at 90% at 8 epochs (supported): moved."""
import math
import os

import pytest

import report
import sweep
from sparsecs.reporting import budget as B
from sparsecs.reporting import budget_document as BD
from sparsecs.reporting import figures as F
from sparsecs.reporting import style
from sparsecs.sweeping.profile import ProfileError, load_profile
from tests.reporting.test_report import FakeLauncher

PAIR = """
evidence: small-scale
claims: [A]
seeds: [0, 1, 2]
overrides: [epochs={epochs}, dataset=fashion_mnist{setting}]
{partner}runs:
  - name: sgd
    config: {repo}/configs/quick/sgd.yaml
  - name: xrda
    config: {repo}/configs/quick/xrda.yaml
    grid: {{optim.lam: [1.0e-3, 1.0e-2]}}
  - name: gmp
    config: {repo}/configs/quick/gmp.yaml
    grid: {{optim.target: [0.9, 0.99]}}
"""


def numbers(cfg):
    seed, m, long = cfg["seed"], cfg["method"], cfg["epochs"] == 8
    if m == "sgd":
        return 98.0 + 0.1 * seed, 0.0
    sp = {1e-3: 0.9, 1e-2: 0.99 if long else 0.98}[cfg["optim"]["lam"]] if m == "xrda" else cfg["optim"]["target"]
    acc = 97.0 - (-math.log10(1 - sp) - 1.0) + 0.1 * seed + (2.0 if long else 0.0)
    return (acc - 2.0 if m == "gmp" else acc), sp


def make_pair(tmp_path, short_setting="", partner="short", skip=(), extra=""):
    """short.yaml (2 epochs) and long.yaml (8 epochs, compare_budget: short), swept into one
    results folder (`extra`: more entries for both; long's entries in `skip` left untrained)."""
    results = str(tmp_path / "results")
    for name, epochs, setting, part in (("short", 2, short_setting, ""),
                                        ("long", 8, "", f"compare_budget: {partner}\n")):
        prof = tmp_path / f"{name}.yaml"
        prof.write_text(PAIR.format(epochs=epochs, setting=setting, partner=part, repo=sweep.REPO)
                        + extra.format(repo=sweep.REPO))
        if name == "short" or partner == "short":
            specs = [s for s in sweep.expand(str(prof)) if name == "short" or s.entry not in skip]
            state = sweep.run_all(specs, results, FakeLauncher(results, numbers))
            assert all(st == "finished" for st, _ in state.values())
    return str(tmp_path / "long.yaml"), results


def sides_of(prof, results):
    from sparsecs.reporting import load

    sides = sorted([B.side(prof, results, ["A"]), B.side(load.budget_partner(prof), results, ["A"])],
                   key=lambda s: s["epochs"])
    return sides, B.claim_rows(sides, ["A"])


def test_a_verdict_that_holds_one_that_flips_and_a_level_reached_only_at_the_longer_budget(tmp_path):
    prof, results = make_pair(tmp_path)
    sides, rows = sides_of(prof, results)
    assert [s["epochs"] for s in sides] == [2, 8] and [s["profile"] for s in sides] == ["short", "long"]
    by = {r["claim"].id: r for r in rows}
    assert by["1"]["verdicts"] == ["supported", "supported"] and by["1"]["moved"] is False
    assert by["4"]["verdicts"] == ["refuted", "supported"] and by["4"]["moved"] is True
    gmp = next(c for c in by["1"]["comparisons"] if c["b"]["entry"] == "gmp")
    # +2 pp at every level both curves cover; 99% only at 8 epochs (xRDA's points end at 98%)
    assert gmp["levels"][0.9][0][0] == pytest.approx(2.0) and gmp["levels"][0.9][1][0] == pytest.approx(2.0)
    assert gmp["levels"][0.99][0] is None and gmp["levels"][0.99][1][0] == pytest.approx(2.0)
    dense = by["4"]["comparisons"][0]
    assert dense["outcomes"] == ["loss", "win"]
    assert dense["levels"][0.9][0] == (pytest.approx(97.1 - 98.1), "loss")
    assert dense["levels"][0.9][1] == (pytest.approx(99.1 - 98.1), "win")

    lvls = B.levels(sides)
    assert lvls == [0.9, 0.95, 0.98, 0.99]
    reach = {(r["entry"], r["level"]): r["sides"] for r in B.reach_rows(sides, lvls)}
    (short, why), (long, _) = reach[("xrda", 0.99)]
    assert short == [] and why == "its points end at 98.00%"
    assert long == pytest.approx([98.0, 98.1, 98.2])
    assert all(v for v, _ in reach[("gmp", 0.99)])        # GMP takes the target: reached at both

    # the dense gap (train accuracy 100 against test 98.1) at both budgets: A4 testable
    gaps = [B.dense_gap(s) for s in sides]
    assert [g["gap"] for g in gaps] == [pytest.approx(1.9), pytest.approx(1.9)]

    md = "\n".join(BD.section(sides, ["A"], rows, B.reach_rows(sides, lvls), gaps, B.setting_diff(sides)))
    # each verdict with the levels it rests on: xRDA's curve ends at 98% at 2 epochs
    assert ("| A4. A regularizing effect (sparse at least as accurate as dense) | refuted (at 90, 95, 98% sparse) "
            "| supported (at 90, 95, 98, 99% sparse) | **moved** |") in md
    assert ("| A1. Sparser and more accurate than the baselines (unstructured) | supported (at 90, 95, 98% sparse) "
            "| supported (at 90, 95, 98, 99% sparse) | held |") in md
    assert "| A2. Structured sparsity | no evidence at this scale | no evidence at this scale | held |" in md
    assert [r["rests_on"] for r in rows if r["claim"].id == "4"] == [[[0.9, 0.95, 0.98], [0.9, 0.95, 0.98, 0.99]]]
    assert "Held: A1, A2, A3." in md                 # A2, A3: no evidence at either budget
    assert "not reached (its points end at 98.00%)" in md
    assert "rests on the setting check" not in md and "differ in their budget only" in md


def test_the_report_writes_the_section_the_tables_and_the_figure(tmp_path):
    prof, results = make_pair(tmp_path)
    out = str(tmp_path / "out")
    assert report.main([prof, "--results", results, "--out", out]) == 0
    text = open(os.path.join(out, "REPORT.md"), encoding="utf-8").read()
    assert "## Verdicts against the budget" in text and "![Accuracy against the training budget" in text
    assert text.index("## Verdicts against the budget") < text.index("## Tables")
    readme = open(os.path.join(out, "tables", "budget_readme.md"), encoding="utf-8").read()
    assert ("| A4 A regularizing effect (sparse at least as accurate as dense) | refuted (at 90, 95, 98% sparse) "
            "| supported (at 90, 95, 98, 99% sparse) | moved |") in readme
    assert "xRDA: not reached at 2 ep (its points end at 98.00%), 98.10 ± 0.10 at 8 ep" in readme
    runs_csv = open(os.path.join(out, "tables", "budget_runs.csv")).read().splitlines()
    assert len(runs_csv) == 1 + 2 * (3 + 6 + 6)       # header, each side's 15 runs
    for width in ("col", "page"):
        assert os.path.exists(os.path.join(out, "figures", f"budget_{width}.png"))
        d = F.DRAWN[f"budget_{width}"]
        assert d["titles"] == ["90% sparse", "95% sparse", "98% sparse", "99% sparse"]
        assert d["xticks"][0] == ["2", "8"] and d["size"][0] == {"col": 3.5, "page": 7.0}[width]


@pytest.mark.parametrize("setting, note", [(", precision=bf16", True), ("", False)])
def test_sides_that_differ_in_more_than_the_budget_say_so_beside_every_comparison(tmp_path, setting, note):
    prof, results = make_pair(tmp_path, short_setting=setting)
    sides, rows = sides_of(prof, results)
    diff = B.setting_diff(sides)
    assert diff == ({"precision": ["bf16", "fp32"]} if note else {})
    md = BD.section(sides, ["A"], rows, [], [B.dense_gap(s) for s in sides], diff)
    table = [l for l in md if l.startswith("| ")]
    comp = [l for l in "\n".join(md).split("### Each comparison")[1].split("###")[0].splitlines()
            if l.startswith("| ") and not l.startswith("| claim") and not l.startswith("| :")]
    assert comp and all(("sides differ in precision: bf16 / fp32; rests on the setting check" in l) == note
                        for l in comp)
    assert any("results/fashion_bf16/CHECK.md" in l for l in md) == note
    assert table


def test_an_unknown_or_self_partner_is_one_clear_line(tmp_path, capsys):
    prof, results = make_pair(tmp_path, partner="nowhere")
    with pytest.raises(ProfileError, match=r"long.yaml: compare_budget: no profile 'nowhere'; known: "):
        load_profile(prof)
    assert report.main([prof, "--results", results, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "compare_budget: no profile 'nowhere'" in err[0]
    (tmp_path / "self.yaml").write_text(PAIR.format(epochs=2, setting="", partner="compare_budget: self\n",
                                                    repo=sweep.REPO))
    with pytest.raises(ProfileError, match="compare_budget names this profile itself"):
        load_profile(str(tmp_path / "self.yaml"))


def test_the_budget_a4_needs_is_extrapolated_linearly_in_log_epochs():
    # gap(E) = 0.48 + 0.22 * ln(E / 8) / ln 4 = 1  ->  E = 8 * exp(0.52 / 0.22 * ln 4) = 211.9
    assert B.budget_needed([(32, 0.70), (8, 0.48)], 1.0) == pytest.approx(211.9, abs=0.1)
    assert B.budget_needed([(8, 0.48), (32, 0.40)], 1.0) is None      # no growth: no estimate
    sides = [{"epochs": 8}, {"epochs": 32}]
    gaps = [{"field": "train_acc_final", "train": 92.59, "test": 92.11, "gap": 0.48, "n": 3, "min_gap": 1.0},
            {"field": "train_acc_final", "train": 93.0, "test": 92.3, "gap": 0.70, "n": 3, "min_gap": 1.0}]
    text = "\n".join(BD.gap_lines(sides, gaps, ""))
    assert "8 ep: train_acc_final 92.59% − test 92.11% = **0.48 pp**" in text and "not testable" in text
    assert "**Estimate**" in text and "about 212 epochs" in text and "linearly in log(epochs)" in text
    # one side without a dense model: no trend to extrapolate, and the message names that side
    text = "\n".join(BD.gap_lines(sides, [gaps[0], None], ""))
    assert "32 ep has no complete dense run" in text and "did not grow" not in text
    text = "\n".join(BD.gap_lines(sides, [gaps[0], dict(gaps[1], n=1)], ""))
    assert "= **0.70 pp** (one seed; not testable)" in text


def test_work_left_at_a_level_does_not_read_as_a_miss():
    # reach()'s reasons for work left (budget.NOT_YET) against a fact about the method
    assert set(B.NOT_YET) == {"no run", "search not ended", "runs still to come"}
    assert BD._miss("runs still to come", " at 32 ep") == "not yet at 32 ep (runs still to come)"
    assert BD._miss("no run") == "not run yet"
    assert BD._miss("search not ended", " at 32 ep") == "not yet at 32 ep (its search has not ended)"
    assert BD._miss("plateau") == "not reached (plateau)"
    assert BD._miss("seed 2 collapses at 99% sparse", " at 8 ep") == \
        "not reached at 8 ep (seed 2 collapses at 99% sparse)"


def test_the_searchs_reason_word_says_why_a_level_is_not_reached():
    import pandas as pd

    df = pd.DataFrame(columns=["row", "entry", "mode", "role", "method"])
    s = {"df": df, "left": {"searches": [
        {"entry": "xrda", "target": 0.99, "metric": "sparsity", "status": "not reached",
         "reason": "plateau: 98.77-98.87% while λ grows ×2.7"},
        {"entry": "str", "target": 0.99, "metric": "sparsity", "status": "searching", "reason": ""}]}}
    got = B.reach(s, 0.99)
    assert got == {"xrda": ([], "plateau"), "str": ([], "search not ended")}


# ----------------------------------------------------------------------------- export_levels

EXPORTED = """
evidence: small-scale
seeds: [0, 1]
overrides: [epochs=1, dataset=digits, model=resnet20, width=0.125]
export_levels: [0.9]
runs:
  - name: sgd
    config: {repo}/configs/quick/sgd.yaml
  - name: gmp
    config: {repo}/configs/quick/gmp.yaml
    grid: {{optim.target: [0.5, 0.9]}}
"""


def test_export_levels_exports_every_seed_of_the_levels_runs_with_checksums(tmp_path, capsys):
    """The profile's export_levels [0.9]: GMP's two seeds at target 0.9 are exported (csr,
    sha256, export.json beside it, under RESULTS/<profile>/weights/), not its 0.5 runs nor the
    dense ones; a run without model.pt is named, not exported; the run folders are untouched."""
    import torch

    import export
    from sparsecs import fileio
    from sparsecs import modelfile
    from sparsecs import models
    from sparsecs import paths
    from sparsecs import summaries

    prof = tmp_path / "ex.yaml"
    prof.write_text(EXPORTED.format(repo=sweep.REPO))
    results = str(tmp_path / "results")
    state = sweep.run_all(sweep.expand(str(prof)), results, FakeLauncher(results, numbers))
    assert all(st == "finished" for st, _ in state.values())
    made = {}
    for name in os.listdir(os.path.join(results, "runs")):
        folder = os.path.join(results, "runs", name)
        s = summaries.read_summary(folder)
        torch.manual_seed(s["seed"])
        m = models.get_model("resnet20", 10, 0.125, input_shape=(3, 32, 32))
        cfg = {"dataset": "digits", "model": "resnet20", "width": 0.125}
        fileio.save_torch(modelfile.model_file(cfg, 10, m.state_dict()), paths.path(folder, paths.MODEL))
        made[(s["entry"], s["swept_value"], s["seed"])] = name
    gone = made[("gmp", "0.9", 1)]
    os.remove(os.path.join(results, "runs", gone, paths.MODEL))
    capsys.readouterr()                                 # the sweep's own lines
    assert export.main(["--profile", str(prof), "--results", results]) == 0
    out, err = capsys.readouterr()
    kept = made[("gmp", "0.9", 0)]
    assert out.splitlines() and all(l.startswith(f"90%: {kept}: ") for l in out.splitlines())
    assert err.strip() == f"not exported: {gone}: no model.pt here (a committed run, trained elsewhere)"
    dest = os.path.join(results, "ex", "weights")
    assert os.listdir(dest) == [kept]
    assert sorted(os.listdir(os.path.join(dest, kept))) == ["export.json", "model.csr.pt", "model.csr.pt.sha256"]
    assert export.verify(os.path.join(dest, kept, "model.csr.pt"))[0] == "csr"
    assert not os.path.exists(os.path.join(results, "runs", kept, "export.json"))
    # the levels' runs by hand: both seeds of GMP at 0.9, nothing else
    got = export.level_runs(str(prof), results)
    assert sorted(os.path.basename(f) for f in got[0.9]) == sorted([kept, gone])


@pytest.mark.parametrize("value", ["[]", "[1.5]", "0.9", "[a]"])
def test_a_bad_export_levels_is_one_line(tmp_path, value):
    prof = tmp_path / "bad.yaml"
    prof.write_text(EXPORTED.format(repo=sweep.REPO).replace("export_levels: [0.9]", f"export_levels: {value}"))
    with pytest.raises(ProfileError, match="export_levels must be a non-empty list of sparsities in"):
        load_profile(str(prof))


def test_reach_names_the_seed_short_of_a_level_the_others_span():
    """fashion8's LATS at 99%: seed 0 at 99.20%, seeds 1 and 2 (the same λ) at 98.89/98.95%.
    The mean point sits above 99%, which once read "its points start sparser"; the reason is
    the seeds that stop short."""
    import pandas as pd
    rows = [(sd, 1, 0.977, 88.0) for sd in (0, 1, 2)] + [(0, 2, 0.992, 82.6), (1, 2, 0.9889, 84.9), (2, 2, 0.9895, 80.8)]
    df = pd.DataFrame([{"row": "r", "entry": "lats", "method": "soft_threshold", "mode": "elementwise",
                        "role": "baseline", "seed": sd, "swept_value": str(v), "sparsity": sp, "acc": a,
                        "collapsed": False, "n_weights": 67_208, "mac_frac": 1 - sp} for sd, v, sp, a in rows])
    vals, why = B.reach({"df": df, "left": {"searches": []}}, 0.99)["lats"]
    # seed 2's 1.05% nonzeros are within COVER_TOL (log 1.05 = 0.0488 < 0.05) of 99%: it stands
    # at the level, as the interpolation reads it, so only seed 1 (1.11%, log 0.104) is named
    assert vals == [] and why == "seed 1 stops at 98.89% sparse"
    # while named runs of the entry are still to train (a side in progress) it is work left
    vals, why = B.reach({"df": df, "left": {"searches": [], "pending": ["lats"]}}, 0.99)["lats"]
    assert vals == [] and why == "runs still to come" and why in B.NOT_YET
    # a level below the sweep, that every seed passes, keeps its own reason
    vals, why = B.reach({"df": df, "left": {"searches": []}}, 0.9)["lats"]
    assert vals == [] and why == "its points start sparser"


SEARCHED = """
evidence: small-scale
seeds: [0, 1]
overrides: [epochs=1, dataset=digits, model=resnet20, width=0.125]
export_levels: [0.9]
runs:
  - name: xrda
    config: {repo}/configs/quick/xrda.yaml
    target_sparsity: [0.9]
    calibrate: {{key: optim.lam, start: 2.0e-5, tolerance: 0.3, rounds: 5}}
"""


def searched(cfg):
    """xRDA's sparsity 1 - 1e-5/λ: round 1 (λ 2e-5) is 50% sparse, five times the target's
    nonzeros, so the search takes more rounds before it reaches 90%."""
    sp = min(0.999, max(0.0, 1.0 - 1e-5 / cfg["optim"]["lam"]))
    return 95.0 - 10 * sp + 0.1 * cfg["seed"], sp


def test_export_rounds_keeps_every_search_round_and_an_earlier_export_reads_back(tmp_path, capsys):
    """--rounds: besides the point (the round the search ended on and its seed-1 follower),
    every other round at the level, since weights do not outlive the machine and a search still
    going on may end on any of them. A point whose model.pt is gone but whose export is there
    and reads back against its sha256 is `kept`, not `not exported`; a damaged one is one line."""
    import torch

    import export
    from sparsecs import fileio
    from sparsecs import modelfile
    from sparsecs import models
    from sparsecs import paths
    from sparsecs import summaries

    prof = tmp_path / "sr.yaml"
    prof.write_text(SEARCHED.format(repo=sweep.REPO))
    results = str(tmp_path / "results")
    state = sweep.run_all(sweep.expand(str(prof)), results, FakeLauncher(results, searched))
    assert all(st == "finished" for st, _ in state.values())
    names = sorted(os.listdir(os.path.join(results, "runs")))
    for name in names:
        folder = os.path.join(results, "runs", name)
        torch.manual_seed(summaries.read_summary(folder)["seed"])
        m = models.get_model("resnet20", 10, 0.125, input_shape=(3, 32, 32))
        cfg = {"dataset": "digits", "model": "resnet20", "width": 0.125}
        fileio.save_torch(modelfile.model_file(cfg, 10, m.state_dict()), paths.path(folder, paths.MODEL))
    s = {n: summaries.read_summary(os.path.join(results, "runs", n)) for n in names}
    rounds = [n for n in names if s[n]["seed"] == 0]
    point_lam = [s[n]["swept_value"] for n in names if s[n]["seed"] == 1]
    assert len(rounds) >= 2 and len(point_lam) == 1          # a search of several rounds, one follower
    points = sorted(n for n in names if s[n]["swept_value"] == point_lam[0])
    assert sorted(os.path.basename(f) for f in export.level_runs(str(prof), results)[0.9]) == points
    assert sorted(os.path.basename(f) for f in export.level_runs(str(prof), results, rounds=True)[0.9]) == names
    capsys.readouterr()
    assert export.main(["--profile", str(prof), "--results", results, "--rounds"]) == 0
    dest = os.path.join(results, "sr", "weights")
    assert sorted(os.listdir(dest)) == names
    for name in points:                     # the machine is given back: the points' weights go
        os.remove(os.path.join(results, "runs", name, paths.MODEL))
    capsys.readouterr()
    assert export.main(["--profile", str(prof), "--results", results]) == 0
    out, err = capsys.readouterr()
    assert err == "" and sorted(out.splitlines()) == sorted(
        f"kept: {os.path.join(dest, n, 'model.csr.pt')}: exported earlier, reads back against its sha256 "
        f"({n} has no model.pt here)" for n in points)
    with open(os.path.join(dest, points[0], "model.csr.pt"), "ab") as f:
        f.write(b"x")
    assert export.main(["--profile", str(prof), "--results", results]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("export.py: error: ") and points[0] in err[0]
    with pytest.raises(SystemExit) as e:
        export.main(["--rounds", os.path.join(results, "runs", names[0])])
    assert e.value.code == 2
    assert "--rounds goes with --profile" in capsys.readouterr().err


def test_the_budget_figure_marks_a_missed_level_instead_of_a_line_through_it(tmp_path):
    """xRDA's points end at 98% at 2 epochs (the pair above): at 99% the figure has its value
    at 8 epochs and, at 2, its marker hollow on the lower edge with a legend entry; no line
    joins the two budgets. GMP reaches 99% at both: no mark."""
    prof, results = make_pair(tmp_path)
    sides, _ = sides_of(prof, results)
    lvls = B.levels(sides)
    fr = B.frame(sides, lvls)
    miss = fr[fr["acc"].isna()]
    assert list(zip(miss["entry"], miss["epochs"], miss["level"])) == [("xrda", 2, 0.99)]
    assert miss["why"].iloc[0] == "its points end at 98.00%"
    from sparsecs.reporting import budget_figure
    out = str(tmp_path / "figs")
    assert budget_figure.figure(fr, out)
    d = F.DRAWN["budget_col"]
    assert d["missed"] == [("99%", "xRDA", 2)]
    assert "level missed (lower edge)" in d["legend"]
    assert d["xlabels"] == ["training epochs"] * 4
    # side by side around each tick, a step of 4% in log-x: two sparse entries at 1.04^∓0.5,
    # dense on the tick (points that coincide stay visible)
    assert d["dodge"] == {"dense SGD": 1.0, "xRDA": pytest.approx(1.04 ** -0.5),
                          "GMP": pytest.approx(1.04 ** 0.5)}


def test_an_entry_keeps_its_colour_while_the_profile_fills(tmp_path):
    """Colours come from the entries the two profiles declare, not from the runs complete so far.
    Two more xRDA entries take free colours (blue, then bluish green: GMP's own) when GMP has no
    run; with the long profile's GMP runs not trained yet, the budget figure (which draws the
    short side's GMP) and the trade-off figure give every entry the finished report's colour."""
    more = "".join(f"""
  - name: xrda_{x}
    config: {{repo}}/configs/quick/xrda.yaml
    overrides: [optim.momentum_ts={ts}]
    grid: {{{{optim.lam: [1.0e-3, 1.0e-2]}}}}""" for x, ts in (("b", 9.0), ("c", 8.5)))
    prof, results = make_pair(tmp_path, skip=("gmp",), extra=more)
    colours = {}
    for part in ("partial", "full"):
        if part == "full":
            state = sweep.run_all(sweep.expand(prof), results, FakeLauncher(results, numbers))
            assert all(st in ("finished", "skipped") for st, _ in state.values())
        F.DRAWN.clear()
        assert report.main([prof, "--results", results, "--out", str(tmp_path / part)]) == 0
        colours[part] = {stem: dict((label, c) for label, c, _ in d["entries"])
                         for stem, d in F.DRAWN.items() if d.get("entries")}
    budget, trade = colours["partial"]["budget_page"], colours["partial"]["tradeoff_page"]
    assert "GMP" in budget and "GMP" not in trade and len(budget) == 5
    assert budget == colours["full"]["budget_page"]
    assert budget["GMP"] == colours["full"]["tradeoff_page"]["GMP"] == style.OKABE_ITO["bluish green"]
    assert len(set(budget.values())) == 5
    for label, c in trade.items():
        assert budget[label] == c == colours["full"]["tradeoff_page"][label]

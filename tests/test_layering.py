"""The packages depend one way (issue 38 item 4): reporting may use sweeping's expansion of a
profile, sweeping never imports reporting (the tolerances both apply live in evidence.py), and
no figure module reads a run folder: reporting/load.py reads them once into frames."""
import ast
import glob
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = ["figures", "fig_tradeoff", "fig_dynamics", "fig_layers", "fig_threshold", "fig_search",
           "threshold_figure", "speedup_figure", "budget_figure"]
# what reading a run folder (or any file) looks like from inside a module
READERS = {"open", "read_csv", "metrics_of", "read_metrics", "read_summary", "complete_summary", "load_yaml",
           "threshold_curve", "inference", "run_frames", "load", "zero_fraction", "read_classes"}


def _imports(path):
    """The modules a file imports (absolute names; `from . import x` as reporting.x)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            out.add(n.module or "" if not n.level else "." + (n.module or ""))
    return out


def test_sweeping_and_evidence_never_import_reporting():
    files = glob.glob(os.path.join(REPO, "sweeping", "*.py")) + [os.path.join(REPO, "evidence.py")]
    for f in files:
        bad = {m for m in _imports(f) if m == "reporting" or m.startswith("reporting.")}
        assert not bad, (f, bad)
    assert not {m for m in _imports(os.path.join(REPO, "evidence.py")) if m.split(".")[0] in ("sweeping",)}


def test_sweeping_imports_with_reporting_blocked():
    # a finder that refuses reporting: every sweeping module still imports (and the CLI)
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'reporting' or name.startswith('reporting.'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import sweeping.search, sweeping.profile, sweeping.plan, sweeping.schedule, sweeping.launch\n"
            "import evidence\n"
            "assert sweeping.search.COVER_TOL is evidence.COVER_TOL\n"
            "print('ok')\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def test_one_tolerance_for_both_packages():
    import evidence
    from reporting import compare as K
    from sweeping import search

    assert K.MATCH_TOL is evidence.MATCH_TOL and K.COVER_TOL is evidence.COVER_TOL
    assert search.SIDE_TOL < evidence.COVER_TOL == evidence.MATCH_TOL / 2


def test_no_figure_module_reads_files():
    for name in FIGURES:
        path = os.path.join(REPO, "reporting", f"{name}.py")
        tree = ast.parse(open(path, encoding="utf-8").read())
        called = set()
        for n in ast.walk(tree):
            if isinstance(n, ast.Call):
                f = n.func
                called.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
        assert not called & READERS, (name, called & READERS)
        # no run-folder reader (figures: fileio.save_figure only)
        assert not {"paths", "summaries", "runindex", "modelfile"} & set(_imports(path)), name


def test_profile_lookup_is_the_sweeps():
    import pytest

    from reporting import load
    from sweeping import profile as P

    assert load.profile_path("fashion") == P.find_profile("fashion")
    with pytest.raises(load.ReportError) as e:
        load.profile_path("no_such_profile")
    assert str(e.value).startswith("no profile 'no_such_profile'; known: ") and "fashion" in str(e.value)


def test_train_reads_as_one_loop_with_checkpoints_and_final_evaluation_beside_it():
    # issue 38 item 2: train.py keeps build, train_one_epoch, evaluate, main; checkpoint.py and
    # final_eval.py never import it back (no cycle), and no function runs past ~60 lines
    for name in ("checkpoint", "final_eval"):
        assert "train" not in _imports(os.path.join(REPO, f"{name}.py")), name
    lines = open(os.path.join(REPO, "train.py"), encoding="utf-8").read().splitlines()
    assert len(lines) <= 420
    for name in ("train", "checkpoint", "final_eval"):
        tree = ast.parse(open(os.path.join(REPO, f"{name}.py"), encoding="utf-8").read())
        long = {n.name: n.end_lineno - n.lineno + 1 for n in tree.body
                if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > 62}
        assert not long, (name, long)

"""The packages depend one way (issue 38 item 4): reporting may use sweeping's expansion of a
profile, sweeping never imports reporting (the tolerances both apply live in evidence.py), and
no figure module reads a run folder: reporting/load.py reads them once into frames. The library
is one package, sparsecs (item 1): no file imports a library module, models or optim by a
top-level name, so no module can be loaded twice under two names."""
import ast
import glob
import os
import re
import subprocess
import sys

from tests import REPO

PKG = os.path.join(REPO, "sparsecs")
# names that must only ever be imported as sparsecs.<name>: the package's modules and packages,
# and models/ and optim/, which stay at the root (sparsecs/__init__.py says why)
LIBRARY = sorted({n.removesuffix(".py") for n in os.listdir(PKG) if n.endswith(".py") and n != "__init__.py"}
                 | {n for n in os.listdir(PKG) if os.path.isfile(os.path.join(PKG, n, "__init__.py"))}
                 | {"models", "optim"})
_NAMES = "|".join(LIBRARY)
# an import statement, also inside a string (code a test runs in a child), or import_module("x")
TOP_LEVEL_IMPORT = re.compile(rf"""(^|["';]\s*)(import ({_NAMES})\b|from ({_NAMES})(\.\w+)* import)"""
                              rf"""|import_module\(["']({_NAMES})\b""", re.M)
FIGURES = ["figures", "fig_tradeoff", "fig_dynamics", "fig_layers", "fig_threshold", "fig_search",
           "threshold_figure", "speedup_figure", "budget_figure"]
# what reading a run folder (or any file) looks like from inside a module
READERS = {"open", "read_csv", "metrics_of", "read_metrics", "read_summary", "complete_summary", "load_yaml",
           "threshold_curve", "inference", "run_frames", "load", "zero_fraction", "read_classes"}


def _imports(path):
    """The modules a file imports, library names without the `sparsecs.` prefix (`from sparsecs
    import paths` is paths, `from sparsecs.reporting import load` reporting and reporting.load;
    `from . import x` is .x)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            mod = "." * n.level + (n.module or "")
            out |= {mod} | {f"{mod}.{a.name}".replace("..", ".") for a in n.names}
    return {m.removeprefix("sparsecs.") for m in out if m != "sparsecs"}


def test_sweeping_and_evidence_never_import_reporting():
    files = glob.glob(os.path.join(PKG, "sweeping", "*.py")) + [os.path.join(PKG, "evidence.py")]
    for f in files:
        bad = {m for m in _imports(f) if m == "reporting" or m.startswith("reporting.")}
        assert not bad, (f, bad)
    assert not {m for m in _imports(os.path.join(PKG, "evidence.py")) if m.split(".")[0] in ("sweeping",)}


def test_sweeping_imports_with_reporting_blocked():
    # a finder that refuses reporting: every sweeping module still imports (and the CLI)
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'sparsecs.reporting' or name.startswith('sparsecs.reporting.'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from sparsecs.sweeping import search, profile, plan, schedule, launch\n"
            "from sparsecs import evidence\n"
            "assert search.COVER_TOL is evidence.COVER_TOL\n"
            "print('ok')\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def test_one_tolerance_for_both_packages():
    from sparsecs import evidence
    from sparsecs.reporting import compare as K
    from sparsecs.sweeping import search

    assert K.MATCH_TOL is evidence.MATCH_TOL and K.COVER_TOL is evidence.COVER_TOL
    assert search.SIDE_TOL < evidence.COVER_TOL == evidence.MATCH_TOL / 2


def test_no_figure_module_reads_files():
    for name in FIGURES:
        path = os.path.join(PKG, "reporting", f"{name}.py")
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

    from sparsecs.reporting import load
    from sparsecs.sweeping import profile as P

    assert load.profile_path("fashion") == P.find_profile("fashion")
    with pytest.raises(load.ReportError) as e:
        load.profile_path("no_such_profile")
    assert str(e.value).startswith("no profile 'no_such_profile'; known: ") and "fashion" in str(e.value)


def test_train_reads_as_one_loop_with_checkpoints_and_final_evaluation_beside_it():
    # issue 38 item 2: train.py keeps build, train_one_epoch, evaluate, main; checkpoint.py and
    # final_eval.py never import it back (no cycle), and no function runs past ~60 lines
    for name in ("checkpoint", "final_eval"):
        assert "train" not in _imports(os.path.join(PKG, f"{name}.py")), name
    lines = open(os.path.join(REPO, "train.py"), encoding="utf-8").read().splitlines()
    assert len(lines) <= 420
    for name in ("train", "checkpoint", "final_eval"):
        tree = ast.parse(open(os.path.join(REPO if name == "train" else PKG, f"{name}.py"),
                              encoding="utf-8").read())
        long = {n.name: n.end_lineno - n.lineno + 1 for n in tree.body
                if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > 62}
        assert not long, (name, long)


def _project_files(*exts):
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    return [os.path.join(REPO, f) for f in out if f.endswith(exts) and not f.startswith("results/")
            and os.path.exists(os.path.join(REPO, f))]


def test_every_import_of_the_library_goes_through_sparsecs():
    assert {"config", "paths", "data", "sweeping", "reporting", "exporting", "models", "optim"} <= set(LIBRARY)
    bad = [f"{os.path.relpath(f, REPO)}: {m.group(0).strip()}" for f in _project_files(".py")
           if f != os.path.abspath(__file__)     # its examples below
           for m in TOP_LEVEL_IMPORT.finditer(open(f, encoding="utf-8").read())]
    assert not bad, bad
    # the pattern does catch each form
    for line in ("import paths", "from sweeping.plan import x", "from models import get_model",
                 'x = "-c", "import data; print(1)"', 'importlib.import_module("optim")'):
        assert TOP_LEVEL_IMPORT.search(line), line
    assert not TOP_LEVEL_IMPORT.search("from sparsecs import paths\nimport pathsy\nimport train")


def test_no_sys_path_edits():
    needle = "sys.path." + "insert"      # split so this file does not hold it
    bad = [os.path.relpath(f, REPO) for f in _project_files(".py", ".sh", ".md") if needle in open(f, encoding="utf-8").read()]
    assert not bad, bad


def test_one_copy_of_each_module():
    # the entry points and hub file import the library once, as sparsecs.*: no top-level
    # `models`, `paths`, ... beside it; sparsecs.models is the root's models/
    code = ("import sys, train, eval, sweep, report, export, hubconf, sparsecs.models, sparsecs.optim\n"
            f"top = {{n.split('.')[0] for n in sys.modules}} & set({LIBRARY!r})\n"
            "assert not top, top\n"
            "print(sparsecs.models.__file__, sparsecs.optim.__file__)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [os.path.join(REPO, "models", "__init__.py"), os.path.join(REPO, "optim", "__init__.py")]


def test_pyproject_installs_every_package_and_requirement():
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        setup = tomllib.load(f)
    tool = setup["tool"]["setuptools"]
    subpackages = {f"sparsecs.{n}" for n in os.listdir(PKG) if os.path.isfile(os.path.join(PKG, n, "__init__.py"))}
    assert set(tool["packages"]) == {"sparsecs", "sparsecs.models", "sparsecs.optim"} | subpackages
    assert tool["package-dir"] == {"sparsecs.models": "models", "sparsecs.optim": "optim"}
    with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as f:
        wanted = {ln.strip() for ln in f if ln.strip() and not ln.startswith("#")}
    deps = setup["project"]["dependencies"] + setup["project"]["optional-dependencies"]["test"]
    assert sorted(deps) == sorted(wanted)

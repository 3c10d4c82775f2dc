"""REPORT.md for one profile: what was run (runs, budgets, seeds, environment, what was left
out), a section per paper the profile speaks to (its `claims:`) with each declared claim and
the comparisons behind it (only for a profile whose `evidence` is not `none`), the tables and
the figures."""
import math
import os
from collections import Counter
from dataclasses import dataclass, field

from sparsecs import criteria
from sparsecs import fileio
from sparsecs.evidence import FILL_IN
from sparsecs.sweeping.search import FALLING

from . import across as AC
from . import claims as CL
from . import compare as K
from . import figures
from .load import parent_run
from . import papers as PA
from . import published
from . import style
from . import tables as T

EVIDENCE_TEXT = {
    "none": ("**This is a pipeline check, not evidence.** The profile trains small widths for few "
             "epochs to show that every model family and method runs end to end and how each "
             "curve is shaped; its numbers cannot confirm or refute the papers, so this report "
             "states no verdict. The `fashion` profile (small-scale evidence, CPU) and the `short` "
             "and `paper` profiles (GPU) are the ones that can."),
    "small-scale": ("**Small-scale evidence.** A small data set and model on the CPU, not the papers' "
                    "CIFAR and ImageNet: the verdicts below say what these runs show at this scale, "
                    "which need not be what happens at the papers' scale."),
    "paper-scale": "**Paper-scale evidence**: the papers' data sets, models and budgets.",
}


def _vals(v):
    return "—" if not v else (f"{sum(v) / len(v):.2f}" + (f"±{_sd(v):.2f}" if len(v) > 1 else ""))


def _sd(v):
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def _level(lv, kind):
    return f"{100 * lv:g}% {'MACs' if kind == 'macs' else 'sparse'}"


# what a comparison's strength means, in words: "significant" alone would read as a claim of
# significance next to an outcome that is "not measurable"
STRENGTH_TEXT = {"significant": "several seeds a side", "suggestive": "suggestive: one seed on a side"}


def comparison_line(c):
    a = style.label(c["a"]["method"], c["a"]["entry"])
    b = style.label(c["b"]["method"], c["b"]["entry"])
    head = f"- {c['row']}: {a} ({c['a']['epochs']} ep) vs {b} ({c['b']['epochs']} ep): **{c['outcome']}**"
    if c["outcome"] == "unequal budget":
        return head + " (not counted)"
    if not c["levels"]:
        return head + " (the sweeps share no level; not counted)"
    parts = []
    for lv in c["levels"]:
        p = "" if lv["p"] != lv["p"] else f", p={lv['p']:.2g}, Holm {lv.get('p_holm', lv['p']):.2g}"
        mixed = len({x.get("test", "unpaired") for x in c["levels"]}) > 1
        parts.append(f"{_level(lv['level'], c['kind'])}: {_vals(lv['a'])} vs {_vals(lv['b'])} "
                     f"(Δ {lv['diff']:+.2f} pp{p}{', ' + lv.get('test', 'unpaired') if mixed else ''}, {lv['outcome']})")
    tests = sorted({lv.get("test", "unpaired") for lv in c["levels"]})
    test = tests[0] + " test" if len(tests) == 1 else "paired test where both sides have predictions"
    why = [STRENGTH_TEXT.get(c["strength"], c["strength"])] if c["strength"] else []
    if c["outcome"] == K.NOT_TESTABLE:   # the numbers of the regime it is outside, the levels as measured
        why = [c["regime"], "not counted"]
    return head + f" ({'; '.join(why + [test])})" + "; " + "; ".join(parts)


def searches_md(rows):
    """The table of every λ search: its footing (what was reached, what was not, and why)."""
    out = []
    for r in rows:
        ratio = "—" if r["ratio"] != r["ratio"] else f"{r['ratio']:.2f}×"
        sp = "—" if r["sparsity"] != r["sparsity"] else f"{100 * r['sparsity']:.2f}%"
        val = "—" if r["value"] != r["value"] else f"{r['value']:.4g}"
        tgt = "—" if r["target"] is None else f"{100 * r['target']:g}%"
        if r.get("metric") in FALLING:   # calibrated on structural MACs: both in % of dense MACs
            sp = "—" if r["sparsity"] != r["sparsity"] else f"{100 * (1 - r['sparsity']):.2f}% of MACs"
            tgt = "—" if r["target"] is None else f"{100 * r['target']:g}% of MACs"
        out.append([r["label"], tgt, sp, ratio, val, r["status"], r["reason"] or "",
                    f"{r['rounds']}" + (f" ({r['collapsed_rounds']} collapsed)" if r["collapsed_rounds"] else "")])
    return T.md(["search (seed 0)", "target", "reached", "nonzeros / target's", "key value", "status",
                 "reason", "rounds"], out, ["l", "r", "r", "r", "r", "l", "l", "r"])


def budgets(df):
    rows = []
    for (row, entry), part in df.groupby(["row", "entry"], sort=False):
        r = part.iloc[0]
        eps = sorted({int(e) for e in part["total_epochs"]})
        own = sorted({int(e) for e in part["epochs"]})
        rows.append([row, entry, style.label(r["method"], entry), r["role"], r["mode"],
                     "/".join(map(str, eps)), "/".join(map(str, own)), len(part),
                     part["seed"].nunique()])
    return T.md(["row", "entry", "method", "role", "mode", "total epochs", "own epochs", "runs", "seeds"],
                rows, ["l"] * 5 + ["r"] * 4)


def environment(df):
    cols = [c for c in ("torch", "torchvision", "numpy", "device_name", "threads") if c in df.columns]
    parts = []
    for c in cols:
        vals = sorted({str(v) for v in df[c] if v == v and str(v) != ""})
        parts.append(f"{c} {', '.join(vals) if vals else 'not recorded'}")
    return "; ".join(parts)


def compute(df):
    """Where the training time went, per CPU or GPU the runs trained on (device_name): a
    profile finished over several sessions may have run on machines of different speed."""
    if "train_seconds" not in df.columns or "epochs" not in df.columns:
        return []
    d = df[df["train_seconds"].notna() & (df["epochs"] > 0)]
    if d.empty:
        return []
    dev = d["device_name"].fillna("not recorded") if "device_name" in d.columns else "not recorded"
    rows = []
    for name, part in d.groupby(dev, sort=True):
        per_epoch = part["train_seconds"] / part["epochs"].astype(float)
        rows.append([name, len(part), f"{part['train_seconds'].sum() / 3600:.2f}",
                     f"{per_epoch.median():.0f}", f"{per_epoch.min():.0f}–{per_epoch.max():.0f}"])
    text = (f"Training time: {d['train_seconds'].sum() / 3600:.1f} run-hours over {len(d)} runs (each "
            f"run's own wall-clock time, summary.json's `train_seconds`; a machine training k runs at "
            f"once spends about 1/k of it), by the CPU or GPU each run trained on:")
    table = T.md(["trained on", "runs", "run-hours", "median s / epoch", "s / epoch, range"], rows,
                 ["l", "r", "r", "r", "r"])
    return [text, "", table, ""]


def collapse_line(df):
    """How many runs collapsed, and by which measure of their training accuracy: the final
    weights' (train_acc_final), or for runs from before summary.json recorded it, the last
    epoch's average, which a model broken in its last steps passes."""
    fell = int(df["collapsed"].sum()) if "collapsed" in df.columns else 0
    older = int((df["collapse_measure"] == "train_acc").sum()) if "collapse_measure" in df.columns else 0
    if not fell and not older:
        return []
    line = (f"{fell} run(s) collapsed (the final weights' accuracy on the first {criteria.FINAL_TRAIN_IMAGES:,} "
            f"training images, all of a smaller training set, below {100 * criteria.COLLAPSE_FRACTION:g}% of the way from chance to "
            f"100%): shown in the tables, never interpolated through.")
    if older:
        line += (f" {older} of the {len(df)} runs are judged by their last epoch's average "
                 f"training accuracy instead (trained before summary.json recorded "
                 f"`train_acc_final`): an average over weights that were still changing, which "
                 f"a model broken in its last steps can pass.")
    return [line, ""]


def starts_line(df):
    """Whether the runs that start from another run's weights (init_from) started from the
    weights that run holds now: a dense run trained again (a fresh machine has no weights, and
    another CPU gives other last bits) leaves its earlier followers on an earlier version."""
    f = df[df["init_from"] != ""] if "init_from" in df.columns else df.iloc[:0]
    if f.empty:
        return []
    sha = dict(zip(df["run"], df["model_sha256"])) if "model_sha256" in df.columns else {}
    same, older, unknown = [], [], []
    for _, r in f.iterrows():
        parent = parent_run(r["init_from"])
        rec = r.get("init_sha256")
        rec = rec if isinstance(rec, str) and rec else ""
        now = sha.get(parent)
        now = now if isinstance(now, str) and now else ""
        (unknown if not (rec and now) else same if rec == now else older).append(r["entry"] or r["run"])
    count = lambda xs: ", ".join(f"{e}: {n}" for e, n in sorted(Counter(xs).items()))
    parts = []
    if same:
        parts.append(f"{len(same)} started from the weights their start run holds now ({count(same)})")
    if older:
        parts.append(f"**{len(older)} from an earlier version of it** ({count(older)}): that run was "
                     f"trained again after they started (a machine without its weights, whose CPU "
                     f"rounds differently), so the dense numbers shown are not exactly those of the "
                     f"model they pruned or trained on")
    if unknown:
        parts.append(f"{len(unknown)} do not say which version ({count(unknown)}: trained before "
                     f"summary.json recorded `init_sha256`, or their start run records no checksum)")
    return [f"{len(f)} runs start from another run's weights (`init_from`): " + "; ".join(parts) + ".", ""]


def _fills(r):
    """Whether any point of the report is a fill-in (the words about them appear only then)."""
    return bool(len(r.pts)) and bool(r.pts["fill_in"].any())


def seeds_line(df):
    """How many seeds the runs have, and what one seed means for the verdicts."""
    seeds = sorted({int(v) for v in df["seed"] if v == v})
    n = len(seeds)
    fills = ("; a fill-in: the one seed it fills" if "calibration_status" in df
             and (df["calibration_status"] == FILL_IN).any() else "")
    line = (f"Seeds: {n} ({', '.join(map(str, seeds))}); every point runs each of them (a λ search's other "
            f"rounds: seed 0 only{fills}).")
    if n == 1:
        line += (f" **One seed**: no seed spread is measured, so a difference counts only beyond "
                 f"±{K.ONE_SEED_BAND} pp and any conclusion is suggestive only.")
    return line


@dataclass
class Report:
    """What REPORT.md is written from: the frames (load.load), the points, comparisons and
    verdicts (claims), the tables and figures already written (report.py build)."""
    profile: str
    evidence: str
    df: object
    left: dict
    pts: object
    comps: list
    verdicts: list
    level_tables: list
    figs: list
    savings_md: str = ""
    pairs: dict = field(default_factory=dict)
    papers: tuple = ("A",)
    results: str = "results"
    budget_md: tuple = ()


def write(path, r):
    """REPORT.md of the Report `r` at `path`; returns the path."""
    rel = lambda p: os.path.relpath(p, os.path.dirname(path))
    res = str(r.results).rstrip("/") or "."
    L = header(r, res) + runs_section(r) + claims_section(r) + list(r.budget_md) + tables_section(r)
    L += figures_section(r, rel)
    fileio.atomic_write(path, "\n".join(L) + "\n")
    return path


def header(r, res):
    """The title, what the report covers and what it left out."""
    df, left = r.df, r.left
    n_other = len(left["other"])
    not_run = left.get("not_run", 0)
    cmd = f"python report.py {r.profile}" + ("" if res == "results" else f" --results {res}")
    L = [f"# Results: profile `{r.profile}`", "",
         f"Generated by `{cmd}` from the run folders under `{res}/runs/`. "
         f"**{len(df)} runs** of the {len(df) + len(left['missing']) + left['waiting'] + not_run} the profile "
         f"expands to are complete"
         + (f"; not yet: {len(left['missing'])} named, {left['waiting']} waiting on a dependency or a λ search"
            if left["missing"] or left["waiting"] else "")
         + (f"; {not_run} never run: they follow a λ search that did not reach its target (the "
            f"λ-search table below)" if not_run else "") + ".", ""]
    if n_other:
        shown = ", ".join(left["other"][:3]) + (", …" if n_other > 3 else "")
        L += [f"Left out: {n_other} other row(s) of `{res}/runs.csv` that are not this profile's runs ({shown}).", ""]
    retired = left.get("retired", [])
    if retired:
        shown = ", ".join(retired[:3]) + (", …" if len(retired) > 3 else "")
        L += [f"Not used: {len(retired)} run(s) this profile asked for once but its plan no longer "
              f"names (a λ search took another path since they ran, e.g. a round now judged "
              f"collapsed): {shown}.", ""]
    return L


def runs_section(r):
    """Evidence, seeds, environment, compute, starts, collapses, λ searches, budgets and the
    published numbers. Nothing about the machine building the report (which weights it
    holds): a rebuild elsewhere gives the same bytes."""
    df, left = r.df, r.left
    L = [EVIDENCE_TEXT.get(r.evidence, EVIDENCE_TEXT["none"]), "", seeds_line(df), "",
         f"Every number is a final number (nothing is selected by test accuracy): the last epoch's "
         f"weights, evaluated once BatchNorm statistics are recomputed on training images "
         f"(`bn_recal`, every method alike; `test_acc_running_bn` in summary.json keeps the number "
         f"with training's running statistics). Environment of these runs: {environment(df)}.", ""]
    L += compute(df)
    L += starts_line(df)
    L += collapse_line(df)
    if left.get("searches"):
        L += ["## λ searches", "",
              "Every search of the profile (seed 0's rounds): the round it ended on, its nonzeros "
              "relative to the target's, and whether it reached the target within its tolerance (an "
              "entry's lowest and highest targets from their outer side, so that every seed's curve "
              "covers them: docs/methods.md §7). A "
              "search that did not reach its target stands for no point: its other seeds do not run "
              "and no method is matched to it.", "", searches_md(left["searches"])]
    L += ["## What was run: entries and budgets", "",
          "Total epochs count the epochs of the run a method starts from (`init_from`): prune + "
          "fine-tune spends half its budget on the dense model it prunes. Only curves with equal "
          "totals are compared.", "", budgets(df)]
    L += published.section(df)
    return L


def claims_section(r):
    """Per paper: no verdict yet (an incomplete profile), or how a verdict is reached and each
    claim's verdict with its comparisons; nothing for a pipeline check."""
    left, papers = r.left, r.papers
    L = []
    incomplete = bool(left["missing"] or left["waiting"])
    if r.evidence != "none" and incomplete:
        for paper in papers:
            L += [f"## {PA.PAPERS[paper]}: claims", "",
                  f"**No verdict yet: the profile is incomplete** ({len(left['missing'])} run(s) named but not "
                  f"complete, {left['waiting']} waiting on a dependency or a λ search). A verdict needs every "
                  "search ended and every seed of the points it compares; run the sweep again (`python "
                  "sweep.py PROFILE` keeps the committed runs) and rebuild this report. "
                  "The tables below show what has finished.", ""]
    if r.evidence != "none" and not incomplete:
        L += ["## How a claim's verdict is reached", "",
              "The rules of reporting/compare.py, the same for every paper's claims: each method's accuracy is "
              "interpolated along its own sweep, per seed, at fixed levels (elementwise: "
              f"{', '.join(f'{100 * v:g}%' for v in K.SPARSITY_LEVELS)} sparse, along log nonzero weights; "
              f"structured: {', '.join(f'{100 * v:g}%' for v in K.MAC_LEVELS)} of the dense multiply-adds), "
              "never outside the range the sweep covers, along the points every seed ran"
              + (" and each seed's own fill-ins (a seed whose run at the calibrated value stopped short "
                 "of an entry's end level, run once more past it: docs/methods.md §7)" if _fills(r) else "")
              + " and never through a collapsed run. Only curves of equal total budget are compared. "
              "At each level the mean accuracies are compared with a "
              "variance that holds the seed spread and the test set's own sampling error: *paired* "
              "where every run on both sides saved its per-image predictions (both sides are scored "
              "on the same images, so that error is the variance of the mean per-image difference, "
              "var(d)/N, which only the images they disagree on make nonzero), else *unpaired* "
              "(each side's p(1−p)/N, added as if independent); each comparison below names its "
              f"test. A difference under {K.RESOLUTION:g} test-set standard errors is *not "
              "measurable at this scale*; otherwise a two-sided t-test, Holm-corrected over the "
              f"levels of the comparison, at α = {K.ALPHA} (with one seed on a side, a band of "
              f"±{K.ONE_SEED_BAND} pp and the verdict is only suggestive): win, loss or inconclusive. A "
              "row's comparison is a win (or loss) when its decisive levels agree, mixed when they "
              "do not. A claim is supported when wins are at least as many as the other counted "
              "comparisons and there is no loss, refuted the other way round, inconclusive "
              "otherwise. The claims are declared in reporting/papers.py: which curves each is "
              "about and what it compares them with.", ""]
        by_id = {v[0]: v for v in r.verdicts}
        for paper in papers:
            mine_claims = [c for c in PA.of([paper]) if c.id in by_id]
            L += [f"## {PA.PAPERS[paper]}: claims", ""]
            for claim in mine_claims:
                num, title, rule, verdict, mine = by_id[claim.id]
                L += [f"### {num}. {title}", "", f"**Verdict: {verdict}.** Compared: {rule}."
                      + (f" Testable only with {claim.regime.what}, measured on the runs; outside it "
                         f"the verdict is \"{K.NOT_TESTABLE}\"." if claim.regime else "")
                      + (f" {claim.note}" if claim.note else ""), ""]
                per = CL.row_verdicts(mine)
                if len(per) > 1:   # several rows (models): each row's verdict, then AC.RULE
                    titles = style.row_titles(r.df)
                    L += ["Per row: " + "; ".join(f"{titles.get(r, r)}: {v}" for r, v in per.items())
                          + f". {AC.RULE}", ""]
                L += [comparison_line(c) for c in mine] or ["- no comparison in these runs"]
                L.append("")
    return L


def tables_section(r):
    """The level tables, the point-by-point tables, every point, the measured savings."""
    L = []
    L += ["## Tables", "",
          "Accuracy (%) at fixed levels, interpolated along each method's own sweep: mean ± std "
          "over seeds (a seed count in brackets where it differs from the table's); — where the "
          "level is outside the sweep; \"not reached\" where the curve collapses before it, the "
          "λ search for that level missed it or a seed stops short of it, with where its points "
          "stop; an entry with no value at any level is left out."
          + (" Bold: the highest mean of a level where it wins against every other entry of that "
             "level by the test above (Holm-corrected over the level's comparisons); no bold: none "
             "is decisively best." if r.evidence != "none" else "")
          + " Files: `tables/levels_*.{md,tex}` (the LaTeX tables fit a 7 in text width).", ""]
    if not r.level_tables:
        L += ["No entry's sweep covers any of the levels: no level table (every point is in the "
              "table below).", ""]
    for t in r.level_tables:
        what = {"methods": "methods", "ablations": "ablations", "structured": "structured (structural MACs)"}[t.what]
        L += [f"### {t.title}: {what}", "", t.md()]
    for t, rows in (r.pairs or {}).values():
        if rows:
            L += [f"### {t.title}", "",
                  f"Each point against the row's {t.name} point of the same mode: at the same swept value "
                  f"where both sweep the same key, else the nearest within |Δlog nonzeros| ≤ {K.MATCH_TOL} "
                  "(farther: unmatched, not counted); outcome of the point against "
                  f"{t.name} by the test of reporting/compare.py (seed count in brackets). A point's "
                  f"outcome is not a claim's verdict. Also `tables/pairs_{t.key}.md`.", "",
                  T.md(T.pair_header(t.name), rows, ["l"] * 3 + ["r"] * 2 + ["l"] + ["r"] * 2 + ["l", "l"])]
    L += ["### Every point", "",
          "Each entry's points (its swept value), mean ± std over seeds; `round` is a λ search's "
          "round (→ its target sparsity): every round is kept, the calibrated point is the one the "
          "other seeds ran at"
          + ("; `fill-in`: one seed's own run past an end level that its run at the calibrated value "
             "stopped short of" if _fills(r) else "") + ". Also `tables/points.csv`.", "",
          T.md(T.POINT_HEADER, T.point_rows(r.pts), ["l"] * 5 + ["r"] * 8 + ["l"])]
    if r.savings_md:
        L += ["### Measured savings", "", r.savings_md]
    return L


def figures_section(r, rel):
    """Every figure: its page-width version shown, its column-width files named."""
    L = ["## Figures", "",
          "Saved at the width a paper prints them (3.5 in column, 7 in page; the size is the file's "
          "own), 8 pt text, PNG at 300 dpi and PDF with TrueType fonts. Page-width versions are "
          "shown; the column-width ones (`*_col*`) are beside them. Filled markers joined by a line: "
          "points every seed ran, error bars std over seeds; small open markers: λ-search rounds "
          "(seed 0 only)" + (" and fill-ins (one seed)" if _fills(r) else "")
          + "; ×: collapsed runs on the lower edge; ↓: healthy points more than "
          f"{figures.BELOW_PP:g} pp below the best, on the lower edge; ▶: runs past the axis's right end "
          "(sparser than every healthy point: a collapse, an all-zero network), their sparsity beside them "
          "(with a white × if collapsed); edge marks at one place are stacked, never hidden. "
          "The accuracy axis spans the healthy points and the dense model's band.", ""]
    for title, paths in r.figs:
        png = [p for p in paths if p.endswith(".png")]
        shown = [p for p in png if "_page" in os.path.basename(p)] or png
        cols = [p for p in png if p not in shown]
        if shown:
            L += [f"### {title}", ""] + [f"![{title}]({rel(p)})" for p in shown] + [""]
            if cols:
                L += ["Column width: " + ", ".join(f"`{rel(p)}`" for p in cols) + " (and `.pdf`).", ""]
    return L

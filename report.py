"""Tables, figures and REPORT.md for one or more profiles; trains nothing.

    python report.py [PROFILE ...] [--results DIR] [--out DIR]

A report covers exactly the runs its profile expands to that are complete in RESULTS/runs/
(reporting/load.py); any other row of RESULTS/runs.csv is left out and named. With no
PROFILE, every profile named by the runs in RESULTS/runs.csv. For each profile it writes

    OUT/REPORT.md                     runs, budgets, seeds, environment; per paper of the
                                      profile's `claims:` its declared claims and the
                                      comparisons behind them (unless `evidence: none`)
    OUT/tables/levels_*.{md,tex}      methods side by side at fixed sparsity / MAC levels
    OUT/tables/points.csv, points.md  every point of every entry
    OUT/tables/comparisons.csv        every comparison, level by level
    OUT/tables/pairs_*.md             point-by-point outcomes (not for `evidence: none`)
    FIGURES/*_{col,page}*.{png,pdf}   trade-off, ablation, structured, dynamics, per-layer,
                                      soft-threshold and λ-search figures at 3.5 in (column)
                                      and 7 in (page) width (reporting/figures.py)
    FIGURES/thresholds_page.{png,pdf}  soft-threshold schedules' d and λ
    FIGURES/speedup_page.{png,pdf}     CPU inference speed-up against the nonzero-MAC ratio, when
                                      OUT/inference.csv exists (benchmarks/bench_inference.py --csv)

OUT defaults to RESULTS/<profile>/ and FIGURES to figures/<profile>/ beside RESULTS (with the
default `results`, the repository's top-level figures/). With --out, FIGURES is OUT/figures
(several profiles: OUT/<profile>/ and OUT/<profile>/figures). REPORT.md links the figures by
their path relative to it. Every number is a final-epoch number; nothing is selected by test
accuracy.
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.abspath(__file__))


def figures_dir(results, name):
    """figures/<profile>/ beside the results folder: the top level, next to results/."""
    return os.path.join(os.path.dirname(os.path.normpath(results)), "figures", name)


INFERENCE_CSV = "inference.csv"   # bench_inference.py's measurements of this profile's runs


def build(profile, results, out, fdir=None):
    """Write the report of `profile`: REPORT.md and tables/ in `out`, figures in `fdir`
    (default OUT/figures)."""
    from reporting import claims as CL
    from reporting import document, figures, load, savings, speedup_figure, style, threshold_figure
    from reporting import papers as PA
    from reporting import tables as T
    import runs

    df, left = load.load(profile, results)
    evidence = load.evidence(profile)
    papers = load.claims(profile)
    name = os.path.basename(profile).removesuffix(".yaml")
    pts = CL.points(df)
    comps = CL.comparisons(df, papers)
    verdicts = CL.claim_verdicts(comps, papers)
    tdir, fdir = os.path.join(out, "tables"), fdir or os.path.join(out, "figures")
    written = []

    def put(fname, text):
        written.append(os.path.join(tdir, fname))
        runs.atomic_write(written[-1], text)

    verdict = evidence != "none"
    titles = style.row_titles(df)
    looks = style.Looks(zip(df["method"], df["entry"]), dict(zip(df["entry"], df["role"])))
    level_tables = []
    for roles, what in ((("reference", "baseline"), "methods"), (("reference", "ablation"), "ablations")):
        for t in T.level_tables(df, roles, what, marked=verdict, titles=titles):
            if what == "ablations" and t.kind == "macs":
                continue
            tag = f"{t.row}_{'structured' if t.kind == 'macs' else what}"
            if any(o.row == t.row and o.kind == t.kind and o.header() == t.header() for o in level_tables):
                continue
            level_tables.append(t)
            put(f"levels_{tag}.md", t.md())
            put(f"levels_{tag}.tex", t.tex(f"tab:{name}-{tag}".replace("_", "-"), name))
    # a pipeline check draws no verdict: no point-by-point win/loss tables
    pairs = {t.key: (t, T.pair_rows(CL.point_pairs(df, pts, t))) for t in PA.POINT_TABLES
             if t.paper in papers} if verdict else {}
    for t, rows in pairs.values():
        if rows:
            put(f"pairs_{t.key}.md", T.md(T.pair_header(t.name), rows))
    put("points.md", T.md(T.POINT_HEADER, T.point_rows(pts)))
    put("points.csv", pts[T.POINT_COLUMNS].to_csv(index=False))
    flat = [{"paper": c["paper"], "claim": c["claim"], "row": c["row"], "a": c["a"]["entry"], "b": c["b"]["entry"],
             "a_epochs": c["a"]["epochs"], "b_epochs": c["b"]["epochs"], "outcome": c["outcome"],
             "strength": c["strength"], "level": lv["level"], "kind": c["kind"],
             "a_mean": sum(lv["a"]) / len(lv["a"]), "b_mean": sum(lv["b"]) / len(lv["b"]),
             "n_a": len(lv["a"]), "n_b": len(lv["b"]), "diff": lv["diff"], "p": lv["p"],
             "level_outcome": lv["outcome"]} for c in comps for lv in (c["levels"] or [None]) if lv]
    put("comparisons.csv", runs.csv_text(flat) if flat else "paper,claim\n")

    kw = dict(titles=titles, looks=looks)
    figs = [("Accuracy against sparsity", figures.tradeoff(pts, fdir, "nnz", "page", **kw)
             + figures.tradeoff(pts, fdir, "nnz", "col", **kw)),
            ("Ablations: accuracy against sparsity",
             figures.tradeoff(pts, fdir, "nnz", "page", "ablation", roles=("reference", "ablation"), **kw)
             + figures.tradeoff(pts, fdir, "nnz", "col", "ablation", roles=("reference", "ablation"), **kw)),
            ("Structured: accuracy against nonzero multiply-adds",
             figures.tradeoff(pts, fdir, "macs", "page", **kw) + figures.tradeoff(pts, fdir, "macs", "col", **kw)),
            ("Training dynamics on the common budget", figures.dynamics(df, pts, fdir, **kw)),
            ("Per-layer sparsity", figures.layers(df, pts, fdir, **kw)),
            ("Soft threshold over training", figures.threshold(df, pts, fdir, **kw)),
            ("λ searches: sparsity against λ", figures.searches(df, fdir, left.get("searches") or (), **kw)),
            ("Threshold schedules: the threshold and the ℓ1 coefficient it implies",
             threshold_figure.figure(df, fdir)),
            # measured by benchmarks/bench_inference.py --csv OUT/inference.csv (not by the sweep)
            ("CPU inference: measured speed-up against the nonzero-MAC ratio",
             speedup_figure.figure(os.path.join(out, INFERENCE_CSV), fdir))]
    figs = [(t, p) for t, p in figs if p]
    written += [p for _, ps in figs for p in ps]
    sv = savings.table(list(df["folder"]))
    sv_md = T.md(*savings.display(sv)) if sv else ""
    written.append(document.write(os.path.join(out, "REPORT.md"), name, evidence, df, left, pts, comps,
                                  verdicts, level_tables, figs, sv_md, pairs, papers, results=results))
    return written, len(df), left


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profiles", nargs="*", help="profile names (configs/profiles/) or files; "
                                               "default: those named by the runs in RESULTS/runs.csv")
    p.add_argument("--results", default="results", help="folder with runs/ and runs.csv")
    p.add_argument("--out", help="where REPORT.md, tables/ and figures/ go (default: RESULTS/<profile>/ "
                                 "and figures/<profile>/ beside RESULTS; with several profiles, "
                                 "OUT/<profile>/)")
    args = p.parse_args(argv)
    sys.path.insert(0, REPO)
    from reporting.load import ReportError, profiles_in
    import runs

    try:
        profiles = args.profiles or profiles_in(args.results)
        if not profiles:
            raise ReportError(f"{args.results}: no run of any profile there (run `python sweep.py PROFILE` "
                              f"first)", code=1)
        for prof in profiles:
            name = os.path.basename(prof).removesuffix(".yaml")
            out = args.out if args.out and len(profiles) == 1 else os.path.join(args.out or args.results, name)
            fdir = None if args.out else figures_dir(args.results, name)
            written, n, left = build(prof, args.results, out, fdir)
            extra = f"; left out {len(left['other'])} other row(s) of runs.csv" if left["other"] else ""
            print(f"{name}: {n} runs -> {os.path.join(out, 'REPORT.md')} (+{len(written) - 1} tables and "
                  f"figures; figures in {fdir or os.path.join(out, 'figures')}){extra}")
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except (runs.RunFolderError, OSError) as e:   # damaged or unreadable results
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    import runs
    sys.exit(runs.cli(main, "report.py"))

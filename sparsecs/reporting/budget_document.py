"""The words of "Verdicts against the budget" (REPORT.md), its tables/budget.csv and the
README block (tables/budget_readme.md), from what reporting/budget.py computed."""
from . import budget as B
from . import style
from . import tables as T


def _v(v):
    return "—" if not v else f"{sum(v) / len(v):.2f}" + (f" ± {_sd(v):.2f}" if len(v) > 1 else "")


def _seeds(n):
    return "one seed" if n == 1 else f"mean of {n} seeds"


def _miss(why, at=""):
    """A level without a value: work left (B.NOT_YET, which must not read as a miss), or not
    reached and why."""
    if why == "no run":
        return f"not run yet{at}"
    if why in B.NOT_YET:
        return f"not yet{at} ({'its search has not ended' if why == 'search not ended' else why})"
    return f"not reached{at} ({why})"


def _sd(v):
    m = sum(v) / len(v)
    return (sum((x - m) ** 2 for x in v) / (len(v) - 1)) ** 0.5


def _ep(s):
    return f"{s['epochs']} ep"


def setting_note(diff):
    """'' when the sides differ in their budget only; else the keys that differ, and what the
    comparison then rests on (said beside every comparison)."""
    if not diff:
        return ""
    what = "; ".join(f"{k}: {' / '.join(str(x) for x in v)}" for k, v in diff.items())
    return f"sides differ in {what}; rests on the setting check"


def _diff(cell):
    return "—" if cell is None else f"{cell[0]:+.2f} pp ({cell[1]})"


def _verdict(s, v, rests_on=(), axis="nnz"):
    """The side's verdict and the levels it rests on: "refuted (at 98, 99% sparse)", or of the
    dense multiply-adds for a claim on the MACs axis."""
    if not s["complete"]:
        return f"no verdict yet ({s['runs']} of {s['expected']} runs)"
    at = ", ".join(f"{lv * 100:g}" for lv in rests_on)
    return (f"{v} (at {at}% {'of the MACs' if axis == 'macs' else 'sparse'})") if at else v


def _claim_name(claim):
    return f"{claim.id if claim.id.startswith(claim.paper) else claim.paper + claim.id}"


def section(sides, papers, rows, reach, gaps, diff, figure_md=()):
    """The REPORT.md lines of the section."""
    heads = [_ep(s) for s in sides]
    note = setting_note(diff)
    L = ["## Verdicts against the budget", "",
         "The same entries at " + " and ".join(f"{s['epochs']} epochs (`{s['profile']}`)" for s in sides)
         + ", each side's comparisons and verdicts by the rules above, on its own runs (the profile's "
         "`compare_budget:` names the other side)."
         + ("" if all(s["complete"] for s in sides) else
            " **A side is incomplete: no verdict is compared yet** (its numbers are shown as they stand)."), ""]
    L += ["### Which runs form each side", "",
          T.md(["side", "profile", "epochs", "runs complete", "runs by entry", "setting"],
               [[h, f"`{s['profile']}`", s["epochs"], f"{s['runs']} of {s['expected']}",
                 ", ".join(f"{e} {n}" for e, n in s["df"]["entry"].value_counts(sort=False).items()),
                 ", ".join(f"{k} {s['setting'].get(k)}" for k in ("precision", "channels_last", "compile"))]
                for h, s in zip(heads, sides)], ["l"] * 6),
          "Run names: `tables/budget_runs.csv`.", ""]
    L += [f"**The two sides differ in more than their budget** ({note.split('; rests')[0].removeprefix('sides differ in ')}): "
          f"every comparison below rests on {B.SETTING_CHECK}, and says so." if note else
          "The two sides differ in their budget only (every setting key of their runs agrees: "
          + ", ".join(sorted(sides[0]["setting"])) + ").", ""]
    L += ["### Claims: the verdict at each budget", "",
          T.md(["claim", *[f"verdict at {h}" for h in heads], "held or moved"],
               [[f"{_claim_name(r['claim'])}. {r['claim'].title}",
                 *[_verdict(s, v, at, r["claim"].axis) for s, v, at in zip(sides, r["verdicts"], r["rests_on"])],
                 "—" if r["moved"] is None else ("**moved**" if r["moved"] else "held")] for r in rows],
               ["l"] * (len(sides) + 2)), ""]
    L += ["### Each comparison, level by level", "",
          "Δ: the claim's method minus the other, in pp (mean over seeds), with the level's outcome."
          + (f" Every row: {note}." if note else ""), ""]
    crow = []
    for r in rows:
        for c in r["comparisons"]:
            name = f"{style.label(c['a']['method'], c['a']['entry'])} vs {style.label(c['b']['method'], c['b']['entry'])}"
            crow.append([_claim_name(r["claim"]), name, "all", *[o or "—" for o in c["outcomes"]]]
                        + ([note] if note else []))
            for lv, cells in c["levels"].items():
                crow.append(["", "", _lv(lv, c["kind"]), *[_diff(x) for x in cells]] + ([note] if note else []))
    L += [T.md(["claim", "comparison", "level", *heads] + (["setting"] if note else []), crow,
               ["l"] * (3 + len(sides) + bool(note))) if crow else "No comparison on either side.", ""]
    L += moved_lines(sides, rows, note)
    L += ["### Reaching each level", "",
          "Accuracy at the level (mean ± std over seeds) where every seed's curve reaches it; else why not "
          "(the λ search's reason, or where the curve's points end)."
          + (f" Every cell: {note}." if note else ""), ""]
    L += [T.md(["method", "level", *heads],
               [[style.label(r["method"], r["entry"]), _lv(r["level"], "nnz"),
                 *[_v(v) if v else _miss(why) for v, why in r["sides"]]] for r in reach],
               ["l", "r"] + ["r"] * len(sides)) if reach else "No sparse entry.", ""]
    L += gap_lines(sides, gaps, note)
    L += list(figure_md)
    return L


def _lv(lv, kind):
    return f"{100 * lv:g}%" + (" MACs" if kind == "macs" else "")


def moved_lines(sides, rows, note):
    """Which verdicts held and which moved, with the comparisons whose outcome changed."""
    if not all(s["complete"] for s in sides):
        return []
    held = [_claim_name(r["claim"]) for r in rows if not r["moved"]]
    L = ["### Which verdicts held, which moved", "",
         f"Held: {', '.join(held) or 'none'}." + (f" ({note}.)" if note else ""), ""]
    for r in rows:
        if not r["moved"]:
            continue
        line = f"- **{_claim_name(r['claim'])}** moved: " + " → ".join(
            f"{v} at {_ep(s)}" for s, v in zip(sides, r["verdicts"]))
        why = []
        for c in r["comparisons"]:
            if len(set(c["outcomes"])) > 1:
                nums = "; ".join(f"{_lv(lv, c['kind'])}: " + " → ".join(_diff(x) for x in cells)
                                 for lv, cells in c["levels"].items())
                why.append(f"{style.label(c['b']['method'], c['b']['entry'])} "
                           f"{' → '.join(o or 'none' for o in c['outcomes'])} ({nums or 'no level'})")
        L.append(line + (": " + "; ".join(why) if why else "") + (f" ({note})" if note else ""))
    return L + [""]


def gap_lines(sides, gaps, note):
    """The dense model's train − test gap at each budget, whether claim A4 is testable, and
    where it is not at the longest budget, an estimate of the budget that would make it."""
    have = [(s, g) for s, g in zip(sides, gaps) if g]
    if not have:
        return ["### Does the dense model overfit? (claim A4)", "", "No dense model on either side.", ""]
    need = have[0][1]["min_gap"]
    parts = [f"{_ep(s)}: {g['field']} {g['train']:.2f}% − test {g['test']:.2f}% = **{g['gap']:.2f} pp** "
             f"({_seeds(g['n'])}; {'testable' if g['gap'] >= need else 'not testable'})" for s, g in have]
    L = ["### Does the dense model overfit? (claim A4)", "",
         f"Claim A4 is testable only where the full-budget dense model's training accuracy is at least "
         f"{need:g} pp above its test accuracy. " + "; ".join(parts) + "." + (f" ({note}.)" if note else ""), ""]
    if len(have) < 2:   # one budget's gap is no trend; say which side still lacks a dense model
        missing = [_ep(s) for s, g in zip(sides, gaps) if not g]
        L += [f"No budget can be estimated yet: {', '.join(missing)} has no complete dense run.", ""]
    elif have[-1][1]["gap"] < need:
        est = B.budget_needed([(s["epochs"], g["gap"]) for s, g in have], need)
        rule = ("the gap extrapolated linearly in log(epochs) through the two measured budgets, "
                "gap(E) = g₁ + (g₂ − g₁)·ln(E/E₁)/ln(E₂/E₁), solved for gap = "
                f"{need:g} pp")
        L += [(f"**Estimate** ({rule}): about {est:,.0f} epochs would make A4 testable; an estimate "
               f"from two points, not a measurement." if est is not None else
               f"No budget can be estimated from these runs: the gap did not grow from "
               f"{_ep(have[0][0])} to {_ep(have[-1][0])} ({rule} needs a growing gap)."), ""]
    return L


def csv_rows(sides, rows):
    """tables/budget.csv: one row per claim, comparison, level and side."""
    out = []
    for r in rows:
        for c in r["comparisons"]:
            for lv, cells in c["levels"].items():
                for s, cell, o in zip(sides, cells, c["outcomes"]):
                    out.append({"claim": _claim_name(r["claim"]), "a": c["a"]["entry"], "b": c["b"]["entry"],
                                "level": lv, "profile": s["profile"], "epochs": s["epochs"],
                                "diff": "" if cell is None else cell[0], "level_outcome": "" if cell is None else cell[1],
                                "outcome": o})
    return out


def run_rows(sides):
    """tables/budget_runs.csv: which runs form each side."""
    return [{"profile": s["profile"], "epochs": s["epochs"], "entry": e, "run": n}
            for s in sides for e, n in zip(s["df"]["entry"], s["df"]["run"])]


def readme_block(sides, rows, reach, gaps, diff):
    """A block for the README's committed results, to paste as it is."""
    heads = [_ep(s) for s in sides]
    note = setting_note(diff)
    L = [f"**Verdicts against the budget** (`{sides[-1]['profile']}` against `{sides[0]['profile']}`; "
         f"report: `results/{sides[-1]['profile']}/REPORT.md`"
         + (f"; {note}: {B.SETTING_CHECK}" if note else "; the sides differ in their budget only") + "):", "",
         T.md(["claim", *heads, ""],
              [[f"{_claim_name(r['claim'])} {r['claim'].title}", *[_verdict(s, v, at, r["claim"].axis) for s, v, at in zip(sides, r["verdicts"], r["rests_on"])],
                "—" if r["moved"] is None else ("moved" if r["moved"] else "held")] for r in rows],
              ["l"] * (len(sides) + 2))]
    top = max((r["level"] for r in reach), default=None)
    if top is not None:
        got = [f"{style.label(r['method'], r['entry'])}: " + ", ".join(
            f"{_v(v)} at {h}" if v else _miss(why, f" at {h}") for h, (v, why) in zip(heads, r["sides"]))
            for r in reach if r["level"] == top]
        L += [f"- {_lv(top, 'nnz')} sparse: " + "; ".join(got) + "."]
    gp = [f"{g['gap']:.2f} pp at {h}" for h, g in zip(heads, gaps) if g]
    if gp:
        L += [f"- Dense train − test gap: {', '.join(gp)} (claim A4 needs {gaps[-1]['min_gap'] if gaps[-1] else 1:g} pp)."]
    return "\n".join(L) + "\n"

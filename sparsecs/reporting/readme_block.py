"""tables/verdicts_readme.md: each claim's verdict and the comparisons that carry it, one
table row per claim, for the README's committed results (issue 33: the README's words come
from the report's). Nothing here decides anything: it prints what claims.py computed."""
from sparsecs.reporting import compare as K
from sparsecs.reporting import papers as PA
from sparsecs.reporting import style
from sparsecs.reporting import tables as T

SHORT = {K.WIN: "win", K.LOSS: "loss", K.INCONCLUSIVE: "inconclusive",
         K.UNMEASURABLE: "not measurable", K.NOT_TESTABLE: "outside its regime"}


def _lv(level, kind):
    return f"{100 * level:g}%" + (" MACs" if kind == "macs" else "")


def _p(p):
    return f"{p:.2g}"


def level_text(lv, kind):
    """'+1.05 at 95% (Holm 0.037, win)': the difference A − B in pp at one level."""
    o = SHORT.get(lv["outcome"], lv["outcome"])
    held = f"Holm {_p(lv.get('p_holm', lv['p']))}, {o}" if lv["p"] == lv["p"] else o
    return f"{lv['diff']:+.2f} at {_lv(lv['level'], kind)} ({held})"


def comparison_text(c):
    """'vs RigL: win (+0.49 at 90% (…); +1.05 at 95% (…))': one comparison, level by level."""
    b = style.label(c["b"]["method"], c["b"]["entry"])
    if not c["levels"]:
        return f"vs {b}: {c['outcome']}"
    lv = "; ".join(level_text(x, c["kind"]) for x in c["levels"])
    why = f"; {c['regime']}" if c["outcome"] == K.NOT_TESTABLE and c.get("regime") else ""
    return f"vs {b}: **{SHORT.get(c['outcome'], c['outcome'])}** ({lv}){why}"


def block(profile, verdicts, complete):
    """The markdown block, or '' for an incomplete profile (its report gives no verdict)."""
    if not complete:
        return ""
    rows = []
    for cid, title, _rule, v, mine in verdicts:
        claim = next(c for c in PA.CLAIMS if c.id == cid)
        name = cid if cid.startswith(claim.paper) else claim.paper + cid
        rows.append([f"{name}. {title}", f"**{v}**",
                     "<br>".join(comparison_text(c) for c in mine) or "no comparison"])
    head = (f"Verdicts of `{profile}` (report: `results/{profile}/REPORT.md`): Δ = the claim's method "
            "minus the other, in pp of test accuracy, at each level both sweeps span; Holm-corrected "
            "p of the paired or unpaired test the report names.")
    return head + "\n\n" + T.md(["claim", "verdict", "comparisons: Δ pp at each level"], rows, ["l", "l", "l"])

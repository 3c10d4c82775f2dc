"""A claim across rows (models): each row's verdict is reached on that row's comparisons alone
(compare.claim_verdict), then the rows' verdicts are combined by one declared rule (RULE,
combine). Used by a report whose profile has several rows (reporting/claims.claim_verdicts)
and by the cross-profile table (`python report.py --across PROFILE ...`, table below), one
column a (profile, row) pair, for the README."""
from . import compare as K

SUPPORTED, REFUTED, MIXED = "supported", "refuted", "mixed"
NO_EVIDENCE = "no evidence at this scale"     # compare.claim_verdict of no counted comparison
INCOMPLETE = "no verdict yet (profile incomplete)"
SUGGESTIVE = " (suggestive only: one seed)"

RULE = ("Across rows, each row's verdict is reached on that row's comparisons alone, then: "
        "supported if at least one row supports the claim and none refutes it; refuted if at "
        "least one row refutes it and none supports it; mixed if rows do both; otherwise "
        "inconclusive where some row's comparisons count (not measurable at this scale where "
        "every such row is). Rows where the claim is not testable at this budget, has no "
        "comparison, or whose profile is incomplete do not count, and are listed. Suggestive "
        "only (one seed) where every row behind a supported or refuted verdict is.")


def _base(v):
    """A row verdict without its one-seed note: (base, suggestive)."""
    return v.removesuffix(SUGGESTIVE), v.endswith(SUGGESTIVE)


def not_counted(v):
    return _base(v)[0] in (K.NOT_TESTABLE, NO_EVIDENCE, INCOMPLETE)


def combine(rows):
    """(verdict across rows, [rows that do not count]) of {row: that row's verdict}, by RULE."""
    base = {r: _base(v) for r, v in rows.items()}
    skipped = [r for r, v in rows.items() if not_counted(v)]
    counted = {r: b for r, b in base.items() if r not in skipped}
    sup = [s for b, s in counted.values() if b == SUPPORTED]
    ref = [s for b, s in counted.values() if b == REFUTED]
    if sup and ref:
        return MIXED, skipped
    if sup or ref:
        v, notes = (SUPPORTED, sup) if sup else (REFUTED, ref)
        return v + (SUGGESTIVE if all(notes) else ""), skipped
    if counted:
        if all(b == K.UNMEASURABLE for b, _ in counted.values()):
            return K.UNMEASURABLE, skipped
        return K.INCONCLUSIVE, skipped
    if any(_base(v)[0] == K.NOT_TESTABLE for v in rows.values()):
        return K.NOT_TESTABLE, skipped
    if rows and all(_base(v)[0] == INCOMPLETE for v in rows.values()):
        return INCOMPLETE, skipped
    return NO_EVIDENCE, skipped


def cell(v):
    return v if v else "—"


def table(columns, claims):
    """Markdown: one line a claim (`claims`: [(id, title)]), one column a row (`columns`:
    [(header, {claim id: verdict})], a claim the column's profile does not declare absent),
    and the verdict across them by RULE, with the rows that did not count."""
    head = ["claim", *[h for h, _ in columns], "across rows", "not counted"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join([":---"] * len(head)) + " |"]
    for cid, title in claims:
        mine = {h: v[cid] for h, v in columns if cid in v}
        if not mine:
            continue
        across, skipped = combine(mine)
        cells = [f"{cid}. {title}", *[cell(v.get(cid, "")) for _, v in columns],
                 f"**{across}**", ", ".join(skipped) or "—"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n\n" + RULE + "\n"

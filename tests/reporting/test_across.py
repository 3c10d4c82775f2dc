"""Claims across rows (issue 39 item 2): each row's verdict on its own comparisons, then one
rule across rows (reporting/across.py RULE). Hand-made per-row verdicts for every branch of
the rule, the per-row step on synthetic comparisons, and the markdown table."""
import pytest

import report
from sparsecs.reporting import across as AC
from sparsecs.reporting import claims as CL
from sparsecs.reporting import compare as K

S, R, I, U, NT, NE = ("supported", "refuted", "inconclusive", K.UNMEASURABLE, K.NOT_TESTABLE,
                      "no evidence at this scale")
ONE = " (suggestive only: one seed)"


@pytest.mark.parametrize("rows, verdict, skipped", [
    ({"a": S, "b": S}, S, []),
    ({"a": S, "b": I}, S, []),                       # an inconclusive row does not block support
    ({"a": S, "b": NT}, S, ["b"]),                   # not testable: not counted, listed
    ({"a": R, "b": I, "c": NE}, R, ["c"]),
    ({"a": S, "b": R}, "mixed", []),                 # rows disagree
    ({"a": S + ONE, "b": R}, "mixed", []),
    ({"a": I, "b": U}, I, []),
    ({"a": U, "b": U, "c": NT}, U, ["c"]),
    ({"a": NT, "b": NE}, NT, ["a", "b"]),
    ({"a": NE}, NE, ["a"]),
    ({"a": AC.INCOMPLETE, "b": AC.INCOMPLETE}, AC.INCOMPLETE, ["a", "b"]),
    ({"a": AC.INCOMPLETE, "b": S}, S, ["a"]),
    ({"a": S + ONE, "b": S + ONE}, S + ONE, []),     # suggestive: every supporting row is
    ({"a": S + ONE, "b": S}, S, []),                 # one row with seeds on both sides: not
    ({"a": R + ONE, "b": I}, R + ONE, []),
    ({"a": S}, S, []), ({"a": I}, I, []), ({"a": NT}, NT, ["a"]),   # one row: its own verdict
])
def test_the_rule_across_rows(rows, verdict, skipped):
    assert AC.combine(rows) == (verdict, skipped)


def comp(row, outcome, strength="significant"):
    return {"claim": "1", "row": row, "outcome": outcome, "strength": strength}


def test_each_row_is_judged_on_its_own_comparisons():
    # pooled, 1 win against 2 inconclusive would be inconclusive (wins < the rest); per row the
    # ResNet row supports the claim (its only comparison won) and the VGG row is inconclusive
    comps = [comp("resnet", "win"), comp("vgg", "inconclusive"), comp("vgg", "inconclusive")]
    assert K.claim_verdict(["win", "inconclusive", "inconclusive"], "significant") == I
    assert CL.row_verdicts(comps) == {"resnet": S, "vgg": I}
    v = {n: verdict for n, _, _, verdict, _ in CL.claim_verdicts(comps)}
    assert v["1"] == S
    # a loss in one row and a win in the other: each row decided, the rows disagree
    comps = [comp("resnet", "win"), comp("vgg", "loss")]
    assert CL.row_verdicts(comps) == {"resnet": S, "vgg": R}
    assert {n: verdict for n, _, _, verdict, _ in CL.claim_verdicts(comps)}["1"] == "mixed"
    # a row whose only comparison is outside the regime: not testable, not counted
    comps = [comp("resnet", K.NOT_TESTABLE, ""), comp("vgg", "win", "suggestive")]
    assert CL.row_verdicts(comps) == {"resnet": NT, "vgg": S + ONE}
    assert {n: verdict for n, _, _, verdict, _ in CL.claim_verdicts(comps)}["1"] == S + ONE


def test_table_sets_rows_side_by_side_with_the_verdict_across():
    cols = [("ResNet-20 (fashion)", {"1": S, "2": NT}), ("VGG-16 (fashion_vgg16)", {"1": I, "2": R}),
            ("DenseNet-40 (fashion_densenet)", {"2": S})]         # declares claim 2 only
    md = AC.table(cols, [("1", "Sparser"), ("2", "Structured"), ("3", "Nobody's")])
    lines = md.splitlines()
    assert lines[0] == ("| claim | ResNet-20 (fashion) | VGG-16 (fashion_vgg16) | DenseNet-40 (fashion_densenet) "
                        "| across rows | not counted |")
    assert lines[2] == "| 1. Sparser | supported | inconclusive | — | **supported** | — |"
    assert lines[3] == "| 2. Structured | not testable at this budget | refuted | supported | **mixed** | ResNet-20 (fashion) |"
    assert not any(line.startswith("| 3.") for line in lines)    # no profile declares it
    assert AC.RULE in md


def test_across_refuses_a_pipeline_check_and_no_profile(capsys):
    assert report.main(["--across", "quick"]) == 2
    assert report.main(["--across"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "error: --across: quick is a pipeline check (evidence: none): it states no verdict"
    assert err[1] == "error: --across: name the profiles to set side by side"


def test_across_a_profile_with_no_run_yet_is_listed_not_counted(tmp_path):
    md = report.across(["fashion_vgg16"], str(tmp_path / "results"))
    row = next(line for line in md.splitlines() if line.startswith("| 2. "))
    assert row.endswith(f"| **{AC.INCOMPLETE}** | fashion_vgg16: no run complete |")

"""The LaTeX and Markdown level tables (reporting/tables.py): footnotes and captions as a reader
reads them."""
from sparsecs.reporting import tables as T


def test_table_footnotes_name_keys_as_a_reader_knows_them_and_captions_only_their_columns():
    cells = [{"vals": [], "note": "collapses at optim.final_threshold ≥ 0.418, past its sparsest point",
              "bold": False}]
    t = T.LevelTable("f-r20", "macs", "structured", "ResNet-20, Fashion-MNIST",
                     [("filter pruning", 8, "filter")], None, [(0.5, cells)], False, 10_000)
    tex = t.tex("tab:s")
    assert "optim." not in tex and "final\\_threshold" not in tex
    assert "not reached: collapses at the final threshold D $\\geq$ 0.418" in tex
    assert "optim." not in t.md()
    cap = t.caption()
    assert "structured sparsity, filter pruning:" in cap and "xRDA" not in cap   # the one column it has

"""The dense held-out check: the profile's dense runs beside published figures, with hand-computed
mean, sample std and the test set's binomial standard error."""
import pandas as pd

from sparsecs.reporting import published


def frame(accs, dataset="fashion_mnist", role="dense"):
    return pd.DataFrame({"row": "r", "dataset": dataset, "entry": "sgd", "role": role, "total_epochs": 8,
                         "test_acc": accs, "n_test": 10000, "n_weights": 67208})


def test_section_numbers_by_hand():
    text = "\n".join(published.section(frame([91.0, 92.0, 93.0])))
    # mean 92, sample std 1, SE sqrt(0.92 * 0.08 / 10000) = 0.2713 pp
    assert "92.00 ± 1.00% over 3 seeds" in text and "test-set SE 0.27 pp" in text
    assert "67,208 prunable weights" in text
    # ResNet-18's 94.9% is 2.90 pp above this dense mean
    assert "| ResNet-18 | 11M | flips, translation, rotation | 94.9 | -2.90 |" in text


def test_no_section_without_published_figures_or_dense_runs():
    assert published.section(frame([91.0], dataset="digits")) == []
    assert published.section(frame([91.0], role="reference")) == []


def test_one_seed_says_so():
    assert "91.50% (one seed)" in "\n".join(published.section(frame([91.5])))

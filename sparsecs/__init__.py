"""sparsecs: the library behind train.py, eval.py, sweep.py, report.py and export.py (config,
run folders, data, metrics, distributed training, sparse inference, sweeping, reporting,
exporting). The models and methods live at the repository root (models/, optim/)."""
import os

# The design card keeps models/ and optim/ at the repository's top level; the library imports
# them as sparsecs.models and sparsecs.optim, so no other package's `models` or `optim` can
# shadow ours (and hubconf.py needs no sys.modules juggling).
__path__.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

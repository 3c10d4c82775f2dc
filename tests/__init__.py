"""The test suite: folders mirror the package (tests/reporting/ tests sparsecs/reporting/, ...)."""
import os

# the repository root, whatever folder under tests/ a test file sits in
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

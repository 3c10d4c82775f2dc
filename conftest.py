# Puts the repository root on sys.path so tests import the flat modules (data, train, ...).

"""What export.py is built from, one job a module:

    files.py  the run it reads, the files it writes (each with its sha256 beside it),
              export.json, and reading an export back with that check
    slim.py   structured slimming: zero filters physically removed, their constants folded
    csr.py    the weights-file formats: csr (sparse conv / linear weights) and dense
    accuracy.py  a slim export's test accuracy against its run's, image by image
    levels.py which runs of a profile `export.py --profile` exports (export_levels, export_macs_levels)
"""

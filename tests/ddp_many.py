"""Several train.py command lines in one process, so that a test pays for one torchrun start
(and one process-group setup per run) instead of one per run.

    torchrun --standalone --nproc_per_node=2 -m tests.ddp_many ARGS.json

ARGS.json holds a list of train.py argument lists; the exit status is the first non-zero one.
"""
import json
import sys

from sparsecs import distributed
import train

if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        groups = json.load(f)
    d = distributed.from_env()   # one process group for all runs: train.main leaves it alone
    for argv in groups:
        code = train.main(argv)
        if code:
            sys.exit(code)
    distributed.close(d)

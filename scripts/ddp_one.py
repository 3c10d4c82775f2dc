"""train.py as a DDP run of one process: the process group (NCCL on a GPU, gloo on the CPU)
and DistributedDataParallel at world size 1, which train.py otherwise runs as a plain process
(distributed.from_env). On a one-GPU machine this is the only way to run the NCCL path: NCCL
refuses two ranks on one GPU. Used by scripts/device_check.py.

    python -m torch.distributed.run --standalone --nproc_per_node=1 -m scripts.ddp_one \\
        CONFIG [KEY=VALUE ...] --out DIR --results DIR
"""
import argparse
import os
import sys

import torch
import torch.distributed as dist

from sparsecs import config as C
from sparsecs import distributed
import train


class OneRank(distributed.Dist):
    """Rank 0 of 1, with every collective and the DDP wrapper switched on."""

    @property
    def enabled(self):
        return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--out", required=True)
    p.add_argument("--results", required=True)
    args = p.parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "0")) != 1:
        print("error: run under torchrun --nproc_per_node=1", file=sys.stderr)
        return 2
    cfg = C.build(args.config, args.overrides)
    cuda = torch.cuda.is_available() and cfg["device"] != "cpu"
    if cuda:
        torch.cuda.set_device(0)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        print(f"backend {dist.get_backend()}, world size {dist.get_world_size()}", flush=True)
        s = train.train(cfg, out=args.out, results=args.results, quiet=True, dist=OneRank())
        print(f"test_acc {s['test_acc']:.2f} world_size {s['world_size']}", flush=True)
    except train.RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fixtures shared by several test files."""
import pytest
import torch

from sparsecs import data
import train


@pytest.fixture
def one_thread():
    """For tiny tensors: one thread is faster and spares the shared cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def train_then_crash(monkeypatch):
    """train_then_crash(cfg, out, results): train `cfg` in `out` until epoch 1 starts, then
    raise KeyboardInterrupt as a crash would; the folder holds epoch 0's checkpoint."""
    real = data.Data.train_batches

    def killed(self, batch_size, seed, epoch, **kw):
        if epoch == 1:
            raise KeyboardInterrupt
        yield from real(self, batch_size, seed, epoch, **kw)

    def run(cfg, out, results):
        monkeypatch.setattr(data.Data, "train_batches", killed)
        with pytest.raises(KeyboardInterrupt):
            train.train(cfg, out=out, results=results, quiet=True)
        monkeypatch.undo()

    return run


class StandInLauncher:
    """A sweep launcher that trains nothing: `write(results, spec)` writes the run folder a
    real run would have left (each test decides what), and every run 'finishes' at once.
    Records the names it was asked to start."""

    def __init__(self, results, write, slots=2):
        self.results, self.write, self.slots, self.started = results, write, slots, []

    def free(self, running):
        return self.slots - running

    def submit(self, specs):
        out = {}
        for s in specs:
            self.started.append(s.name)
            self.write(self.results, s)
            out[object()] = s
        return out

    def wait(self, handles):
        return [(s, 0, "") for s in handles.values()]

    def close(self, cancel=False, handles=()):
        pass

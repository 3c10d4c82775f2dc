import torch
from torch import nn

from sparsecs import metrics


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


def test_counts_by_hand():
    m = Tiny()
    with torch.no_grad():
        m.conv.weight.fill_(1.0)
        m.conv.weight[0] = 0            # one whole filter: 2 kernels, 18 entries
        m.conv.weight[1, 0] = 0         # one more kernel: 9 entries
        m.conv.weight[2, 1, 0, 0] = 0   # a single entry
        m.fc.weight.fill_(1.0)
        m.fc.weight[:, 0] = 0           # 4 of 12
        m.fc.bias.zero_()               # unpenalized zeros count only in sparsity_all
    c = metrics.counts(m, (1, 2, 32, 32))
    assert c["n_weights"] == 54 + 12
    assert c["nnz"] == (54 - 18 - 9 - 1) + (12 - 4)
    assert abs(c["sparsity"] - 32 / 66) < 1e-12
    n_params = 54 + 12 + 4 + 3 + 3  # conv, fc w, fc b, bn w, bn b
    assert c["n_params"] == n_params
    assert abs(c["sparsity_all"] - (32 + 4 + 3) / n_params) < 1e-12  # + fc bias + bn bias (zero-init)
    # conv: 16x16 output positions (stride 2) x 54 weights; fc: 12
    assert c["flops_dense"] == 16 * 16 * 54 + 12
    assert abs(c["flops_nonzero"] - (16 * 16 * 26 + 8)) < 1e-9
    rows = {r["layer"]: r for r in metrics.layer_table(m, (1, 2, 32, 32))}
    assert rows["conv"]["zero_kernels"] == 3 and rows["conv"]["zero_filters"] == 1
    assert rows["conv"]["kernels"] == 6 and rows["fc"]["zero_filters"] == 0
    assert metrics.sparsity(m) == (1 - 34 / 66, 34)


def test_evaluate_accuracy_and_loss():
    m = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.eye(2))
    x = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0], [5.0, 4.0]])
    y = torch.tensor([0, 1, 0, 1])  # argmax: 0, 1, 1, 0 -> 2 of 4 right
    loss, acc = metrics.evaluate(m, [(x[:2], y[:2]), (x[2:], y[2:])])
    expected = torch.nn.functional.cross_entropy(x, y).item()
    assert acc == 50.0 and abs(loss - expected) < 1e-6

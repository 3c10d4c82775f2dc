"""RigL against its authors' code (issue 33): an independent numpy re-implementation of the
update in their sort/scatter form (google-research/rigl, rigl/sparse_optimizers_base.py,
SparseSETOptimizerBase._get_update_op with SparseRigLOptimizerBase's scores; rigl-torch's
RigLScheduler._rigl_step is the same in torch), a hand-computed regrowth, the update at the
first batch, and the method revision in the config hash."""
import numpy as np
import pytest
import torch
from torch import nn

from sparsecs import config as C
from sparsecs import data
from sparsecs.optim import get_method
from sparsecs.optim.rigl import RigL


def make(model, steps=4, epochs=2, **hp):
    if not hasattr(model, "input_shape"):
        model.input_shape = (model[0].in_features,) if isinstance(model[0], nn.Linear) \
            else data.get("digits").input_shape
    hp = {**RigL.defaults, **hp}
    RigL.validate(hp)
    return get_method("rigl")(model, hp, steps, epochs)


def authors_update(w, mask, grad, buf, drop_fraction):
    """Their _get_update_op on one layer, in numpy: score_drop = |mask·w| (their noise std set
    to 0), score_grow = |grad|, grow_init 'zeros', initial_acc_scale 0, reinit_when_same
    False. top_k's order: descending, ties to the lower index (a stable sort of −score).
    Returns the new mask and the weights and momentum as the forward pass sees them
    (mask · value: theirs keeps stale values under the mask, here they are zeros)."""
    shape = w.shape
    mask, w, grad, buf = (np.asarray(a, dtype=np.float32).reshape(-1) for a in (mask, w, grad, buf))
    n_total = mask.size
    n_ones = int(mask.sum())
    n_prune = int(n_ones * drop_fraction)          # rigl-torch's form; theirs casts f32 to int32
    n_keep = n_ones - n_prune
    score_drop = np.abs(mask * w)
    sorted_indices = np.argsort(-score_drop, kind="stable")
    new_values = np.where(np.arange(n_total) < n_keep, 1.0, 0.0).astype(np.float32)
    mask1 = np.zeros(n_total, np.float32)
    mask1[sorted_indices] = new_values             # scatter_nd
    score_grow = np.abs(grad)
    score_grow_lifted = np.where(mask1 == 1, score_grow.min() - 1, score_grow)
    sorted_indices = np.argsort(-score_grow_lifted, kind="stable")
    new_values = np.where(np.arange(n_total) < n_prune, 1.0, 0.0).astype(np.float32)
    mask2 = np.zeros(n_total, np.float32)
    mask2[sorted_indices] = new_values
    assert (mask1 * mask2).sum() == 0
    new_connections = (mask2 == 1) & (mask == 0)
    new_w = np.where(new_connections, 0.0, w).astype(np.float32)
    new_buf = np.where(new_connections, 0.0, buf).astype(np.float32)
    new_mask = mask1 + mask2
    regrown = int(((mask2 == 1) & (mask == 1)).sum())
    return (new_mask.reshape(shape), (new_mask * new_w).reshape(shape), (new_mask * new_buf).reshape(shape),
            regrown)


def net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.ReLU(), nn.Conv2d(8, 6, 3, bias=False),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5, bias=False)
                         ).to(memory_format=torch.channels_last)


@pytest.mark.parametrize("seed,target,fraction", [(0, 0.5, 0.3), (1, 0.9, 0.3), (2, 0.2, 0.5),
                                                  (3, 0.7, 0.11), (4, 0.05, 0.4)])
def test_update_equals_the_authors_sort_and_scatter(seed, target, fraction):
    """Random weights, gradients and momentum on random masks; the small |w| of some active
    weights get large gradients so that dropped weights are grown back (counted below), and
    at target 0.2 / 0.05 fewer weights are inactive than are dropped."""
    torch.manual_seed(seed)
    model = net()
    m = make(model, target=target, distribution="uniform")
    g = torch.Generator().manual_seed(100 + seed)
    ref, regrown = [], 0
    for w, mk in zip(m.weights, m.masks):
        with torch.no_grad():
            w.copy_(torch.randn(w.shape, generator=g) * mk)
        grad = torch.randn(w.shape, generator=g)
        grad = torch.where((w.abs() < 0.3) & (mk > 0), grad * 10, grad)
        w.grad = grad.contiguous(memory_format=torch.channels_last) if w.dim() == 4 else grad
        buf = torch.randn(w.shape, generator=g) * mk
        m.optimizer.state[w]["momentum_buffer"] = buf.clone()
        r = authors_update(w.detach().numpy(), mk.numpy(), grad.numpy(), buf.numpy(), fraction)
        ref.append(r[:3])
        regrown += r[3]
    counts = [int(k.sum()) for k in m.masks]
    m.update_masks(fraction)
    assert regrown > 0   # the case where the old update (candidates: inactive only) differs
    for w, mk, (rmask, rw, rbuf) in zip(m.weights, m.masks, ref):
        assert np.array_equal(mk.numpy(), rmask)
        assert np.array_equal(w.detach().numpy(), rw)
        assert np.array_equal(m.optimizer.state[w]["momentum_buffer"].numpy(), rbuf)
    assert [int(k.sum()) for k in m.masks] == counts


def test_a_dropped_weight_with_the_largest_gradient_is_regrown_with_its_value_and_momentum():
    # 6 weights, flat 0-3 active. Fraction 0.5: k = floor(2) = 2; kept the largest |w| of the
    # active: 0.8 (0) and 0.5 (2); dropped 0.02 (1) and 0.3 (3). Grown: the 2 largest |g| of
    # flat 1, 3, 4, 5 (|g| 3, 0.4, 1, 0.5): 1 (dropped, |g| 3: back with w = −0.02 and its
    # momentum 0.7) and 4 (new: w = 0, momentum 0). Flat 3 ends at 0, its momentum too.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2, bias=False))
    m = make(model, steps=1, epochs=1, target=0.5, distribution="uniform")
    w = model[0].weight
    with torch.no_grad():
        m.masks[0].copy_(torch.tensor([[1., 1., 1.], [1., 0., 0.]]))
        w.copy_(torch.tensor([[0.8, -0.02, 0.5], [0.3, 0.0, 0.0]]))
    m.optimizer.state[w]["momentum_buffer"] = torch.tensor([[0.1, 0.7, -0.2], [0.05, 0.0, 0.0]])
    w.grad = torch.tensor([[0.1, -3.0, 0.2], [0.4, 1.0, 0.5]])
    assert m.update_masks(0.5) == 1   # one new connection (flat 4)
    assert m.masks[0].tolist() == [[1., 1., 1.], [0., 1., 0.]]
    assert torch.equal(w.detach(), torch.tensor([[0.8, -0.02, 0.5], [0.0, 0.0, 0.0]]))
    assert torch.equal(m.optimizer.state[w]["momentum_buffer"], torch.tensor([[0.1, 0.7, -0.2], [0.0, 0.0, 0.0]]))


def test_the_first_batch_is_a_mask_update_at_fraction_alpha_without_a_weight_step():
    """Their last_update_step starts at −ΔT, so global step 0 updates the mask (the cond's
    true branch: no SGD step, global step not incremented), with the cosine at 0: α."""
    torch.manual_seed(0)
    model = net()
    m = make(model, steps=5, epochs=2, target=0.8, alpha=0.5, delta_t=3)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)).to(memory_format=torch.channels_last)
    lr0 = m.lr

    def backward():
        m.zero_grad()
        model(x).square().sum().backward()

    backward()
    ws, masks = [w.detach().clone() for w in m.weights], [k.clone() for k in m.masks]
    ref = [authors_update(w.numpy(), k.numpy(), w_.grad.numpy(), np.zeros(w.shape), 0.5)
           for w, k, w_ in zip(ws, masks, m.weights)]
    assert m.update_due()
    m.step()
    assert (m.t, m.updates, m.sgd_steps(), m.last_update) == (1, 1, 0, 0)
    assert m.lr == lr0   # no SGD step was taken: no momentum yet, the lr schedule where it was
    assert not any("momentum_buffer" in st for st in m.optimizer.state.values())
    assert any(not torch.equal(k, k0) for k, k0 in zip(m.masks, masks))
    for w, k, (rmask, rw, _, _) in zip(m.weights, m.masks, ref):
        assert np.array_equal(k.numpy(), rmask) and np.array_equal(w.detach().numpy(), rw)
    # the next batch is the SGD step of global step 0: the weights move, the lr schedule too
    backward()
    before = [w.detach().clone() for w in m.weights]
    assert not m.update_due()
    m.step()
    assert m.sgd_steps() == 1 and m.lr != lr0
    assert all(not torch.equal(w, b) for w, b in zip(m.weights, before))


# config_hash of the quick configs as computed before Method.revision existed (commit
# ca24d73): C.config_hash(C.build("configs/quick/<m>.yaml", [])).
HASHES_BEFORE = {"sgd": "90ef0d94", "gmp": "71825f57", "str": "97528eed", "xrda": "60e4cb9a"}
RIGL_BEFORE = "bc890356"


@pytest.mark.parametrize("method", sorted(HASHES_BEFORE))
def test_the_revision_leaves_other_methods_hashes_unchanged(method):
    assert C.config_hash(C.build(f"configs/quick/{method}.yaml", [])) == HASHES_BEFORE[method]


def test_rigl_revision_2_changes_its_hash_and_only_through_the_revision(monkeypatch):
    cfg = C.build("configs/quick/rigl.yaml", [])
    assert RigL.revision == 2 and C.config_hash(cfg) != RIGL_BEFORE
    assert C.run_name(cfg).endswith("-" + C.config_hash(cfg))
    monkeypatch.setattr(RigL, "revision", 1)
    assert C.config_hash(cfg) == RIGL_BEFORE

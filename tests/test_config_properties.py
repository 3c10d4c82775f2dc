"""Property-based tests of the config loader and overrides: whatever a user types ends in a
valid resolved config or a one-line ConfigError, never another exception. Derandomized, so
that CI runs the same examples every time (run with --hypothesis-seed to explore)."""
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsecs import config as C

KEYS = sorted(C.DEFAULTS) + ["optim.lr", "optim.lam", "optim.momentum", "optim.weight_decay",
                              "optim.gamma", "optim.milestones", "optim.mode", "optim.target",
                              "identity.role", "nonsense", "optim.nonsense", ""]
VALUES = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1", "1.5", "1e-3", "true", "null", "[]",
                     "[1, 2]", "{a: 1}", "cpu", "xrda", "sgd", "channel", "digits", "'", ":", "[",
                     "\x00", "resnet20", "auto"]),
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**6, 10**6).map(str),
)
OVERRIDES = st.lists(st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"),
                     max_size=4)
METHODS = st.sampled_from(["sgd", "xrda", "soft_threshold", "gmp", "filter_prune", "rda_l1", "prox_sgd",
                           "sgd_l1", "magnitude_finetune"])


def _finite_numbers(d):
    # (identity.calibration_target is NaN by design: "no search")
    for v in C.flatten({k: v for k, v in d.items() if k != "identity"}).values():
        if isinstance(v, float):
            assert math.isfinite(v)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(method=METHODS, overrides=OVERRIDES)
def test_any_overrides_give_a_valid_config_or_one_line_error(method, overrides):
    try:
        cfg = C.build(None, [f"method={method}", *overrides])
    except C.ConfigError as e:
        assert str(e) and "\n" not in str(e)
        return
    _finite_numbers(cfg)
    assert C.resolve(cfg) == cfg                     # resolving is idempotent
    assert C.run_name(cfg)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                         st.sampled_from([b"method: sgd\n", b"epochs: 2\nepochs: 3\n", b"- a\n- b\n",
                                          b"inherit: nowhere.yaml\n", b"optim: 3\n", b"{", b"\xff\xfe"])))
def test_any_config_file_gives_a_valid_config_or_one_line_error(tmp_path_factory, content):
    p = tmp_path_factory.mktemp("c") / "c.yaml"
    p.write_bytes(content)
    try:
        cfg = C.build(str(p), [])
    except C.ConfigError as e:
        assert str(e) and "\n" not in str(e)
        return
    _finite_numbers(cfg)

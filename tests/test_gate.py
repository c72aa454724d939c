"""The gate V' = g(z) and the density budget: forward values, float64 finite
differences of the backward, and hypothesis properties (exactly 0 where z <= 0,
bounded by 1 for the clip gate, the budget's straight-through gradient)."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_grad, numerical_grad
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lccl_ref import functional as F


def away_from_kinks(rng, shape):
    """z with no entry within 1e-3 of the kinks 0 and 1 (finite differences step 1e-6)."""
    z = rng.standard_normal(shape) * 1.5
    near = (np.abs(z) < 1e-3) | (np.abs(z - 1) < 1e-3)
    z[near] += 0.01
    return z


@pytest.mark.parametrize("kind", F.GATES)
def test_gate_backward_finite_differences(kind):
    rng = np.random.default_rng(0)
    check_grad(lambda z: F.gate_forward(z, kind), F.gate_backward,
               away_from_kinks(rng, (2, 3, 4, 5)), rng=1)


def test_gate_values():
    z = np.array([-2.0, -0.0, 0.0, 0.25, 1.0, 3.0])
    np.testing.assert_array_equal(F.gate_forward(z, "relu")[0], [0, 0, 0, 0.25, 1, 3])
    np.testing.assert_array_equal(F.gate_forward(z, "clip")[0], [0, 0, 0, 0.25, 1, 1])
    # the slope: 1 where the gate passes z through, 0 at and beyond the kinks
    dz = F.gate_backward(np.ones(6), F.gate_forward(z, "clip")[1])
    np.testing.assert_array_equal(dz, [0, 0, 0, 1, 0, 0])


@settings(max_examples=60, deadline=None)
@given(z=arrays(st.sampled_from([np.float32, np.float64]), st.integers(1, 40),
                elements=st.floats(-1e6, 1e6, width=32)),
       kind=st.sampled_from(F.GATES))
def test_gate_is_zero_exactly_where_z_is_not_positive(z, kind):
    v, _ = F.gate_forward(z, kind)
    assert v.dtype == z.dtype and v.shape == z.shape
    np.testing.assert_array_equal(v == 0, z <= 0)  # the skip is exact: mask = (z > 0)
    assert np.all(v >= 0)
    if kind == "clip":
        assert np.all(v <= 1)
        np.testing.assert_array_equal(v[(z > 0) & (z < 1)], z[(z > 0) & (z < 1)])


def test_gate_nan_stays_nan():
    v, _ = F.gate_forward(np.array([np.nan, 1.0]), "clip")
    assert np.isnan(v[0]) and v[1] == 1


def test_gate_bad_arguments():
    with pytest.raises(ValueError, match="gate must be one of"):
        F.gate_forward(np.zeros(3), "tanh")
    with pytest.raises(TypeError, match="dtype"):
        F.gate_forward(np.zeros(3, np.int64), "relu")
    _, cache = F.gate_forward(np.zeros(3), "relu")
    with pytest.raises(ValueError, match="shape"):
        F.gate_backward(np.zeros(4), cache)


def test_density_and_its_surrogate_gradient():
    """d = mean(z > 0); the backward is the gradient of dd * mean(sigmoid(z / tau))."""
    rng = np.random.default_rng(2)
    z = rng.standard_normal((3, 1, 4, 4))
    d, cache = F.density_forward(z)
    assert d == np.count_nonzero(z > 0) / z.size
    for dd, tau in ((0.7, 1.0), (-2.0, 0.5)):
        def surrogate(zz, dd=dd, tau=tau):
            return dd * np.mean(1 / (1 + np.exp(-zz / tau)))

        got = F.density_backward(dd, cache, tau)
        np.testing.assert_allclose(got, numerical_grad(surrogate, z.copy()), rtol=1e-6,
                                   atol=1e-12)
        # a loss that wants less density (dd > 0) gets a gradient that SGD turns into lower z
        assert np.all(np.sign(got) == np.sign(dd))
    assert F.density_forward(np.zeros((0, 3)))[0] == 0.0
    with pytest.raises(ValueError, match="tau"):
        F.density_backward(1.0, cache, tau=0.0)


@pytest.mark.parametrize("t_cheap", [1, 3])
def test_product_backward_finite_differences(t_cheap):
    # O = V ⊙ V' and its backward, dV = dO ⊙ V', dV' = dO ⊙ V (summed over T when T' = 1),
    # against centred differences with a random upstream gradient
    from gradcheck import numerical_grad

    rng = np.random.default_rng(2)
    v, vc = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, t_cheap, 4, 5))
    do = rng.standard_normal((2, 3, 4, 5))
    o, cache = F.product_forward(v, vc)
    np.testing.assert_array_equal(o, v * vc)
    dv, dvc = F.product_backward(do, cache)
    assert dvc.shape == vc.shape
    np.testing.assert_allclose(dv, numerical_grad(lambda a: np.sum(a * vc * do), v), rtol=1e-6,
                               atol=1e-9)
    np.testing.assert_allclose(dvc, numerical_grad(lambda a: np.sum(v * a * do), vc), rtol=1e-6,
                               atol=1e-9)


def test_a_shut_gate_gives_exactly_zero_and_nan_opens_it():
    v = np.array([np.inf, np.nan, 2.0, -1.0]).reshape(1, 1, 2, 2)
    z = np.array([-1.0, 0.0, np.nan, 0.5]).reshape(1, 1, 2, 2)
    mask = F.gate_mask(z)
    np.testing.assert_array_equal(mask.ravel(), [False, False, True, True])
    o, _ = F.product_forward(v, F.gate_forward(z)[0], mask)
    assert o.ravel()[0] == 0 and o.ravel()[1] == 0  # inf * 0 and NaN * 0 are written as 0
    assert np.isnan(o.ravel()[2]) and o.ravel()[3] == -0.5

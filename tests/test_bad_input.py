"""Bad input fails at the public boundary with a ValueError/TypeError naming the argument.

Every public function of :mod:`lccl_ref.functional` is covered: wrong ndim, channel
mismatch, kernel larger than the padded input, stride < 1, padding < 0,
integer/object/mixed dtypes, labels out of range and mismatched ``dy`` shapes.
"""

import numpy as np
import pytest

from lccl_ref import functional as F

f32, f64 = np.float32, np.float64


def rnd(*shape, dtype=f64):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


X = rnd(2, 3, 5, 5)
W = rnd(4, 3, 3, 3)
B = rnd(4)
C3 = np.ones(3)


def conv_cache(**kw):
    return F.conv2d_forward(X, W, B, 1, 1, **kw)[1]


def bn_cache(training=True):
    return F.batchnorm2d_forward(X, C3.copy(), C3.copy(), C3.copy(), C3.copy(), training)[1]


# (id, callable, exception, regex the message must match)
CASES = [
    # ---- conv2d_forward / conv2d_naive: same boundary --------------------------------
    ("conv x 3-D", lambda f: f(X[0], W), ValueError, r"x must be 4-D.*3-D"),
    ("conv w 3-D", lambda f: f(X, W[0]), ValueError, r"w must be 4-D"),
    ("conv b 2-D", lambda f: f(X, W, B[None]), ValueError, r"b must be 1-D"),
    ("conv b length", lambda f: f(X, W, rnd(5)), ValueError, r"b must have shape \(4,\)"),
    ("conv channels", lambda f: f(X, rnd(4, 2, 3, 3)), ValueError,
     r"channel mismatch: x has C=3.*w expects C=2"),
    ("conv kernel too big", lambda f: f(X, rnd(4, 3, 8, 3), None, 1, 1), ValueError,
     r"kernel \(8, 3\) is larger than the padded input \(7, 7\)"),
    ("conv stride 0", lambda f: f(X, W, None, 0), ValueError, r"stride must be >= 1, got 0"),
    ("conv stride pair", lambda f: f(X, W, None, (1, 0)), ValueError, r"stride must be >= 1"),
    ("conv stride float", lambda f: f(X, W, None, 1.5), TypeError, r"stride must be an int"),
    ("conv padding -1", lambda f: f(X, W, None, 1, -1), ValueError,
     r"padding must be >= 0, got -1"),
    ("conv padding 3-tuple", lambda f: f(X, W, None, 1, (1, 1, 1)), TypeError,
     r"padding must be an int or a pair"),
    ("conv int x", lambda f: f(X.astype(np.int64), W), TypeError,
     r"x must have dtype float32 or float64, got int64"),
    ("conv object w", lambda f: f(X, W.astype(object)), TypeError, r"w must have dtype.*object"),
    ("conv list x", lambda f: f(X.tolist(), W), TypeError, r"x must be a numpy.ndarray, got list"),
    ("conv mixed x/w", lambda f: f(X.astype(f32), W), TypeError, r"w has dtype float64.*x"),
    ("conv mixed b", lambda f: f(X, W, B.astype(f32)), TypeError, r"b has dtype float32"),
    ("conv float16", lambda f: f(X.astype(np.float16), W.astype(np.float16)), TypeError,
     r"x must have dtype float32 or float64, got float16"),
]


@pytest.mark.parametrize("fn", [F.conv2d_forward, F.conv2d_naive], ids=["fast", "naive"])
@pytest.mark.parametrize("call, exc, msg", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_conv_forward_rejects(fn, call, exc, msg):
    with pytest.raises(exc, match=msg):
        call(fn)


@pytest.mark.parametrize("dy, exc, msg", [
    (rnd(2, 4, 5, 4), ValueError, r"dy must have shape \(2, 4, 5, 5\), got \(2, 4, 5, 4\)"),
    (rnd(2, 4, 4, 5), ValueError, r"dy must have shape \(2, 4, 5, 5\)"),  # same size, wrong shape
    (rnd(2, 4, 25), ValueError, r"dy must be 4-D"),
    (rnd(2, 3, 5, 5), ValueError, r"dy must have shape"),
    (rnd(2, 4, 5, 5, dtype=f32), TypeError, r"dy has dtype float32"),
    (np.ones((2, 4, 5, 5), dtype=np.int32), TypeError, r"dy must have dtype"),
])
def test_conv_backward_rejects(dy, exc, msg):
    with pytest.raises(exc, match=msg):
        F.conv2d_backward(dy, conv_cache())


IM2COL_CASES = [
    ("x 3-D", lambda f: f(X[0], 3), ValueError, r"x must be 4-D"),
    ("kernel 0", lambda f: f(X, 0), ValueError, r"kernel_size must be >= 1"),
    ("kernel too big", lambda f: f(X, (2, 6)), ValueError, r"kernel \(2, 6\) is larger"),
    ("stride 0", lambda f: f(X, 3, 0), ValueError, r"stride must be >= 1"),
    ("padding -2", lambda f: f(X, 3, 1, -2), ValueError, r"padding must be >= 0"),
    ("int x", lambda f: f(X.astype(np.int16), 3), TypeError, r"x must have dtype"),
    ("object x", lambda f: f(X.astype(object), 3), TypeError, r"x must have dtype"),
]


@pytest.mark.parametrize("fn", [F.im2col, F.im2col_naive], ids=["fast", "naive"])
@pytest.mark.parametrize("call, exc, msg", [c[1:] for c in IM2COL_CASES],
                         ids=[c[0] for c in IM2COL_CASES])
def test_im2col_rejects(fn, call, exc, msg):
    with pytest.raises(exc, match=msg):
        call(fn)


COLS = F.im2col(X, 3, 1, 1)  # (2, 5, 5, 3, 3, 3)
COL2IM_CASES = [
    ("cols 5-D", lambda f: f(COLS[0], X.shape, 3, 1, 1), ValueError, r"cols must be 6-D"),
    ("cols shape", lambda f: f(COLS[:, :4], X.shape, 3, 1, 1), ValueError,
     r"cols must have shape \(2, 5, 5, 3, 3, 3\)"),
    ("cols int", lambda f: f(COLS.astype(np.int64), X.shape, 3, 1, 1), TypeError,
     r"cols must have dtype"),
    ("cols list", lambda f: f(COLS.tolist(), X.shape, 3, 1, 1), TypeError,
     r"cols must be a numpy.ndarray"),
    ("x_shape 3 entries", lambda f: f(COLS, X.shape[1:], 3, 1, 1), ValueError,
     r"x_shape must be a 4-tuple"),
    ("x_shape negative", lambda f: f(COLS, (2, 3, -5, 5), 3, 1, 1), ValueError,
     r"x_shape must hold positive ints"),
    ("kernel mismatch", lambda f: f(COLS, X.shape, 2, 1, 1), ValueError, r"cols must have shape"),
    ("stride 0", lambda f: f(COLS, X.shape, 3, 0, 1), ValueError, r"stride must be >= 1"),
    ("padding -1", lambda f: f(COLS, X.shape, 3, 1, -1), ValueError, r"padding must be >= 0"),
    ("kernel too big", lambda f: f(COLS, (2, 3, 1, 1), 3, 1, 0), ValueError, r"is larger"),
]


@pytest.mark.parametrize("fn", [F.col2im, F.col2im_naive], ids=["fast", "naive"])
@pytest.mark.parametrize("call, exc, msg", [c[1:] for c in COL2IM_CASES],
                         ids=[c[0] for c in COL2IM_CASES])
def test_col2im_rejects(fn, call, exc, msg):
    with pytest.raises(exc, match=msg):
        call(fn)


def bn(x=X, g=C3, b=C3, rm=C3, rv=C3, training=True, **kw):
    return F.batchnorm2d_forward(x, g.copy(), b.copy(), rm.copy(), rv.copy(), training, **kw)


@pytest.mark.parametrize("call, exc, msg", [
    (lambda: bn(x=X[0]), ValueError, r"x must be 4-D"),
    (lambda: bn(g=np.ones(4)), ValueError, r"gamma must have shape \(3,\), got \(4,\)"),
    (lambda: bn(rv=np.ones((3, 1))), ValueError, r"running_var must be 1-D"),
    (lambda: bn(b=np.ones(3, f32)), TypeError, r"beta has dtype float32"),
    (lambda: bn(rm=np.ones(3, np.int64)), TypeError, r"running_mean must have dtype"),
    (lambda: bn(x=X.astype(object)), TypeError, r"x must have dtype"),
    (lambda: bn(training="yes"), TypeError, r"training must be a bool"),
    (lambda: bn(momentum=1.5), ValueError, r"momentum must be in \[0, 1\]"),
    (lambda: bn(eps=0.0), ValueError, r"eps must be > 0"),
    (lambda: bn(x=rnd(1, 3, 1, 1)), ValueError, r"more than one value per channel"),
])
def test_batchnorm_forward_rejects(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def bn_inf(x=X, g=C3, b=C3, rm=C3, rv=C3, **kw):
    return F.batchnorm2d_inference(x, g, b, rm, rv, **kw)


@pytest.mark.parametrize("call, exc, msg", [
    (lambda: bn_inf(x=X[0]), ValueError, r"x must be 4-D"),
    (lambda: bn_inf(g=np.ones(4)), ValueError, r"gamma must have shape \(3,\), got \(4,\)"),
    (lambda: bn_inf(b=np.ones(3, f32)), TypeError, r"beta has dtype float32"),
    (lambda: bn_inf(rm=np.ones(3, np.int64)), TypeError, r"running_mean must have dtype"),
    (lambda: bn_inf(eps=-1.0), ValueError, r"eps must be > 0"),
    (lambda: bn_inf(relu=1), TypeError, r"relu must be a bool"),
])
def test_batchnorm_inference_rejects(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dy, exc, msg", [
    (rnd(2, 3, 5, 4), ValueError, r"dy must have shape \(2, 3, 5, 5\)"),
    (rnd(2, 3, 25), ValueError, r"dy must be 4-D"),
    (rnd(2, 3, 5, 5, dtype=f32), TypeError, r"dy has dtype float32"),
    (np.ones((2, 3, 5, 5), dtype=bool), TypeError, r"dy must have dtype"),
])
def test_batchnorm_backward_rejects(training, dy, exc, msg):
    with pytest.raises(exc, match=msg):
        F.batchnorm2d_backward(dy, bn_cache(training))


@pytest.mark.parametrize("call, exc, msg", [
    (lambda: F.fold_into_conv(W[0], None, C3, C3, C3, C3), ValueError, r"w must be 4-D"),
    (lambda: F.fold_into_conv(W, None, C3, C3, C3, C3), ValueError,
     r"gamma must have shape \(4,\)"),
    (lambda: F.fold_into_conv(W, rnd(3), *(np.ones(4),) * 4), ValueError,
     r"b must have shape \(4,\)"),
    (lambda: F.fold_into_conv(W.astype(f32), None, *(np.ones(4),) * 4), TypeError,
     r"gamma has dtype float64.*w"),
    (lambda: F.fold_into_conv(W, B.astype(np.int8), *(np.ones(4),) * 4), TypeError,
     r"b must have dtype"),
])
def test_fold_into_conv_rejects(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def test_relu_rejects():
    with pytest.raises(TypeError, match=r"x must have dtype"):
        F.relu_forward(np.arange(3))
    with pytest.raises(TypeError, match=r"x must be a numpy.ndarray"):
        F.relu_forward([1.0, -1.0])
    _, cache = F.relu_forward(rnd(2, 3))
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\), got \(3, 2\)"):
        F.relu_backward(rnd(3, 2), cache)
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\), got \(1, 3\)"):
        F.relu_backward(rnd(1, 3), cache)  # would broadcast silently
    with pytest.raises(TypeError, match=r"dy must have dtype"):
        F.relu_backward(np.ones((2, 3), dtype=np.int64), cache)
    with pytest.raises(TypeError, match=r"dy has dtype float32"):
        F.relu_backward(rnd(2, 3, dtype=f32), cache)


@pytest.mark.parametrize("call, exc, msg", [
    (lambda: F.linear_forward(rnd(2, 3, 1), rnd(4, 3)), ValueError, r"x must be 2-D"),
    (lambda: F.linear_forward(rnd(2, 3), rnd(4)), ValueError, r"w must be 2-D"),
    (lambda: F.linear_forward(rnd(2, 3), rnd(4, 5)), ValueError,
     r"feature mismatch: x has 3 features"),
    (lambda: F.linear_forward(rnd(2, 3), rnd(4, 3), rnd(3)), ValueError,
     r"b must have shape \(4,\)"),
    (lambda: F.linear_forward(rnd(2, 3, dtype=f32), rnd(4, 3)), TypeError, r"w has dtype"),
    (lambda: F.linear_forward(np.ones((2, 3), int), rnd(4, 3)), TypeError, r"x must have dtype"),
])
def test_linear_forward_rejects(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def test_linear_backward_rejects():
    _, cache = F.linear_forward(rnd(2, 3), rnd(4, 3))
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 4\), got \(1, 4\)"):
        F.linear_backward(rnd(1, 4), cache)
    with pytest.raises(ValueError, match=r"dy must be 2-D"):
        F.linear_backward(rnd(2, 4, 1), cache)
    with pytest.raises(TypeError, match=r"dy has dtype float32"):
        F.linear_backward(rnd(2, 4, dtype=f32), cache)


def test_global_avg_pool_rejects():
    with pytest.raises(ValueError, match=r"x must be 4-D"):
        F.global_avg_pool_forward(rnd(2, 3))
    with pytest.raises(TypeError, match=r"x must have dtype"):
        F.global_avg_pool_forward(np.ones((1, 1, 2, 2), np.uint8))
    _, cache = F.global_avg_pool_forward(X)
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\), got \(2, 1\)"):
        F.global_avg_pool_backward(rnd(2, 1), cache)
    with pytest.raises(ValueError, match=r"dy must be 2-D"):
        F.global_avg_pool_backward(rnd(2, 3, 1, 1), cache)
    with pytest.raises(TypeError, match=r"dy has dtype float32"):
        F.global_avg_pool_backward(rnd(2, 3, dtype=f32), cache)


@pytest.mark.parametrize("logits, labels, exc, msg", [
    (rnd(3, 4), np.array([0, 4, 1]), ValueError, r"labels must lie in \[0, 4\).*\[0, 4\]"),
    (rnd(3, 4), np.array([0, -1, 1]), ValueError, r"labels must lie in \[0, 4\)"),
    (rnd(3, 4), np.array([0.0, 1.0, 1.0]), TypeError, r"labels must be an integer ndarray"),
    (rnd(3, 4), [0, 1, 1], TypeError, r"labels must be an integer ndarray, got list"),
    (rnd(3, 4), np.array([True, False, True]), TypeError, r"labels must be an integer"),
    (rnd(3, 4), np.array([0, 1]), ValueError, r"labels must have shape \(3,\)"),
    (rnd(3, 4), np.array([[0], [1], [2]]), ValueError, r"labels must have shape \(3,\)"),
    (rnd(3), np.array([0, 1, 1]), ValueError, r"logits must be 2-D"),
    (np.ones((3, 4), int), np.array([0, 1, 1]), TypeError, r"logits must have dtype"),
    (rnd(0, 4), np.zeros(0, int), ValueError, r"logits must hold at least one row"),
])
def test_softmax_cross_entropy_rejects(logits, labels, exc, msg):
    with pytest.raises(exc, match=msg):
        F.softmax_cross_entropy(logits, labels)


def test_gate_and_density_reject():
    with pytest.raises(ValueError, match=r"gate must be one of \('relu', 'clip'\), got 'tanh'"):
        F.gate_forward(rnd(2, 3), "tanh")
    with pytest.raises(TypeError, match=r"z must have dtype float32 or float64"):
        F.gate_forward(np.ones(3, np.int32), "relu")
    _, cache = F.gate_forward(rnd(2, 3), "clip")
    with pytest.raises(ValueError, match=r"dv must have shape \(2, 3\), got \(3, 2\)"):
        F.gate_backward(rnd(3, 2), cache)
    with pytest.raises(TypeError, match=r"dv has dtype float32"):
        F.gate_backward(rnd(2, 3, dtype=f32), cache)
    with pytest.raises(TypeError, match=r"z must be a numpy.ndarray, got list"):
        F.density_forward([1.0, -1.0])
    _, cache = F.density_forward(rnd(2, 3))
    with pytest.raises(TypeError, match=r"dd must be a number"):
        F.density_backward(np.ones(2), cache)
    with pytest.raises(ValueError, match=r"tau must be > 0, got -1"):
        F.density_backward(1.0, cache, tau=-1)
    assert F.GATES == ("relu", "clip")


def test_gate_mask_and_product_reject():
    with pytest.raises(TypeError, match=r"z must have dtype float32 or float64"):
        F.gate_mask(np.ones(3, np.int32))
    v, vc = rnd(2, 3, 4, 4), rnd(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"v_cheap must have shape \(2, 3, 4, 4\) or "
                                         r"\(2, 1, 4, 4\) for v of shape"):
        F.product_forward(v, rnd(2, 2, 4, 4))
    with pytest.raises(TypeError, match="v_cheap has dtype float32"):
        F.product_forward(v, rnd(2, 1, 4, 4, dtype=f32))
    with pytest.raises(ValueError, match="v must be 4-D"):
        F.product_forward(rnd(3, 4), vc)
    with pytest.raises(TypeError, match="mask must be a bool ndarray"):
        F.product_forward(v, vc, np.ones((2, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 1, 4, 4\)"):
        F.product_forward(v, vc, np.ones((2, 4, 4), bool))
    _, cache = F.product_forward(v, vc)
    with pytest.raises(ValueError, match=r"do must have shape \(2, 3, 4, 4\)"):
        F.product_backward(rnd(2, 3, 4, 5), cache)
    with pytest.raises(TypeError, match="do has dtype float32"):
        F.product_backward(rnd(2, 3, 4, 4, dtype=f32), cache)


def test_gate_init_is_checked():
    assert F.check_gate_init([0.5, 1]) == (0.5, 1.0)
    for bad in ((1.0,), (1.0, np.nan), "1,1", (True, 1.0), None):
        with pytest.raises(ValueError, match="gate_init must be a pair"):
            F.check_gate_init(bad)


def test_every_public_function_is_covered():
    # a new public function must come with its bad-input tests here
    covered = {
        "batchnorm2d_backward", "batchnorm2d_forward", "batchnorm2d_inference", "col2im",
        "col2im_naive",
        "conv2d_backward", "conv2d_forward", "conv2d_naive", "fold_into_conv",
        "global_avg_pool_backward", "global_avg_pool_forward", "im2col", "im2col_naive",
        "linear_backward", "linear_forward", "relu_backward", "relu_forward",
        "softmax_cross_entropy", "GATES", "check_gate_init", "gate_forward", "gate_backward",
        "density_forward", "density_backward", "gate_mask", "product_forward", "product_backward",
    }
    assert set(F.__all__) == covered

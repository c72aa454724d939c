"""Helpers shared by the LCCL test modules (import as ``from lcclhelp import ...``;
pytest puts ``tests/`` on ``sys.path``, as for ``gradcheck``)."""

from __future__ import annotations


def randomise_bn(layer, rng, shift=0.0, spread=0.5):
    """Give an LCCL layer's cheap BN non-trivial affine parameters and running statistics.

    gamma ~ U(0.5, 1.5), beta ~ N(shift, spread), running mean ~ N(0, spread),
    running var ~ U(0.5, 2), in the layer's dtype.
    """
    bn = layer.cheap_bn
    dt = bn.weight.data.dtype
    k = bn.num_features
    bn.weight.data = rng.uniform(0.5, 1.5, k).astype(dt)
    bn.bias.data = (rng.normal(0, spread, k) + shift).astype(dt)
    bn.running_mean = rng.normal(0, spread, k).astype(dt)
    bn.running_var = rng.uniform(0.5, 2.0, k).astype(dt)

"""Softmax cross-entropy, averaged over the batch."""

from __future__ import annotations

import numpy as np

from ..checks import check_float_array


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of ``softmax(logits)`` against integer ``labels``.

    Parameters
    ----------
    logits : ndarray, (N, K), float32 or float64
    labels : ndarray, (N,), integer, each in [0, K)

    Returns
    -------
    loss : float (a Python float)
    dlogits : ndarray, (N, K), dtype of ``logits``: ``(softmax - onehot) / N``

    Notes
    -----
    Stable form: ``log softmax(z) = z - max(z) - log(sum(exp(z - max(z))))``.
    """
    check_float_array("logits", logits, ndim=2)
    if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"labels must be an integer ndarray, got "
            f"{getattr(labels, 'dtype', type(labels).__name__)}"
        )
    n, k = logits.shape
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match logits, got {labels.shape}")
    if n == 0:
        raise ValueError("logits must hold at least one row")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(
            f"labels must lie in [0, {k}), got values in [{labels.min()}, {labels.max()}]"
        )
    z = logits - logits.max(axis=1, keepdims=True)
    logsumexp = np.log(np.exp(z).sum(axis=1, keepdims=True))
    logp = z - logsumexp  # (N, K)
    loss = -float(logp[np.arange(n), labels].mean())
    d = np.exp(logp)
    d[np.arange(n), labels] -= 1
    return loss, (d / logits.dtype.type(n)).astype(logits.dtype)

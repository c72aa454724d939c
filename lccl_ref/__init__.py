"""lccl_ref: a reference implementation of "More is Less" (Dong et al., CVPR 2017).

A from-scratch NumPy CNN toolkit with hand-written backprop, the low-cost
collaborative layer (LCCL), and Numba kernels that compute the expensive
convolution only where the cheap branch's mask is active and count the
multiply-accumulates they actually execute.
"""

__version__ = "0.1.0"

"""The paper's figures, restated (PAPER.md): printed verbatim in the report's ``paper`` rows."""

from __future__ import annotations

PAPER_FORMULAS = (
    # (structure, cost, speed-up ratio)
    ("plain conv", "XYTk²C", "0"),
    ("LCCL, k'xk'xCxT", "XYTC(k'² + k²r)", "1 − (k'²/k² + r)"),
    ("LCCL, 1x1xCxT", "XYTC(1 + k²r)", "1 − (1/k² + r)"),
    ("LCCL, kxkxCx1 (shared)", "XYk²C(1 + Tr)", "1 − (1/T + r)"),
    ("slides' kxkxCx1 (C, T swapped)", "XYTk²(1 + Cr)", "1 − (1/C + r)"),
)

PAPER_SPARSITY = (
    # (structure, fraction of zeros after the ReLU, behaviour over training)
    ("Conv+ReLU", "< 10%", "stable"),
    ("Conv+regularisation+ReLU", "5–70%", "unstable"),
    ("Conv+BN+ReLU", "about 30%", "stable"),
)

PAPER_CHEAP = (
    # (model, dense FLOPs, 1x1xCxT FLOPs / speed-up / error, kxkxCx1 FLOPs / speed-up / error)
    ("ResNet-20", "4.1E7", "3.2E7 / 20.3% / 8.57", "2.6E7 / 34.9% / 8.32"),
    ("ResNet-32", "6.9E7", "4.7E7 / 31.2% / 9.26", "4.9E7 / 28.1% / 7.44"),
    ("ResNet-44", "9.7E7", "6.3E7 / 34.8% / 8.57", "6.5E7 / 32.5% / 7.29"),
)

PAPER_PLACEMENT = (
    # (placement, top-1 error %, speed-up), ResNet-20 with kxkxCx1 on CIFAR-10
    ("aft-aft", "8.32", "34.9%"),
    ("aft-bef", "8.71", "24.1%"),
    ("bef-bef", "11.62", "39.8%"),
    ("bef-aft", "12.85", "55.4%"),
)

PAPER_REAL = (
    # (model, FLOPs dense -> LCCL, ms dense -> LCCL, theoretical, real)
    ("ResNet-18 (ImageNet, GPU)", "1.8E9 → 1.2E9", "97.1 → 77.1", "34.6%", "20.5%"),
    ("ResNet-34 (ImageNet, GPU)", "3.6E9 → 2.7E9", "169.3 → 138.6", "24.8%", "18.1%"),
)

"""Training throughput of ResNet-20 (float32, batch 128, one thread): lccl_ref vs PyTorch.

One training step = forward, softmax cross-entropy, backward, SGD update
(momentum 0.9, weight decay 5e-4). Both networks are the same pre-activation
ResNet-20 with parameter-free (option A) shortcuts: 0.27M parameters,
40.6M multiply-accumulates per 32x32 image forward. The two libraries are
timed alternately in one process on random input, and the median step time
over ``--repeats`` steps is reported (after one warm-up step each, which also
compiles the Numba kernels).

    python benchmarks/bench_train.py [--repeats 5] [--lccl none] [--out FILE]

Writes ``train.json``: images/s of each library and their ratio (target: ours
>= 0.5x PyTorch's).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"  # before NumPy, Numba and torch load their thread pools

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from lccl_ref.functional import softmax_cross_entropy  # noqa: E402
from lccl_ref.models import build_model  # noqa: E402
from lccl_ref.train import SGD  # noqa: E402


def torch_resnet20(num_classes=10):
    """Pre-activation ResNet-20 with option-A shortcuts, as lccl_ref.models builds it."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.stride, self.pad = stride, cout - cin

        def forward(self, x):
            h = self.conv1(torch.relu(self.bn1(x)))
            o = self.conv2(torch.relu(self.bn2(h)))
            s = x
            if self.stride != 1 or self.pad:  # option A: subsample, append zero channels
                s = nn.functional.pad(x[:, :, ::self.stride, ::self.stride],
                                      (0, 0, 0, 0, 0, self.pad))
            return o + s

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            blocks, c = [], 16
            for i, w in enumerate((16, 32, 64)):
                for j in range(3):
                    blocks.append(Block(c, w, 2 if i > 0 and j == 0 else 1))
                    c = w
            self.blocks = nn.Sequential(*blocks)
            self.bn = nn.BatchNorm2d(c)
            self.fc = nn.Linear(c, num_classes)

        def forward(self, x):
            h = torch.relu(self.bn(self.blocks(self.stem(x))))
            return self.fc(h.mean(dim=(2, 3)))

    return Net()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lccl", default="none", help="LCCL kind for our network (torch: none)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = ap.parse_args()
    b = args.batch_size
    g = np.random.default_rng(0)
    x = g.normal(size=(b, 3, 32, 32)).astype(np.float32)
    y = g.integers(0, 10, b)

    ours = build_model("resnet20", lccl=args.lccl, rng=0)
    opt = SGD(ours, lr=0.1, momentum=0.9, weight_decay=5e-4)
    ours.train()

    def step_ours():
        ours.zero_grad()
        _, dl = softmax_cross_entropy(ours.forward(x), y)
        ours.backward(dl)
        opt.step()

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        tnet = torch_resnet20().train()
        topt = torch.optim.SGD(tnet.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def step_torch():
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tnet(tx), ty).backward()
            topt.step()

    cpu = {"ours": [], "torch": []}

    def timed(fn, who):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu[who].append(time.process_time() - c0)
        return time.perf_counter() - t0

    timed(step_ours, "ours")  # warm-up (Numba compilation, caches)
    if torch is not None:
        timed(step_torch, "torch")
    cpu = {"ours": [], "torch": []}
    t_ours, t_torch = [], []
    for _ in range(args.repeats):
        t_ours.append(timed(step_ours, "ours"))
        if torch is not None:
            t_torch.append(timed(step_torch, "torch"))
        print(f"ours {t_ours[-1]:.3f}s" + (f"  torch {t_torch[-1]:.3f}s" if t_torch else ""),
              flush=True)
    res = {
        "what": "ResNet-20 training step (forward+loss+backward+SGD), float32, 1 thread",
        "batch_size": b, "repeats": args.repeats, "lccl": args.lccl,
        "ours_step_s": t_ours, "ours_images_per_s": b / statistics.median(t_ours),
        "ours_step_cpu_s": cpu["ours"],
        "ours_images_per_cpu_s": b / statistics.median(cpu["ours"]),
        "numpy": np.__version__, "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15_min_at_end": list(os.getloadavg()),
        "note": "2 cores that other jobs may share (see the load average): timings are noisy; "
                "the two libraries alternate so the ratio is fairer than either figure; "
                "*_cpu_s is the process CPU time of the step (one thread), close to what "
                "an idle machine gives",
    }
    if torch is not None:
        res.update({"torch": torch.__version__, "torch_step_s": t_torch,
                    "torch_images_per_s": b / statistics.median(t_torch),
                    "ratio_ours_to_torch": statistics.median(t_torch) / statistics.median(t_ours),
                    "torch_step_cpu_s": cpu["torch"],
                    "torch_images_per_cpu_s": b / statistics.median(cpu["torch"]),
                    "ratio_ours_to_torch_cpu": (statistics.median(cpu["torch"])
                                                / statistics.median(cpu["ours"]))})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if not k.endswith("_s")}, indent=1))


if __name__ == "__main__":
    main()

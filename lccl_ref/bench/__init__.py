"""Timing dense against gated: theoretical vs real speed-up, on the teaching and the fast path.

Start at :func:`run_benchmark` (``lccl-ref bench``), which calls, per network and
batch, :func:`calibrate` (masks for untrained networks), :func:`bench_network` (the
plain twin against the LCCL network on each path, then :func:`bench_engine`, then
:func:`bench_layer` per layer) and :func:`bench_resnet18`; :func:`format_summary`
prints the result with a legend.  Every figure names the path it comes from.
"""

from .calibrate import blob_mask, calibrate, measure_densities
from .engine import ENGINE_RUN, bench_engine
from .layer import bench_layer, layer_inputs
from .network import bench_network
from .resnet18 import RESNET18_LAYERS, bench_resnet18
from .run import run_benchmark, summarise
from .summary import format_summary
from .threads import environment, one_thread
from .timing import PATHS, eval_mode, on_path, time_interleaved, timed
from .walk import walk

__all__ = ["ENGINE_RUN", "PATHS", "RESNET18_LAYERS", "bench_engine", "bench_layer",
           "bench_network", "bench_resnet18", "blob_mask", "calibrate", "environment",
           "eval_mode", "format_summary", "layer_inputs", "measure_densities", "on_path",
           "one_thread", "run_benchmark", "summarise", "time_interleaved", "timed", "walk"]

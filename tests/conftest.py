"""Test set-up: ``tests/`` on ``sys.path`` (the helpers ``gradcheck``, ``lcclhelp``,
``advhelp``, for ``tests/fast/`` too), and the teaching path without the fast one.

``LCCL_NO_FAST=1 pytest tests`` makes ``lccl_ref.fast`` unimportable before anything
imports ``lccl_ref`` and skips ``tests/fast/``: every other test must pass so, since the
teaching path (functional, kernels, nn, models, train, flops) never imports it.

Hypothesis draws the same examples on every run and machine (``derandomize``): CI
must not fail on an example no earlier run met.  ``HYPOTHESIS_PROFILE=explore``
draws fresh ones, for a session that hunts for bugs.
"""

import os
import sys

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if os.environ.get("LCCL_NO_FAST") == "1":
    sys.modules["lccl_ref.fast"] = None
    collect_ignore = ["fast"]

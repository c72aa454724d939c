"""``python -m lccl_ref`` runs the ``lccl-ref`` command line."""

import sys

from .cli import main

sys.exit(main())

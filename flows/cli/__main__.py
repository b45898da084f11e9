"""``python -m flows.cli``: the same command line as ``vae-anomaly``."""

import sys

from flows.cli import main

sys.exit(main())

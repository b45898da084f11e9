"""Library defaults that ``--help`` shows, kept here so that showing them imports nothing.

The values belong to modules that import torch, pandas or scipy (``vae_core.threshold``,
``vae_core.io``, ``vae_core.detector``, ``flows.pipeline.score_file``); importing any of
them would make ``vae-anomaly --help`` take seconds.
``tests/unit/flows/cli/test_cli_defaults.py`` checks every value here against its source,
so a change there fails the suite instead of leaving the help out of date.
"""

from __future__ import annotations

#: ``vae_core.threshold.THRESHOLD_METHODS``
THRESHOLD_METHODS: tuple[str, ...] = ("iqr", "contamination", "fpr", "pot", "conformal")

#: The ``VAEAnomalyDetector()`` parameters that ``fit`` exposes as options.
DETECTOR_DEFAULTS: dict[str, object] = {
    "threshold_method": "iqr",
    "iqr_min_alert_rate": 0.05,
    "contamination": 0.05,
    "target_fpr": 0.01,
    "pot_risk": 0.01,
    "fdr": 0.1,
}

#: ``vae_core.io.DEFAULT_BATCH_SIZE``: rows read and scored at a time.
DEFAULT_BATCH_SIZE = 65_536

#: ``flows.pipeline.score_file.DEFAULT_TOP``: highest-scoring rows that score-file prints.
DEFAULT_TOP = 10

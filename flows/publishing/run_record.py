"""What a scoring run records about itself: its manifest and its row of the run index.

Built from the run's merged ``PartitionResult`` and a few plain values, so the flow only
gathers them; the files themselves are listed (size, sha256) by
``flows.publishing.run_set.write_manifest``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from flows.pipeline.summary import PartitionResult

#: Written into the manifest so that readers can refuse a layout they do not know.
#: 2: one folder per run, every file listed with its size and sha256.
MANIFEST_VERSION = 2
#: Run index columns of the score quantiles, and the report's names for them.
INDEX_QUANTILES = {"score_p50": "q0.5", "score_p90": "q0.9", "score_p99": "q0.99"}


@dataclass(frozen=True)
class RunIdentity:
    """Which run this is and what scored it."""

    run_id: str  # the run folder's name
    run_date: date
    finished_at: datetime
    model_name: str
    model_version: str
    model_uri: str
    mlflow_run_id: str


def manifest_content(
    run: RunIdentity,
    summary: PartitionResult,
    input_path: str,
    outputs: Mapping[str, str | None],
) -> dict[str, Any]:
    """The manifest's fields but ``files``: model, input, row counts, outputs, partitions."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "run_id": run.run_id,
        "run_date": run.run_date.isoformat(),
        "finished_at": run.finished_at.isoformat(),
        "model": {"name": run.model_name, "version": run.model_version, "uri": run.model_uri},
        "input_path": input_path,
        "mlflow_run_id": run.mlflow_run_id,
        "rows": {
            "in": summary.rows_in,
            "scored": summary.rows_scored,
            "quarantined": summary.rows_quarantined,
            "flagged": summary.n_flagged,
        },
        "outputs": dict(outputs),
        "partitions": summary.partitions,
    }


def index_row(
    run: RunIdentity,
    summary: PartitionResult,
    quantiles: Mapping[str, float],
    threshold: float,
) -> dict[str, Any]:
    """The run's row of the run index (``flows.publishing.run_index.COLUMNS``)."""
    scored = summary.rows_scored
    return {
        "run_date": run.run_date,
        "run_id": run.run_id,
        "finished_at": run.finished_at,
        "model_name": run.model_name,
        "model_version": run.model_version,
        "rows_in": summary.rows_in,
        "rows_scored": scored,
        "rows_quarantined": summary.rows_quarantined,
        "rows_flagged": summary.n_flagged,
        "alert_rate": summary.n_flagged / scored if scored > 0 else 0.0,
        **{column: quantiles.get(key, math.nan) for column, key in INDEX_QUANTILES.items()},
        "threshold": float(threshold),
    }

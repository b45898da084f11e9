"""The record a scoring run hands to the report, and the rule for an unusual alert rate."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from flows.reporting.formatting import is_finite
from flows.reporting.links import RunLinks

if TYPE_CHECKING:
    from flows.reporting.drift import ColumnDrift
    from flows.reporting.explain import RowExplanation

__all__ = ["ALERT_RATE_HIGH", "ALERT_RATE_LOW", "ReportData"]

#: The observed alert rate is highlighted when above ``HIGH`` x or below ``LOW`` x expected.
ALERT_RATE_HIGH = 2.0
ALERT_RATE_LOW = 0.5


@dataclass(kw_only=True)
class ReportData:
    """Everything the report shows; built by the scoring flow at the end of a run."""

    title: str
    model_name: str
    model_version: str
    threshold: float
    threshold_method: str
    expected_alert_rate: float  # share of held-out training scores above the threshold
    rows_in: int
    rows_scored: int
    rows_quarantined: int
    quarantine_reasons: dict[str, int]
    score_sample: np.ndarray  # scores of scored rows (all, or a uniform sample)
    n_flagged: int
    score_quantiles: dict[str, float]
    top_anomalies: pd.DataFrame  # top-N rows, score descending: keys + score columns
    input_path: str
    output_path: str
    generated_at: str  # ISO 8601
    timestamp_column: str | None = None
    time_series: pd.DataFrame | None = None  # timestamp, score, is_anomaly[, entity_column]
    entity_column: str | None = None
    run_id: str | None = None
    #: Sensor runs: flagged spans (columns entity, start, end), how many there were in all
    #: (more than are kept, possibly), and how many rows got each window status.
    flagged_spans: pd.DataFrame | None = None
    n_flagged_spans: int = 0
    window_status_counts: dict[str, int] | None = None
    input_notes: tuple[str, ...] = ()  # ignored columns, duplicate keys: reported, not errors
    #: A few whole reasons of each quarantine reason group (``quarantine_reasons``' keys).
    quarantine_examples: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The run's identity and addresses (MLflow, Prefect, files); None: shown as text only.
    links: RunLinks | None = None
    #: Quantiles of the reference scores the threshold was fitted on: severity of a score.
    reference_quantiles: dict[str, float] = field(default_factory=dict)
    #: The top rows explained with values (``flows.reporting.explain``); None: not computed.
    explanations: list[RowExplanation] | None = None
    #: Drift per feature against the training profile, largest first; None: no profile.
    drift: list[ColumnDrift] | None = None
    #: The run index (one row per earlier run); None: no index.
    history: pd.DataFrame | None = None
    #: What the report could not work out, and why (shown, never fatal).
    report_notes: tuple[str, ...] = ()

    @property
    def alert_rate(self) -> float:
        """Flagged share of the scored rows (0 when no row was scored)."""
        return self.n_flagged / self.rows_scored if self.rows_scored > 0 else 0.0

    @property
    def accounting_ok(self) -> bool:
        """Rows read = rows scored + rows quarantined."""
        return self.rows_in == self.rows_scored + self.rows_quarantined

    @property
    def alert_ratio(self) -> float | None:
        """Observed / expected alert rate; ``inf`` for alerts where none were expected;
        ``None`` when undefined (no rows scored, or neither rate above zero)."""
        if self.rows_scored <= 0 or not is_finite(self.expected_alert_rate):
            return None
        if self.expected_alert_rate > 0:
            return self.alert_rate / self.expected_alert_rate
        return math.inf if self.alert_rate > 0 else None

    @property
    def alert_rate_unusual(self) -> bool:
        """Observed rate above 2x or below 0.5x the rate expected from training."""
        ratio = self.alert_ratio
        return ratio is not None and (ratio > ALERT_RATE_HIGH or ratio < ALERT_RATE_LOW)

    def quarantine_by_count(self) -> list[tuple[str, int]]:
        """Quarantine reasons, most rows first, then by name (the same order everywhere)."""
        return sorted(self.quarantine_reasons.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))

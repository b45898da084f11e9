"""This run beside the last ones: rows, alert rate and score quantiles from the run index.

The run index (one row per completed run, see ``flows.publishing.run_index``) is read by the
scoring flow and handed to the report; the current run is marked in it, or added when it is
not in it yet (the report is written before the run is published). The expected band of the
alert rate is the one the alert-rate rule uses: ``ALERT_RATE_LOW``-``ALERT_RATE_HIGH`` times
the rate expected from training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from flows.reporting.data import ALERT_RATE_HIGH, ALERT_RATE_LOW, ReportData
from flows.reporting.formatting import fmt_pct, is_finite

__all__ = ["HISTORY_COLUMNS", "MAX_RUNS", "HistoryView", "history_view"]

#: Runs shown, the current one included.
MAX_RUNS = 30
HISTORY_COLUMNS = (
    "run_date",
    "run_id",
    "finished_at",
    "model_name",
    "model_version",
    "rows_in",
    "rows_scored",
    "rows_quarantined",
    "rows_flagged",
    "alert_rate",
    "score_p50",
    "score_p90",
    "score_p99",
    "threshold",
)


@dataclass(frozen=True)
class HistoryView:
    runs: pd.DataFrame  # HISTORY_COLUMNS + ``current`` (bool), oldest first
    band: tuple[float, float] | None  # expected alert-rate band, None when unknown
    warning: str | None
    n_outside: int  # runs (the current one included) with an alert rate outside the band

    @property
    def n_earlier(self) -> int:
        return int((~self.runs["current"]).sum())


def _current_row(data: ReportData, run_id: str | None) -> dict[str, object]:
    quantiles = data.score_quantiles
    return {
        "run_date": (data.links.run_date if data.links else None) or data.generated_at[:10],
        "run_id": run_id,
        "finished_at": pd.Timestamp(data.generated_at) if data.generated_at else pd.NaT,
        "model_name": data.model_name,
        "model_version": data.model_version,
        "rows_in": data.rows_in,
        "rows_scored": data.rows_scored,
        "rows_quarantined": data.rows_quarantined,
        "rows_flagged": data.n_flagged,
        "alert_rate": data.alert_rate,
        "score_p50": quantiles.get("q0.5", math.nan),
        "score_p90": quantiles.get("q0.9", math.nan),
        "score_p99": quantiles.get("q0.99", math.nan),
        "threshold": data.threshold,
    }


def _ordered(index: pd.DataFrame) -> pd.DataFrame:
    frame = index.copy()
    for column in HISTORY_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    order = [c for c in ("finished_at", "run_date") if frame[c].notna().any()]
    if order:
        frame = frame.sort_values(order, kind="stable", na_position="first")
    return frame.reset_index(drop=True)


def history_view(
    index: pd.DataFrame | None, data: ReportData, max_runs: int = MAX_RUNS
) -> HistoryView:
    """The last ``max_runs`` runs of ``index`` with the current run marked (or added)."""
    run_id = data.links.index_run_id if data.links else None
    frame = _ordered(index if index is not None else pd.DataFrame(columns=HISTORY_COLUMNS))
    current = frame["run_id"].astype("string").eq(run_id).fillna(False) if run_id else None
    if current is None or not current.any():
        frame = frame.assign(current=False)
        row = pd.DataFrame([{**_current_row(data, run_id), "current": True}])
        frame = row if frame.empty else pd.concat([frame, row], ignore_index=True)
    else:
        frame = frame.assign(current=current.to_numpy(bool))
    frame = frame.tail(max_runs).reset_index(drop=True)
    band = None
    if is_finite(data.expected_alert_rate) and data.expected_alert_rate > 0:
        rate = float(data.expected_alert_rate)
        band = (ALERT_RATE_LOW * rate, ALERT_RATE_HIGH * rate)
    rates = pd.to_numeric(frame["alert_rate"], errors="coerce")
    outside = 0 if band is None else int(((rates < band[0]) | (rates > band[1])).sum())
    warning = None
    if band is not None and data.rows_scored > 0 and not band[0] <= data.alert_rate <= band[1]:
        warning = (
            f"The alert rate of this run, {fmt_pct(data.alert_rate)}, is outside the expected "
            f"band {fmt_pct(band[0])}\u2013{fmt_pct(band[1])}"
            f" ({outside - 1} of the {len(frame) - 1} earlier runs shown were outside it too)."
        )
    return HistoryView(runs=frame, band=band, warning=warning, n_outside=outside)

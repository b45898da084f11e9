"""The report's figures that need the model and another look at the input: the top rows'
values and reconstructions, their explanations, drift against the training profile.

Everything here is best effort: the scores are written before it runs, so what cannot be
worked out (no profile, no key columns, an input that cannot be read again) is left out
and named in the report's notes, and the run still succeeds.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from flows.reporting.data import ReportData
from flows.reporting.explain import MAX_EXPLAINED, explain_rows
from flows.reporting.flagged import write_flagged
from flows.reporting.formatting import sorted_top
from flows.reporting.input_scan import scan_input
from flows.reporting.links import RunLinks
from flows.reporting.profile_view import profile_dict
from flows.reporting.reconstruct import reconstruct
from vae_core.errors import one_line

__all__ = ["NO_PROFILE", "complete_report", "enrich"]

log = logging.getLogger(__name__)

WINDOWED = (
    "the top rows' values (a windowed model scores a window of rows, not one row; the "
    "parts of each score are shown)"
)
NO_KEYS = "the top rows' values (the model has no key columns to find them by)"
NO_PROFILE = (
    "drift against training and the training medians and ranges (the model was saved "
    "without a training profile)"
)


def _reference_quantiles(detector: Any) -> dict[str, float]:
    threshold = getattr(detector, "threshold_", None)
    quantiles = getattr(threshold, "reference_quantiles", None) or {}
    return {str(k): float(v) for k, v in quantiles.items()}


def enrich(
    data: ReportData,
    detector: Any,
    input_path: str,
    history: pd.DataFrame | None = None,
) -> ReportData:
    """``data`` with explanations, drift, severity quantiles and ``history`` filled in."""
    notes = list(data.report_notes)
    profile = profile_dict(getattr(detector, "training_profile_", None))
    if profile is None:
        notes.append(NO_PROFILE)
    top = sorted_top(data.top_anomalies)
    schema = detector.schema_
    features = list(schema.feature_names)
    # A windowed model's keys name a series, not a row: its rows are found by no key.
    windowed = bool(getattr(detector, "ordered_stream", False))
    keys = () if windowed else tuple(schema.key_columns)
    if windowed and len(top):
        notes.append(WINDOWED)
    elif not keys and len(top):
        notes.append(NO_KEYS)
    try:
        scan = scan_input(input_path, features, keys, top.head(MAX_EXPLAINED), profile)
    except Exception as exc:  # noqa: BLE001 - the report goes out without these figures
        log.warning("the input could not be scanned for the report", exc_info=True)
        notes.append(f"the top rows' values and drift ({type(exc).__name__}: {one_line(exc)})")
        return dataclasses.replace(data, report_notes=tuple(notes), history=history)
    notes += scan.problems
    expected = reconstruct(detector, scan.values) if scan.values is not None else None
    quantiles = data.reference_quantiles or _reference_quantiles(detector)
    explanations = explain_rows(top, scan.values, expected, profile, quantiles)
    return dataclasses.replace(
        data,
        explanations=explanations,
        drift=scan.drift,
        reference_quantiles=quantiles,
        history=history,
        report_notes=tuple(notes),
    )


def complete_report(
    data: ReportData,
    detector: Any,
    folder: Path,
    links: RunLinks | None = None,
    history: pd.DataFrame | None = None,
    scores_file: str = "scores.parquet",
    csv: bool = False,
) -> ReportData:
    """Everything the report adds to a run before it is written: ``flagged.parquet`` (and
    ``flagged.csv``) beside the scores in ``folder``, the links, values, drift, history.

    The flagged file is part of the run: when it cannot be written, that error stops the
    run (nothing is published). The other figures are best effort (``enrich``).
    """
    links = links or RunLinks()
    scores = folder / scores_file
    if scores.exists():
        files = write_flagged(scores, folder, csv=csv)
        links = dataclasses.replace(
            links,
            flagged_file=files.parquet.name,
            flagged_csv=None if files.csv is None else files.csv.name,
            n_flagged_file_rows=files.rows,
        )
    data = dataclasses.replace(data, links=links)
    return enrich(data, detector, data.input_path, history)

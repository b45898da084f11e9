"""Charts of the batch anomaly report, rendered to PNG bytes.

Everything here uses matplotlib's object-oriented API with the Agg canvas directly: no
``pyplot``, so no global figure registry, no GUI backend and nothing left open between
calls (safe in Prefect task threads and in headless workers). Every function accepts the
degenerate inputs a real run produces (no rows scored, one distinct score, one entity, a
threshold outside the observed range) and still returns a valid PNG that says what is missing.
"""

from __future__ import annotations

from flows.reporting.charts._canvas import MAX_LABEL_CHARS, truncate
from flows.reporting.charts.features import MAX_BARS, row_label, top_features_png
from flows.reporting.charts.histogram import score_histogram_png, training_histogram_png
from flows.reporting.charts.over_time import MAX_LINE_POINTS, MAX_PANELS, score_over_time_png
from flows.reporting.formatting import SCORE_COLUMNS, carried_columns, feature_ranks

__all__ = [
    "MAX_BARS",
    "MAX_LABEL_CHARS",
    "MAX_LINE_POINTS",
    "MAX_PANELS",
    "SCORE_COLUMNS",
    "carried_columns",
    "feature_ranks",
    "row_label",
    "score_histogram_png",
    "score_over_time_png",
    "top_features_png",
    "training_histogram_png",
    "truncate",
]

"""The batch anomaly report: what a scoring run did, for a person to read.

Pure functions of a :class:`ReportData` (no Prefect, no MLflow: the scoring flow publishes
what these return):

- :func:`render_html`: one self-contained HTML page (inline CSS, charts as base64 PNG data
  URIs, a content security policy that forbids fetching anything) with the sections
  ``summary``, ``accounting``, ``alerts``, ``threshold``, ``distribution``,
  ``top-anomalies``, ``explanations``, ``drift``, ``history`` and, when a time series is
  given, ``over-time`` (the ids of the ``<section>`` elements);
- :func:`write_report`: that page written atomically;
- :func:`render_markdown`: a compact summary for a Prefect markdown artifact;
- :func:`top_anomalies_table`: JSON-serialisable rows for a Prefect table artifact;
- :func:`run_metrics`: the drift and history figures, for the MLflow scoring run;
- :func:`enrich`: the figures that need the model and a second look at the input (the top
  rows' values and reconstructions, drift against the training profile), added to a
  :class:`ReportData`; :class:`RunLinks` holds the run's identity and addresses;
- :func:`write_flagged`: every flagged row in ``flagged.parquet`` beside the report.

Every piece of text that comes from data or configuration (feature names, key values,
paths, reasons) is escaped, so a column called ``<script>`` is shown, not run.

This module gathers the public names; the parts live beside it: the record in ``data``,
number formats in ``formatting``, the page in ``page`` (with its templates in
``templates/``), the artifacts in ``artifacts`` and the charts in ``charts``.
"""

from __future__ import annotations

from flows.reporting.artifacts import (
    MARKDOWN_TOP_ROWS,
    render_markdown,
    run_metrics,
    top_anomalies_table,
)
from flows.reporting.charts import (
    score_histogram_png,
    score_over_time_png,
    top_features_png,
    training_histogram_png,
)
from flows.reporting.data import ALERT_RATE_HIGH, ALERT_RATE_LOW, ReportData
from flows.reporting.enrich import complete_report, enrich
from flows.reporting.flagged import FLAGGED_CSV, FLAGGED_FILE, FlaggedFiles, write_flagged
from flows.reporting.formatting import png_data_uri
from flows.reporting.links import RunLinks, absolute_path, mlflow_tags
from flows.reporting.page import SECTION_IDS, render_html, write_report

__all__ = [
    "ALERT_RATE_HIGH",
    "ALERT_RATE_LOW",
    "FLAGGED_CSV",
    "FLAGGED_FILE",
    "MARKDOWN_TOP_ROWS",
    "SECTION_IDS",
    "FlaggedFiles",
    "ReportData",
    "RunLinks",
    "absolute_path",
    "complete_report",
    "enrich",
    "mlflow_tags",
    "png_data_uri",
    "render_html",
    "render_markdown",
    "run_metrics",
    "score_histogram_png",
    "score_over_time_png",
    "top_anomalies_table",
    "top_features_png",
    "training_histogram_png",
    "write_flagged",
    "write_report",
]

"""The batch anomaly report: what a scoring run did, for a person to read.

Pure functions of a :class:`ReportData` (no Prefect, no MLflow: the scoring flow publishes
what these return):

- :func:`render_html`: one self-contained HTML page (inline CSS, charts as base64 PNG data
  URIs, a content security policy that forbids fetching anything) with the sections
  ``summary``, ``accounting``, ``alerts``, ``threshold``, ``distribution``,
  ``top-anomalies`` and, when a time series is given, ``over-time`` (the ids of the
  ``<section>`` elements);
- :func:`write_report`: that page written atomically;
- :func:`render_markdown`: a compact summary for a Prefect markdown artifact;
- :func:`top_anomalies_table`: JSON-serialisable rows for a Prefect table artifact.

Every piece of text that comes from data or configuration (feature names, key values,
paths, reasons) is escaped, so a column called ``<script>`` is shown, not run.

This module gathers the public names; the parts live beside it: the record in ``data``,
number formats in ``formatting``, the page in ``page`` (with its templates in
``templates/``), the artifacts in ``artifacts`` and the charts in ``charts``.
"""

from __future__ import annotations

from flows.reporting.artifacts import MARKDOWN_TOP_ROWS, render_markdown, top_anomalies_table
from flows.reporting.charts import (
    score_histogram_png,
    score_over_time_png,
    top_features_png,
    training_histogram_png,
)
from flows.reporting.data import ALERT_RATE_HIGH, ALERT_RATE_LOW, ReportData
from flows.reporting.formatting import png_data_uri
from flows.reporting.page import SECTION_IDS, render_html, write_report

__all__ = [
    "ALERT_RATE_HIGH",
    "ALERT_RATE_LOW",
    "MARKDOWN_TOP_ROWS",
    "SECTION_IDS",
    "ReportData",
    "png_data_uri",
    "render_html",
    "render_markdown",
    "score_histogram_png",
    "score_over_time_png",
    "top_anomalies_table",
    "top_features_png",
    "training_histogram_png",
    "write_report",
]

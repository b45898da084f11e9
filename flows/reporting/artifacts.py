"""The report as Prefect artifacts: a compact Markdown summary and a table of the top rows.

Text from data or configuration is escaped for Markdown (HTML and markup characters), so a
feature called ``<script>`` or ``a|b`` neither runs nor breaks a table.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flows.reporting.data import ALERT_RATE_HIGH, ALERT_RATE_LOW, ReportData
from flows.reporting.drift import PSI_LARGE
from flows.reporting.formatting import (
    DASH,
    carried_columns,
    cell_text,
    contributions,
    feature_ranks,
    fmt_count,
    fmt_num,
    fmt_pct,
    fmt_ratio,
    fmt_share,
    json_value,
    sorted_top,
)
from flows.reporting.history import history_view

__all__ = ["MARKDOWN_TOP_ROWS", "render_markdown", "run_metrics", "top_anomalies_table"]

#: Rows of the top-anomalies table in the markdown artifact.
MARKDOWN_TOP_ROWS = 10
#: Columns whose PSI is logged as its own metric (the most drifted first).
MAX_DRIFT_METRICS = 20


def _md(value: Any) -> str:
    """Text safe inside markdown (and a markdown table cell): HTML and markup escaped."""
    text = html.escape(str(value), quote=False).replace("\r", " ").replace("\n", " ")
    for char in "\\`*_[]|#":
        text = text.replace(char, "\\" + char)
    return text


def _link(text: str, url: str | None) -> str:
    """A markdown link when there is an address (already percent-encoded), else text."""
    if not url:
        return _md(text)
    return f"[{_md(text)}]({url.replace(')', '%29').replace(' ', '%20')})"


def _link_lines(data: ReportData) -> list[str]:
    links = data.links
    if links is None:
        return []
    parts = []
    if links.report_path:
        path = Path(links.report_path)
        parts.append(_link("HTML report", path.as_uri() if path.is_absolute() else None))
    if links.mlflow_run_id:
        parts.append("MLflow run " + _link(links.mlflow_run_id, links.mlflow_run_url))
    if links.model_name and links.model_version:
        text = f"{links.model_name} v{links.model_version}"
        parts.append("model " + _link(text, links.model_version_url))
    if links.prefect_flow_run_id:
        parts.append("Prefect flow run " + _link(links.prefect_flow_run_id, links.prefect_url))
    if links.flagged_file and links.output_dir:
        flagged = Path(links.output_dir) / links.flagged_file
        parts.append(_link("flagged rows", flagged.as_uri() if flagged.is_absolute() else None))
    return ["", " \u00b7 ".join(parts)] if parts else []


def _heading_lines(data: ReportData) -> list[str]:
    run = f" \u00b7 run {_md(data.run_id)}" if data.run_id else ""
    date = (
        f" \u00b7 run date {_md(data.links.run_date)}" if data.links and data.links.run_date else ""
    )
    return [
        f"## {_md(data.title)}",
        "",
        f"Model **{_md(data.model_name)}** version **{_md(data.model_version)}** \u00b7 "
        f"generated {_md(data.generated_at)}" + run + date,
        *_link_lines(data),
        "",
        f"Input: {_md(data.input_path)}  ",
        f"Output: {_md(data.output_path)}",
    ]


def _accounting_lines(data: ReportData) -> list[str]:
    status = "OK" if data.accounting_ok else "**MISMATCH**"
    lines = [
        "",
        "### Row accounting",
        "",
        "| rows in | scored | quarantined | accounting |",
        "|---:|---:|---:|---|",
        f"| {fmt_count(data.rows_in)} | {fmt_count(data.rows_scored)} | "
        f"{fmt_count(data.rows_quarantined)} | {status} |",
    ]
    if data.quarantine_reasons:
        reasons = "; ".join(f"{_md(r)}: {fmt_count(n)}" for r, n in data.quarantine_by_count())
        lines += ["", "Quarantined by reason: " + reasons]
    if data.input_notes:
        lines += ["", *(f"- Note: {_md(note)}" for note in data.input_notes)]
    return lines


def _alert_lines(data: ReportData) -> list[str]:
    alert = (
        f"**Alert rate** {fmt_pct(data.alert_rate)} ({fmt_count(data.n_flagged)} of "
        f"{fmt_count(data.rows_scored)}) vs {fmt_pct(data.expected_alert_rate)} expected from "
        f"training ({fmt_ratio(data.alert_ratio)})"
    )
    if data.alert_rate_unusual:
        alert += (
            f" \u2014 **unusual: outside {ALERT_RATE_LOW:g}\u00d7\u2013"
            f"{ALERT_RATE_HIGH:g}\u00d7 of expected**"
        )
    lines = [
        "",
        alert,
        "",
        f"**Threshold** {fmt_num(data.threshold)} ({_md(data.threshold_method)})",
    ]
    if data.score_quantiles:
        quantiles = ", ".join(f"{_md(k)} = {fmt_num(v)}" for k, v in data.score_quantiles.items())
        lines += ["", "Score quantiles: " + quantiles]
    return lines


def _top_table_lines(top: pd.DataFrame) -> list[str]:
    carried = carried_columns(top)
    ranks = feature_ranks(top)
    header = ["#", *(_md(c) for c in carried), "score", "flagged"]
    align = ["---:", *["---"] * len(carried), "---:", "---"]
    if ranks:
        header.append("top features")
        align.append("---")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for rank, (_, row) in enumerate(top.iterrows(), start=1):
        cells = [str(rank), *(_md(cell_text(row[c])) for c in carried)]
        cells.append(fmt_num(row["score"]) if "score" in top.columns else "n/a")
        cells.append(cell_text(row["is_anomaly"]) if "is_anomaly" in top.columns else "n/a")
        if ranks:
            features = ", ".join(
                f"{_md(name)} ({fmt_share(share)})" for name, share in contributions(row, ranks)
            )
            cells.append(features or DASH)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _drift_lines(data: ReportData) -> list[str]:
    if not data.drift:
        return []
    top = [d for d in data.drift if math.isfinite(d.psi)][:5]
    text = ", ".join(f"{_md(d.column)} {fmt_num(d.psi)}" for d in top)
    large = sum(1 for d in data.drift if math.isfinite(d.psi) and d.psi >= PSI_LARGE)
    flag = f" \u2014 **{large} column(s) drifted strongly**" if large else ""
    return ["", f"Drift from training (PSI): {text}{flag}"]


def render_markdown(data: ReportData, top_rows: int = MARKDOWN_TOP_ROWS) -> str:
    """A compact summary: accounting, alert rate vs expected, threshold, top anomalies."""
    lines = [*_heading_lines(data), *_accounting_lines(data), *_alert_lines(data)]
    lines += _drift_lines(data)
    if data.history is not None and (warning := history_view(data.history, data).warning):
        lines += ["", f"**History:** {_md(warning)}"]
    top = sorted_top(data.top_anomalies).head(top_rows)
    lines += ["", f"### Top {len(top)} anomalies" if len(top) else "### Top anomalies", ""]
    if top.empty:
        lines.append("No rows were scored.")
    else:
        lines += _top_table_lines(top)
    return "\n".join(lines) + "\n"


def top_anomalies_table(data: ReportData) -> list[dict[str, Any]]:
    """The top anomalies as JSON-serialisable rows (``rank`` first, then every column)."""
    top = sorted_top(data.top_anomalies)
    rows: list[dict[str, Any]] = []
    for rank, record in enumerate(top.to_dict(orient="records"), start=1):
        row: dict[str, Any] = {"rank": rank}
        row.update({str(k): json_value(v) for k, v in record.items()})
        rows.append(row)
    return rows


def _metric_name(text: str) -> str:
    """A column name as part of an MLflow metric key (letters, digits, ``_-. /``)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)[:200]


def _history_metrics(data: ReportData) -> dict[str, float]:
    if data.history is None:
        return {}
    view = history_view(data.history, data)
    earlier = pd.to_numeric(view.runs.loc[~view.runs["current"], "alert_rate"], errors="coerce")
    earlier = earlier[np.isfinite(earlier.to_numpy(float))]
    metrics = {
        "history_runs": float(view.n_earlier),
        "history_runs_outside_band": float(view.n_outside),
        "alert_rate_in_band": 0.0 if view.warning else 1.0,
    }
    if len(earlier):
        median = float(earlier.median())
        metrics["history_alert_rate_median"] = median
        if median > 0:
            metrics["alert_rate_vs_history"] = data.alert_rate / median
    return metrics


def run_metrics(data: ReportData) -> dict[str, float]:
    """The drift and history figures of the report, as MLflow metrics (finite values only)."""
    metrics: dict[str, float] = {}
    if data.drift:
        finite = [d for d in data.drift if math.isfinite(d.psi)]
        metrics["drift_psi_max"] = max((d.psi for d in finite), default=0.0)
        metrics["drift_columns_large"] = float(sum(d.psi >= PSI_LARGE for d in finite))
        for d in finite[:MAX_DRIFT_METRICS]:
            metrics[f"drift_psi/{_metric_name(d.column)}"] = d.psi
            metrics[f"missing_share_change/{_metric_name(d.column)}"] = d.missing_change
    metrics.update(_history_metrics(data))
    return {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}

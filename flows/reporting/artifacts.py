"""The report as Prefect artifacts: a compact Markdown summary and a table of the top rows.

Text from data or configuration is escaped for Markdown (HTML and markup characters), so a
feature called ``<script>`` or ``a|b`` neither runs nor breaks a table.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from flows.reporting.data import ALERT_RATE_HIGH, ALERT_RATE_LOW, ReportData
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

__all__ = ["MARKDOWN_TOP_ROWS", "render_markdown", "top_anomalies_table"]

#: Rows of the top-anomalies table in the markdown artifact.
MARKDOWN_TOP_ROWS = 10


def _md(value: Any) -> str:
    """Text safe inside markdown (and a markdown table cell): HTML and markup escaped."""
    text = html.escape(str(value), quote=False).replace("\r", " ").replace("\n", " ")
    for char in "\\`*_[]|#":
        text = text.replace(char, "\\" + char)
    return text


def _heading_lines(data: ReportData) -> list[str]:
    run = f" \u00b7 run {_md(data.run_id)}" if data.run_id else ""
    return [
        f"## {_md(data.title)}",
        "",
        f"Model **{_md(data.model_name)}** version **{_md(data.model_version)}** \u00b7 "
        f"generated {_md(data.generated_at)}" + run,
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


def render_markdown(data: ReportData, top_rows: int = MARKDOWN_TOP_ROWS) -> str:
    """A compact summary: accounting, alert rate vs expected, threshold, top anomalies."""
    lines = [*_heading_lines(data), *_accounting_lines(data), *_alert_lines(data)]
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

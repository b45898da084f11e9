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
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flows.pipeline.writers import write_bytes_atomic
from flows.reporting.charts import (
    carried_columns,
    feature_ranks,
    score_histogram_png,
    score_over_time_png,
    top_features_png,
    training_histogram_png,
)

__all__ = [
    "ALERT_RATE_HIGH",
    "ALERT_RATE_LOW",
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

#: The observed alert rate is highlighted when above ``HIGH`` x or below ``LOW`` x expected.
ALERT_RATE_HIGH = 2.0
ALERT_RATE_LOW = 0.5
#: Rows of the top-anomalies table in the markdown artifact.
MARKDOWN_TOP_ROWS = 10
SECTION_IDS = (
    "summary",
    "accounting",
    "alerts",
    "threshold",
    "distribution",
    "top-anomalies",
    "over-time",
)


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
        if self.rows_scored <= 0 or not _finite(self.expected_alert_rate):
            return None
        if self.expected_alert_rate > 0:
            return self.alert_rate / self.expected_alert_rate
        return math.inf if self.alert_rate > 0 else None

    @property
    def alert_rate_unusual(self) -> bool:
        """Observed rate above 2x or below 0.5x the rate expected from training."""
        ratio = self.alert_ratio
        return ratio is not None and (ratio > ALERT_RATE_HIGH or ratio < ALERT_RATE_LOW)


# ----------------------------------------------------------------------------- formatting


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _count(value: int) -> str:
    return f"{int(value):,}"


def _num(value: Any) -> str:
    return f"{float(value):.4g}" if _finite(value) else "n/a"


def _pct(value: Any) -> str:
    if not _finite(value):
        return "n/a"
    value = float(value)
    if value == 0:
        return "0%"
    return f"{value:.3%}" if abs(value) < 0.001 else f"{value:.2%}"


def _share(value: Any) -> str:
    return f"{float(value):.1%}" if _finite(value) else "n/a"


def _ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "\u221e" if math.isinf(value) else f"{value:.2f}\u00d7"


def _plain(value: Any) -> Any:
    """A JSON-serialisable Python value: numpy/pandas scalars unwrapped, times as ISO text,
    missing and non-finite numbers as ``None``."""
    if value is None:
        return None
    if isinstance(value, (str, bool)):
        return value
    if np.ndim(value) == 0:
        try:
            if pd.isna(value):
                return None
        except (TypeError, ValueError):
            pass
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating, Decimal)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, (np.timedelta64, pd.Timedelta)):
        return str(pd.Timedelta(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return _plain(value.item())
    return str(value)


def _cell(value: Any) -> str:
    """Display text of one table cell (not yet escaped)."""
    plain = _plain(value)
    if plain is None:
        return "\u2014"
    if isinstance(plain, bool):
        return "yes" if plain else "no"
    if isinstance(plain, float):
        return f"{plain:.6g}"
    return str(plain)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _sorted_top(frame: pd.DataFrame | None) -> pd.DataFrame:
    if frame is None or frame.empty:
        return pd.DataFrame() if frame is None else frame
    if "score" in frame.columns:
        frame = frame.sort_values("score", ascending=False, kind="stable", na_position="last")
    return frame.reset_index(drop=True)


def _contributions(row: pd.Series, ranks: Iterable[int]) -> list[tuple[str, float | None]]:
    found = []
    for k in ranks:
        name = row.get(f"top_feature_{k}")
        if name is None or (np.ndim(name) == 0 and pd.isna(name)):
            continue
        share = row.get(f"top_feature_{k}_share")
        found.append((str(name), float(share) if _finite(share) else None))
    return found


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0;background:#f5f6f8;color:#1d2330;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px}
header h1{margin:0 0 4px;font-size:1.6rem}
header p{margin:0;color:#5b6475}
section{background:#fff;border:1px solid #dfe3ea;border-radius:8px;padding:16px 20px;
 margin:18px 0}
section h2{margin:0 0 12px;font-size:1.2rem}
table{border-collapse:collapse;font-size:.9rem;margin:6px 0 10px}
th,td{border-bottom:1px solid #e7eaf0;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f0f2f6;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{background:none;width:14em;color:#5b6475;font-weight:500}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
 font-size:.88em;word-break:break-all}
.status{font-weight:600;padding:8px 12px;border-radius:6px;display:inline-block}
.status.ok{background:#e3f4e8;color:#17603a}
.status.bad{background:#fde4e1;color:#9b1c10}
.callout{padding:8px 12px;border-radius:6px;background:#fff4d6;border-left:4px solid #e0a100}
.big{font-size:1.5rem;font-weight:600}
.muted{color:#5b6475}
.flag{color:#b3261e;font-weight:600}
img.chart{max-width:100%;height:auto;border:1px solid #eceff4;border-radius:4px}
.feat{display:flex;align-items:center;gap:6px;white-space:nowrap}
.bar{display:inline-block;height:8px;background:#4c78a8;border-radius:2px}
.scroll{overflow-x:auto}
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _kv_table(pairs: Iterable[tuple[str, str]]) -> str:
    rows = "".join(f'<tr><th scope="row">{_esc(k)}</th><td>{v}</td></tr>' for k, v in pairs)
    return f'<table class="kv">{rows}</table>'


def _img(png: bytes, alt: str) -> str:
    return f'<img class="chart" src="{png_data_uri(png)}" alt="{_esc(alt)}">'


def _summary_section(data: ReportData) -> str:
    pairs = [
        (
            "Model",
            f"<code>{_esc(data.model_name)}</code> version <code>{_esc(data.model_version)}</code>",
        ),
        ("Input", f'<span class="mono">{_esc(data.input_path)}</span>'),
        ("Output", f'<span class="mono">{_esc(data.output_path)}</span>'),
        ("Generated at", _esc(data.generated_at)),
        ("Run id", f"<code>{_esc(data.run_id)}</code>" if data.run_id else "\u2014"),
    ]
    if data.timestamp_column:
        pairs.append(("Timestamp column", f"<code>{_esc(data.timestamp_column)}</code>"))
    flagged = (
        f'<p><span class="big">{_count(data.n_flagged)}</span> of '
        f"{_count(data.rows_scored)} scored rows flagged as anomalous "
        f"({_esc(_pct(data.alert_rate))}).</p>"
    )
    return f'<section id="summary"><h2>Summary</h2>{flagged}{_kv_table(pairs)}</section>'


def _accounting_section(data: ReportData) -> str:
    counts = _kv_table(
        [
            ("Rows in", _count(data.rows_in)),
            ("Rows scored", _count(data.rows_scored)),
            ("Rows quarantined", _count(data.rows_quarantined)),
        ]
    )
    total = data.rows_scored + data.rows_quarantined
    if data.accounting_ok:
        status = (
            f'<p class="status ok">OK: rows in ({_count(data.rows_in)}) = rows scored '
            f"({_count(data.rows_scored)}) + rows quarantined "
            f"({_count(data.rows_quarantined)})</p>"
        )
    else:
        status = (
            f'<p class="status bad">MISMATCH: rows in ({_count(data.rows_in)}) \u2260 '
            f"rows scored ({_count(data.rows_scored)}) + rows quarantined "
            f"({_count(data.rows_quarantined)}) = {_count(total)}; difference "
            f"{data.rows_in - total:+,} rows. The outputs are incomplete.</p>"
        )
    if data.window_status_counts:
        counts += _kv_table(
            [
                (f"Window status: {status}", _count(n))
                for status, n in sorted(data.window_status_counts.items())
            ]
        )
    reasons = sorted(data.quarantine_reasons.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
    if reasons:
        body = "".join(
            f'<tr><td>{_esc(reason)}</td><td class="num">{_count(n)}</td>'
            f'<td class="num">{_esc(_pct(int(n) / data.rows_in) if data.rows_in else "n/a")}'
            "</td></tr>"
            for reason, n in reasons
        )
        quarantine = (
            "<h3>Quarantined rows by reason</h3><table><thead><tr><th>Reason</th>"
            '<th class="num">Rows</th><th class="num">Share of rows in</th></tr>'
            f"</thead><tbody>{body}</tbody></table>"
        )
    else:
        quarantine = '<p class="muted">No row was quarantined.</p>'
    notes = ""
    if data.input_notes:
        items = "".join(f"<li>{_esc(note)}</li>" for note in data.input_notes)
        notes = f'<h3>Notes on the input</h3><ul class="input-notes">{items}</ul>'
    return (
        f'<section id="accounting"><h2>Row accounting</h2>{counts}{status}{quarantine}'
        f"{notes}</section>"
    )


def _alerts_section(data: ReportData) -> str:
    ratio = data.alert_ratio
    pairs = [
        (
            "Observed alert rate",
            f"<strong>{_esc(_pct(data.alert_rate))}</strong> "
            f"({_count(data.n_flagged)} of {_count(data.rows_scored)} rows)",
        ),
        ("Expected from training", _esc(_pct(data.expected_alert_rate))),
        ("Observed / expected", _esc(_ratio(ratio))),
    ]
    if data.rows_scored <= 0:
        note = '<p class="muted">No row was scored, so there is no alert rate to compare.</p>'
    elif data.alert_rate_unusual:
        direction = "higher" if ratio is not None and ratio > 1 else "lower"
        note = (
            f'<p class="callout" data-alert="unusual"><strong>Alert rate {direction} than '
            f"expected:</strong> {_esc(_pct(data.alert_rate))} observed vs "
            f"{_esc(_pct(data.expected_alert_rate))} expected "
            f"(difference {data.alert_rate - data.expected_alert_rate:+.2%}, "
            f"{_esc(_ratio(ratio))}). Outside {ALERT_RATE_LOW:g}\u00d7\u2013"
            f"{ALERT_RATE_HIGH:g}\u00d7 of the training rate: the input may have drifted "
            "from the training data, or it may contain a real incident.</p>"
        )
    else:
        note = (
            f'<p class="muted">Within {ALERT_RATE_LOW:g}\u00d7\u2013{ALERT_RATE_HIGH:g}\u00d7 '
            "of the rate expected from training.</p>"
        )
    return (
        f'<section id="alerts"><h2>Alert rate vs. training</h2>{_kv_table(pairs)}{note}</section>'
    )


def _threshold_section(data: ReportData) -> str:
    pairs = [
        (
            "Threshold",
            f"<strong>{_esc(_num(data.threshold))}</strong> (rows scoring above it are flagged)",
        ),
        ("Method", f"<code>{_esc(data.threshold_method)}</code>"),
        ("Expected alert rate at this threshold", _esc(_pct(data.expected_alert_rate))),
    ]
    return f'<section id="threshold"><h2>Threshold</h2>{_kv_table(pairs)}</section>'


def _distribution_section(data: ReportData) -> str:
    scores = np.asarray(data.score_sample, dtype=float).ravel()
    if data.score_quantiles:
        body = "".join(
            f'<tr><td>{_esc(name)}</td><td class="num">{_esc(_num(value))}</td></tr>'
            for name, value in data.score_quantiles.items()
        )
        quantiles = (
            '<table><thead><tr><th>Quantile</th><th class="num">Score</th></tr>'
            f"</thead><tbody>{body}</tbody></table>"
        )
    else:
        quantiles = '<p class="muted">No score quantiles (no row was scored).</p>'
    sample_note = ""
    if 0 < len(scores) < data.rows_scored:
        sample_note = (
            f'<p class="muted">Histogram of a uniform sample of {_count(len(scores))}'
            f" of the {_count(data.rows_scored)} scored rows.</p>"
        )
    png = score_histogram_png(scores, data.threshold, "Score distribution")
    chart = _img(png, "Histogram of scores with the threshold marked")
    return (
        f'<section id="distribution"><h2>Score distribution</h2>{quantiles}{sample_note}'
        f"{chart}</section>"
    )


def _top_table_html(top: pd.DataFrame) -> str:
    carried = carried_columns(top)
    ranks = feature_ranks(top)
    extra = [c for c in ("recon_error", "kl") if c in top.columns]
    head = ['<th class="num">#</th>', *(f"<th>{_esc(c)}</th>" for c in carried)]
    if "score" in top.columns:
        head.append('<th class="num">score</th>')
    if "is_anomaly" in top.columns:
        head.append("<th>flagged</th>")
    head += [f'<th class="num">{_esc(c)}</th>' for c in extra]
    if ranks:
        head.append("<th>contributing features (share of reconstruction error)</th>")
    rows = []
    for rank, (_, row) in enumerate(top.iterrows(), start=1):
        cells = [f'<td class="num">{rank}</td>']
        cells += [f"<td>{_esc(_cell(row[c]))}</td>" for c in carried]
        if "score" in top.columns:
            cells.append(f'<td class="num"><strong>{_esc(_num(row["score"]))}</strong></td>')
        if "is_anomaly" in top.columns:
            flagged = _plain(row["is_anomaly"])
            cells.append('<td class="flag">yes</td>' if flagged else "<td>no</td>")
        cells += [f'<td class="num">{_esc(_num(row[c]))}</td>' for c in extra]
        if ranks:
            features = []
            for name, share in _contributions(row, ranks):
                width = 0 if share is None else max(0.0, min(1.0, share)) * 120
                features.append(
                    f'<div class="feat"><span class="bar" style="width:{width:.0f}px"></span>'
                    f"<code>{_esc(name)}</code> {_esc(_share(share))}</div>"
                )
            cells.append("<td>" + ("".join(features) or "\u2014") + "</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _top_section(data: ReportData) -> str:
    top = _sorted_top(data.top_anomalies)
    if top.empty:
        return (
            '<section id="top-anomalies"><h2>Top anomalies</h2>'
            '<p class="muted">No rows were scored, so there are no anomalies to list.</p>'
            "</section>"
        )
    flagged = (
        int(top["is_anomaly"].fillna(False).astype(bool).sum())
        if "is_anomaly" in top.columns
        else None
    )
    note = f"<p>The {_count(len(top))} highest-scoring rows"
    note += (
        f", {_count(flagged)} of them above the threshold.</p>" if flagged is not None else ".</p>"
    )
    chart = _img(top_features_png(top), "Contributing features of the top anomalies")
    return (
        f'<section id="top-anomalies"><h2>Top anomalies</h2>{note}{_top_table_html(top)}'
        f"{chart}</section>"
    )


def _over_time_section(data: ReportData) -> str:
    series = data.time_series
    by = f" (by <code>{_esc(data.timestamp_column)}</code>)" if data.timestamp_column else ""
    note = ""
    if data.entity_column and series is not None and data.entity_column in series.columns:
        n_entities = series[data.entity_column].nunique(dropna=False)
        note = (
            f'<p class="muted">One panel per <code>{_esc(data.entity_column)}</code> '
            f"({_count(n_entities)} values); flagged points in red.</p>"
        )
    else:
        note = '<p class="muted">Flagged points in red; the dashed line is the threshold.</p>'
    if data.flagged_spans is not None:
        shown = len(data.flagged_spans)
        more = f" ({_count(shown)} drawn)" if shown < data.n_flagged_spans else ""
        note += (
            f'<p class="muted">{_count(data.n_flagged_spans)} flagged spans{more}, shaded: '
            "consecutive flagged rows of one series. Each row's score is that of the window "
            "ending at it.</p>"
        )
    png = score_over_time_png(series, data.threshold, data.entity_column, spans=data.flagged_spans)
    chart = _img(png, "Score over time with flagged points")
    return f'<section id="over-time"><h2>Score over time{by}</h2>{note}{chart}</section>'


def render_html(data: ReportData) -> str:
    """The whole report as one self-contained HTML page."""
    sections = [
        _summary_section(data),
        _accounting_section(data),
        _alerts_section(data),
        _threshold_section(data),
        _distribution_section(data),
        _top_section(data),
    ]
    if data.time_series is not None:
        sections.append(_over_time_section(data))
    title = _esc(data.title)
    subtitle = (
        f"{_esc(data.model_name)} v{_esc(data.model_version)} \u00b7 "
        f"generated {_esc(data.generated_at)}"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_CSS}</style></head>\n"
        f"<body><main><header><h1>{title}</h1><p>{subtitle}</p></header>\n"
        + "\n".join(sections)
        + "\n</main></body></html>\n"
    )


def write_report(data: ReportData, path: str | os.PathLike[str]) -> Path:
    """Write :func:`render_html` to ``path`` atomically (temp file, fsync, rename)."""
    return write_bytes_atomic(render_html(data).encode("utf-8"), path)


# ----------------------------------------------------------------------------- Prefect


def _md(value: Any) -> str:
    """Text safe inside markdown (and a markdown table cell): HTML and markup escaped."""
    text = html.escape(str(value), quote=False).replace("\r", " ").replace("\n", " ")
    for char in "\\`*_[]|#":
        text = text.replace(char, "\\" + char)
    return text


def render_markdown(data: ReportData, top_rows: int = MARKDOWN_TOP_ROWS) -> str:
    """A compact summary: accounting, alert rate vs expected, threshold, top anomalies."""
    status = "OK" if data.accounting_ok else "**MISMATCH**"
    lines = [
        f"## {_md(data.title)}",
        "",
        f"Model **{_md(data.model_name)}** version **{_md(data.model_version)}** \u00b7 "
        f"generated {_md(data.generated_at)}"
        + (f" \u00b7 run {_md(data.run_id)}" if data.run_id else ""),
        "",
        f"Input: {_md(data.input_path)}  ",
        f"Output: {_md(data.output_path)}",
        "",
        "### Row accounting",
        "",
        "| rows in | scored | quarantined | accounting |",
        "|---:|---:|---:|---|",
        f"| {_count(data.rows_in)} | {_count(data.rows_scored)} | "
        f"{_count(data.rows_quarantined)} | {status} |",
    ]
    if data.quarantine_reasons:
        reasons = sorted(data.quarantine_reasons.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
        lines += [
            "",
            "Quarantined by reason: " + "; ".join(f"{_md(r)}: {_count(n)}" for r, n in reasons),
        ]
    if data.input_notes:
        lines += ["", *(f"- Note: {_md(note)}" for note in data.input_notes)]
    ratio = data.alert_ratio
    alert = (
        f"**Alert rate** {_pct(data.alert_rate)} ({_count(data.n_flagged)} of "
        f"{_count(data.rows_scored)}) vs {_pct(data.expected_alert_rate)} expected from "
        f"training ({_ratio(ratio)})"
    )
    if data.alert_rate_unusual:
        alert += (
            f" \u2014 **unusual: outside {ALERT_RATE_LOW:g}\u00d7\u2013"
            f"{ALERT_RATE_HIGH:g}\u00d7 of expected**"
        )
    lines += [
        "",
        alert,
        "",
        f"**Threshold** {_num(data.threshold)} ({_md(data.threshold_method)})",
    ]
    if data.score_quantiles:
        lines += [
            "",
            "Score quantiles: "
            + ", ".join(f"{_md(k)} = {_num(v)}" for k, v in data.score_quantiles.items()),
        ]
    top = _sorted_top(data.top_anomalies).head(top_rows)
    lines += ["", f"### Top {len(top)} anomalies" if len(top) else "### Top anomalies", ""]
    if top.empty:
        lines.append("No rows were scored.")
        return "\n".join(lines) + "\n"
    carried = carried_columns(top)
    ranks = feature_ranks(top)
    header = ["#", *(_md(c) for c in carried), "score", "flagged"]
    if ranks:
        header.append("top features")
    lines.append("| " + " | ".join(header) + " |")
    lines.append(
        "|"
        + "|".join(["---:"] + ["---"] * len(carried) + ["---:", "---"] + (["---"] if ranks else []))
        + "|"
    )
    for rank, (_, row) in enumerate(top.iterrows(), start=1):
        cells = [str(rank), *(_md(_cell(row[c])) for c in carried)]
        cells.append(_num(row["score"]) if "score" in top.columns else "n/a")
        cells.append(_cell(row["is_anomaly"]) if "is_anomaly" in top.columns else "n/a")
        if ranks:
            cells.append(
                ", ".join(
                    f"{_md(name)} ({_share(share)})" for name, share in _contributions(row, ranks)
                )
                or "\u2014"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def top_anomalies_table(data: ReportData) -> list[dict[str, Any]]:
    """The top anomalies as JSON-serialisable rows (``rank`` first, then every column)."""
    top = _sorted_top(data.top_anomalies)
    rows: list[dict[str, Any]] = []
    for rank, record in enumerate(top.to_dict(orient="records"), start=1):
        row: dict[str, Any] = {"rank": rank}
        row.update({str(k): _plain(v) for k, v in record.items()})
        rows.append(row)
    return rows

"""The report as one self-contained HTML page, rendered from the Jinja2 templates next to
this module.

The templates hold the markup and the wording; this module works out what they show
(sorted reasons, the top-anomalies table, the charts as data URIs). The environment escapes
every value it writes (``autoescape``), so text from data or configuration (feature names,
key values, paths, reasons) is shown, not run; and it fails on a name the template does not
get (``StrictUndefined``) rather than leave a gap in the page.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from flows.pipeline.writers import write_bytes_atomic
from flows.reporting.charts import score_histogram_png, score_over_time_png
from flows.reporting.data import ALERT_RATE_HIGH, ALERT_RATE_LOW, ReportData
from flows.reporting.explain import KL_SENTENCE, score_parts, severity, severity_text
from flows.reporting.formatting import (
    carried_columns,
    cell_text,
    feature_ranks,
    fmt_count,
    fmt_num,
    fmt_pct,
    fmt_ratio,
    fmt_share,
    json_value,
    sorted_top,
)
from flows.reporting.sections import draw, drift_section, history_section, links_section

__all__ = ["SECTION_IDS", "TEMPLATE_DIR", "environment", "render_html", "write_report"]

#: The ``id`` of each ``<section>``, in page order; ``over-time`` only with a time series.
SECTION_IDS = (
    "summary",
    "accounting",
    "alerts",
    "threshold",
    "distribution",
    "top-anomalies",
    "explanations",
    "drift",
    "history",
    "over-time",
)
TEMPLATE_DIR = Path(__file__).with_name("templates")
#: Width in pixels of a contribution bar for a share of 100%.
_BAR_PX = 120


@functools.cache
def environment() -> Environment:
    """The templates' environment (one per process): escaping on, unknown names fatal, the
    report's number formats as filters (``commas``, ``number``, ``percent``, ...)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,  # a block tag on its own line leaves no empty line behind
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        commas=fmt_count, number=fmt_num, percent=fmt_pct, ratio=fmt_ratio, share=fmt_share
    )
    return env


@dataclass(frozen=True)
class _Reason:
    reason: str
    rows: str
    share: str
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Contribution:
    name: str
    share: str
    width: str  # of the bar, in pixels


@dataclass(frozen=True)
class _TopRow:
    rank: int
    carried: list[tuple[str, str]]  # (text, sort key)
    score: str
    score_sort: str
    severity: str
    severity_sort: str
    flagged: bool
    extra: list[tuple[str, str]]
    features: list[_Contribution]


@dataclass(frozen=True)
class _TopTable:
    carried: list[tuple[str, bool]]  # (column, sorted as a number)
    has_score: bool
    has_flag: bool
    extra: list[str]
    has_features: bool
    rows: list[_TopRow]
    n_flagged: int | None
    has_severity: bool


def _accounting(data: ReportData) -> dict[str, Any]:
    accounted = data.rows_scored + data.rows_quarantined
    reasons = [
        _Reason(
            reason=str(reason),
            rows=fmt_count(n),
            share=fmt_pct(int(n) / data.rows_in) if data.rows_in else "n/a",
            examples=tuple(data.quarantine_examples.get(reason, ())),
        )
        for reason, n in data.quarantine_by_count()
    ]
    return {
        "accounted": accounted,
        "difference": f"{data.rows_in - accounted:+,}",
        "reasons": reasons,
        "window_statuses": sorted((data.window_status_counts or {}).items()),
    }


def _alerts(data: ReportData) -> dict[str, Any]:
    ratio = data.alert_ratio
    return {
        "direction": "higher" if ratio is not None and ratio > 1 else "lower",
        "difference": f"{data.alert_rate - data.expected_alert_rate:+.2%}",
        "low": f"{ALERT_RATE_LOW:g}",
        "high": f"{ALERT_RATE_HIGH:g}",
    }


def _distribution(data: ReportData) -> dict[str, Any]:
    scores = np.asarray(data.score_sample, dtype=float).ravel()
    return {
        "n_sample": len(scores),
        "sampled": 0 < len(scores) < data.rows_scored,
        "chart": draw(score_histogram_png, scores, data.threshold, "Score distribution"),
    }


def _features(row: pd.Series, ranks: list[int]) -> list[_Contribution]:
    """Each contributing column's share of the score, then the KL part's."""
    columns, kl = score_parts(row, ranks)
    found = []
    for name, share in [*columns, *([("KL", kl)] if math.isfinite(kl) else [])]:
        width = max(0.0, min(1.0, share)) * _BAR_PX
        found.append(_Contribution(name=name, share=fmt_share(share), width=f"{width:.0f}"))
    return found


def _is_number_column(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _sort_value(value: object) -> str:
    """A cell's ``data-sort``: the number itself, so that sorting is numeric."""
    plain = json_value(value)
    if isinstance(plain, bool):
        return "1" if plain else "0"
    return repr(float(plain)) if isinstance(plain, (int, float)) else ""


def _top_table(data: ReportData) -> _TopTable | None:
    """The top-anomalies table, ``None`` when no row was scored."""
    top = sorted_top(data.top_anomalies)
    if top.empty:
        return None
    carried, ranks = carried_columns(top), feature_ranks(top)
    extra = [c for c in ("recon_error", "kl") if c in top.columns]
    has_score, has_flag = "score" in top.columns, "is_anomaly" in top.columns
    quantiles = data.reference_quantiles
    rows = []
    for rank, (_, row) in enumerate(top.iterrows(), start=1):
        percentile = severity(row["score"], quantiles) if has_score else None
        rows.append(
            _TopRow(
                rank=rank,
                carried=[(cell_text(row[c]), _sort_value(row[c])) for c in carried],
                score=fmt_num(row["score"]) if has_score else "",
                score_sort=_sort_value(row["score"]) if has_score else "",
                severity=severity_text(percentile, quantiles),
                severity_sort="" if percentile is None else repr(percentile),
                flagged=bool(json_value(row["is_anomaly"])) if has_flag else False,
                extra=[(fmt_num(row[c]), _sort_value(row[c])) for c in extra],
                features=_features(row, ranks),
            )
        )
    n_flagged = int(top["is_anomaly"].fillna(False).astype(bool).sum()) if has_flag else None
    return _TopTable(
        carried=[(str(c), _is_number_column(top[c])) for c in carried],
        has_score=has_score,
        has_flag=has_flag,
        extra=extra,
        has_features=bool(ranks),
        rows=rows,
        n_flagged=n_flagged,
        has_severity=has_score and bool(quantiles),
    )


def _over_time(data: ReportData) -> dict[str, Any]:
    series = data.time_series
    n_entities = None
    if data.entity_column and series is not None and data.entity_column in series.columns:
        n_entities = series[data.entity_column].nunique(dropna=False)
    spans = data.flagged_spans
    return {
        "n_entities": n_entities,
        "spans_drawn": None if spans is None else len(spans),
        "chart": draw(score_over_time_png, series, data.threshold, data.entity_column, spans=spans),
    }


@functools.cache
def table_script() -> tuple[Markup, Markup]:
    """The table's sorting and filtering script and its CSP source (``'sha256-...'``):
    the policy allows this script and nothing else."""
    text = environment().get_template("table.js.j2").render()
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return Markup(text), Markup(f"'sha256-{digest}'")


def render_html(data: ReportData) -> str:
    """The whole report as one self-contained HTML page."""
    script, script_source = table_script()
    context = {
        "data": data,
        "links": links_section(data),
        "accounting": _accounting(data),
        "alerts": _alerts(data),
        "distribution": _distribution(data),
        "top": _top_table(data),
        "kl_sentence": KL_SENTENCE,
        "drift": drift_section(data),
        "history": history_section(data),
        "over_time": _over_time(data) if data.time_series is not None else None,
        "script": script,
        "script_source": script_source,
    }
    return environment().get_template("report.html.j2").render(context)


def write_report(data: ReportData, path: str | os.PathLike[str]) -> Path:
    """Write :func:`render_html` to ``path`` atomically (temp file, fsync, rename)."""
    return write_bytes_atomic(render_html(data).encode("utf-8"), path)

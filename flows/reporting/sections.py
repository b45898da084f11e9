"""What the newer sections of the page show: run links, explanations, drift, history, and
every chart drawn so that one that fails says so in its place instead of failing the run."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flows.reporting.charts.drift import drift_png
from flows.reporting.charts.history import history_png
from flows.reporting.data import ReportData
from flows.reporting.drift import drift_note
from flows.reporting.formatting import DASH, fmt_num, fmt_pct, png_data_uri
from flows.reporting.history import history_view

__all__ = ["Chart", "draw", "drift_section", "history_section", "links_section"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chart:
    """A drawn chart (``uri``) or why it could not be drawn (``error``)."""

    uri: str | None
    error: str | None = None


def draw(render: Callable[..., bytes], *args: Any, **kwargs: Any) -> Chart:
    """``render(*args)`` as a data URI; any error becomes the text shown in its place."""
    try:
        return Chart(png_data_uri(render(*args, **kwargs)))
    except Exception as exc:  # noqa: BLE001 - one chart must not cost the report
        log.warning(
            "chart %s could not be drawn", getattr(render, "__name__", render), exc_info=True
        )
        text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
        return Chart(None, text[:300])


@dataclass(frozen=True)
class _Link:
    label: str
    text: str
    href: str | None = None


def links_section(data: ReportData) -> list[_Link]:
    """The run's identity, as rows of the summary: links where they can be followed."""
    links = data.links
    if links is None:
        return []
    rows = [_Link("Run date", links.run_date or DASH)]
    # Identifiers the summary shows already are repeated only as links.
    if links.mlflow_run_id and (links.mlflow_run_url or links.mlflow_run_id != data.run_id):
        rows.append(_Link("MLflow run", links.mlflow_run_id, links.mlflow_run_url))
    if links.model_version_url:
        text = f"{links.model_name} version {links.model_version}"
        rows.append(_Link("Model version", text, links.model_version_url))
    if links.model_uri:
        rows.append(_Link("Model URI", links.model_uri))
    if links.prefect_flow_run_id:
        rows.append(_Link("Prefect flow run", links.prefect_flow_run_id, links.prefect_url))
    if links.input_path and links.input_path != data.input_path:
        rows.append(_Link("Input (absolute)", links.input_path))
    if links.output_dir:
        rows.append(_Link("Run folder", links.output_dir))
    return rows


@dataclass(frozen=True)
class _DriftRow:
    column: str
    kind: str
    psi: str
    psi_value: float
    level: str
    missing: str
    levels: str


def _drift_row(d: Any) -> _DriftRow:
    levels = DASH
    if d.unseen_now is not None:
        levels = f"{fmt_pct(d.unseen_now)} unseen, {fmt_pct(d.rare_now)} rare or unseen"
        levels += f" (training {fmt_pct(d.rare_train)})"
    return _DriftRow(
        column=d.column,
        kind=d.kind,
        psi=fmt_num(d.psi),
        psi_value=d.psi if math.isfinite(d.psi) else -1.0,
        level=d.level,
        missing=f"{fmt_pct(d.missing_train)} \u2192 {fmt_pct(d.missing_now)}",
        levels=levels,
    )


#: Columns listed in the drift table (most drifted first): a wide model's page stays small.
MAX_DRIFT_ROWS = 50


def drift_section(data: ReportData) -> dict[str, Any] | None:
    if data.drift is None:
        return None
    shown = data.drift[:MAX_DRIFT_ROWS]
    return {
        "rows": [_drift_row(d) for d in shown],
        "n_more": len(data.drift) - len(shown),
        "note": drift_note(data.drift),
        "chart": draw(drift_png, data.drift) if data.drift else None,
    }


def history_section(data: ReportData) -> dict[str, Any] | None:
    if data.history is None:
        return None
    view = history_view(data.history, data)
    band = view.band
    return {
        "view": view,
        "band": DASH if band is None else f"{fmt_pct(band[0])}\u2013{fmt_pct(band[1])}",
        "rows": [
            {
                "date": str(row.run_date)[:10] if row.run_date is not None else DASH,
                "current": bool(row.current),
                "rows_in": row.rows_in,
                "rate": fmt_pct(row.alert_rate),
                "p50": fmt_num(row.score_p50),
                "p99": fmt_num(row.score_p99),
                "version": row.model_version,
            }
            for row in view.runs.itertuples()
        ],
        "chart": draw(history_png, view.runs, band),
    }

"""Charts never fail on what real data holds: math-like labels, sentinel and constant
timestamps; and a chart that fails anyway is replaced by a note, not a failed report."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from flows.reporting import charts
from flows.reporting import page as page_module
from flows.reporting.charts.drift import drift_png
from flows.reporting.charts.history import history_png
from flows.reporting.drift import ColumnDrift
from flows.reporting.sections import draw

PNG = b"\x89PNG\r\n\x1a\n"
LABELS = ["$\\foo$", "100% $", "a\\b", "<b>x</b>", "$x_1^2$ & $"]


def series(times: pd.Series, entity: list[str] | None = None) -> pd.DataFrame:
    n = len(times)
    frame = pd.DataFrame(
        {"timestamp": times, "score": np.linspace(0, 20, n), "is_anomaly": np.arange(n) % 9 == 0}
    )
    if entity is not None:
        frame["machine"] = (entity * n)[:n]
    return frame


@pytest.mark.parametrize("label", LABELS)
def test_labels_that_look_like_math_are_drawn_as_text(label: str) -> None:
    times = pd.Series(pd.date_range("2024-03-01", periods=40, freq="h"))
    assert charts.score_over_time_png(series(times, [label, "b"]), 10.0, "machine")[:8] == PNG
    assert charts.score_histogram_png(np.arange(10.0), 5.0, label)[:8] == PNG
    top = pd.DataFrame(
        {"id": [label], "score": [3.0], "top_feature_1": [label], "top_feature_1_share": [0.6]}
    )
    assert charts.top_features_png(top)[:8] == PNG
    drift = [ColumnDrift(column=label, kind="numeric", psi=0.4, missing_train=0, missing_now=0,
                         rows=10)]  # fmt: skip
    assert drift_png(drift)[:8] == PNG


def test_sentinel_timestamps_are_left_out_and_said_so() -> None:
    times = pd.Series(pd.date_range("2024-03-01", periods=48, freq="h")).astype("datetime64[us]")
    times[5] = pd.Timestamp("9999-12-31")
    times[6] = pd.Timestamp("1000-01-01")
    assert charts.score_over_time_png(series(times), 10.0)[:8] == PNG
    only_sentinels = pd.Series([dt.datetime(9999, 12, 31)] * 10, dtype="datetime64[us]")
    assert charts.score_over_time_png(series(only_sentinels), 10.0)[:8] == PNG
    spans = pd.DataFrame({"entity": [None], "start": [times[5]], "end": [times[7]]})
    assert charts.score_over_time_png(series(times), 10.0, spans=spans)[:8] == PNG


def test_a_constant_timestamp_is_drawn() -> None:
    constant = pd.Series([pd.Timestamp("2024-03-01 12:00", tz="UTC")] * 30)
    assert charts.score_over_time_png(series(constant, ["a", "b"]), 10.0, "machine")[:8] == PNG


def test_history_chart_of_one_run_and_of_odd_dates() -> None:
    runs = pd.DataFrame(
        {
            "run_date": [dt.date(2024, 3, 1), None, "9999-12-31"],
            "rows_in": [10, 12, 11],
            "rows_quarantined": [0, 1, 0],
            "alert_rate": [0.01, 0.02, np.nan],
            "score_p50": 1.0,
            "score_p90": 2.0,
            "score_p99": 3.0,
            "threshold": 2.5,
            "current": [False, False, True],
        }
    )
    assert history_png(runs, (0.005, 0.02))[:8] == PNG
    assert history_png(runs.tail(1), None)[:8] == PNG


def test_a_chart_that_fails_is_replaced_by_a_note() -> None:
    def broken(*_args):
        raise ValueError("Matplotlib dates must be between year 0001 and 9999\nmore")

    drawn = draw(broken)
    assert (
        drawn.uri is None
        and drawn.error == "ValueError: Matplotlib dates must be between year 0001 and 9999"
    )
    page = (
        page_module.environment()
        .from_string('{% from "macros.html.j2" import chart %}{{ chart(c, "alt") }}')
        .render(c=drawn)
    )
    assert 'data-chart="failed"' in page and "year 0001" in page and "<img" not in page

"""The batch anomaly report: real matplotlib rendering, real files, parsed HTML."""

from __future__ import annotations

import base64
import json
import os
import struct
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from flows.reporting import charts, report
from flows.reporting import page as page_module
from flows.reporting.report import ReportData

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MALICIOUS = "<script>alert('x')</script>"
BASE_SECTIONS = (
    "summary",
    "accounting",
    "alerts",
    "threshold",
    "distribution",
    "top-anomalies",
    "explanations",
    "drift",
    "history",
)


class _Page(HTMLParser):
    """Collects section ids, image sources and script/link/iframe tags of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.active_tags: list[str] = []
        self.stack: list[str] = []
        self.section_text: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "section":
            self.sections.append(attributes.get("id", ""))
            self.stack.append(attributes.get("id", ""))
            self.section_text[self.stack[-1]] = []
        if tag == "img":
            self.images.append(attributes.get("src", ""))
        if tag in ("script", "link", "iframe", "object", "embed"):
            self.active_tags.append(tag)

    def handle_endtag(self, tag):
        if tag == "section" and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack:
            self.section_text[self.stack[-1]].append(data)

    def text(self, section: str) -> str:
        return "".join(self.section_text[section])


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def png_from_data_uri(uri: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    png = base64.b64decode(uri[len(prefix) :], validate=True)
    assert png[:8] == PNG_SIGNATURE
    return png


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == PNG_SIGNATURE and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def make_top(n: int = 6) -> pd.DataFrame:
    scores = np.linspace(30.0, 10.0, n)
    return pd.DataFrame(
        {
            "id": np.arange(100, 100 + n, dtype=np.int64),
            "ts": pd.date_range("2024-03-01", periods=n, freq="h", tz="UTC"),
            "recon_error": scores - 1.0,
            "kl": np.full(n, 2.0),
            "score": scores,
            "is_anomaly": scores > 12.0,
            "top_feature_1": [MALICIOUS, *["sensor_1"] * (n - 1)],
            "top_feature_1_share": np.full(n, 0.55),
            "top_feature_2": ["sensor_2"] * n,
            "top_feature_2_share": np.full(n, 0.25),
            "top_feature_3": ["grade"] * n,
            "top_feature_3_share": np.full(n, 0.1),
        }
    )


def make_series(entities: tuple[str, ...] = ("pump-a", "pump-b"), n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    parts = []
    for entity in entities:
        score = rng.gamma(2.0, 2.0, n)
        parts.append(
            pd.DataFrame(
                {
                    "timestamp": pd.date_range("2024-03-01", periods=n, freq="10min", tz="UTC"),
                    "score": score,
                    "is_anomaly": score > 12.0,
                    "machine": entity,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def make_data(**changes) -> ReportData:
    scores = np.random.default_rng(0).gamma(2.0, 2.0, 400)
    fields = dict(
        title="Nightly report",
        model_name="sensors-vae",
        model_version="7",
        threshold=12.0,
        threshold_method="contamination",
        expected_alert_rate=0.02,
        rows_in=410,
        rows_scored=400,
        rows_quarantined=10,
        quarantine_reasons={"non-numeric value in sensor_3": 6, "missing key id": 4},
        score_sample=scores,
        n_flagged=8,
        score_quantiles={"q0.5": 3.4, "q0.9": 7.8, "q0.99": 12.9},
        top_anomalies=make_top(),
        timestamp_column="ts",
        time_series=None,
        entity_column=None,
        input_path="/data/in/part-*.parquet",
        output_path="/data/out/scores.parquet",
        generated_at="2024-03-02T06:00:00+00:00",
        run_id="0123abcd",
    )
    fields.update(changes)
    return ReportData(**fields)


@pytest.fixture(scope="module")
def full_page() -> str:
    return report.render_html(make_data(time_series=make_series(), entity_column="machine"))


def test_properties():
    data = make_data()
    assert data.alert_rate == pytest.approx(8 / 400)
    assert data.accounting_ok
    assert not make_data(rows_in=411).accounting_ok
    empty = make_data(rows_in=0, rows_scored=0, rows_quarantined=0, n_flagged=0)
    assert empty.alert_rate == 0.0 and empty.alert_ratio is None and not empty.alert_rate_unusual


def test_every_section_is_present_and_every_image_is_a_png(full_page):
    page = parse(full_page)
    assert page.sections == [*BASE_SECTIONS, "over-time"]
    assert tuple(page.sections) == report.SECTION_IDS
    # histogram, score over time (no drift or history figures without profile and index)
    assert len(page.images) == 2
    for uri in page.images:
        width, height = png_size(png_from_data_uri(uri))
        assert width > 100 and height > 100
    summary = page.text("summary")
    for expected in (
        "sensors-vae",
        "7",
        "/data/in/part-*.parquet",
        "/data/out/scores.parquet",
        "2024-03-02T06:00:00+00:00",
        "0123abcd",
    ):
        assert expected in summary
    assert "12" in page.text("threshold") and "contamination" in page.text("threshold")
    assert "q0.99" in page.text("distribution")
    assert "non-numeric value in sensor_3" in page.text("accounting")


def test_page_is_self_contained(full_page):
    page = parse(full_page)
    assert page.active_tags == ["script"]  # the table script, allowed by its hash alone
    _, source = page_module.table_script()
    assert f'script-src {source}"' in full_page and "unsafe-eval" not in full_page
    assert "http://" not in full_page and "https://" not in full_page
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert "<style>" in full_page  # inline CSS


def test_text_from_data_is_escaped_everywhere():
    data = make_data(
        title=f"report {MALICIOUS}",
        model_name=MALICIOUS,
        quarantine_reasons={MALICIOUS: 10},
        input_path=f"/data/{MALICIOUS}.parquet",
        top_anomalies=make_top().assign(id=[MALICIOUS] * 6),
        time_series=make_series(entities=(MALICIOUS, "b")),
        entity_column="machine",
    )
    page = report.render_html(data)
    assert page.lower().count("<script") == 1  # the table script only
    parsed = parse(page)
    assert parsed.active_tags == ["script"]
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    # shown as text where it came in: model and path, quarantine reason, key and feature
    assert parsed.text("summary").count(MALICIOUS) == 2
    assert MALICIOUS in parsed.text("accounting")
    assert parsed.text("top-anomalies").count(MALICIOUS) == 6 + 1
    assert "<title>report &lt;script&gt;" in page
    markdown = report.render_markdown(data)
    assert "<script" not in markdown.lower()
    assert "&lt;script&gt;" in markdown


def test_over_time_section_only_with_a_time_series():
    without = parse(report.render_html(make_data(time_series=None)))
    assert without.sections == list(BASE_SECTIONS)
    assert len(without.images) == 1
    with_series = parse(
        report.render_html(
            make_data(time_series=make_series(("pump-a", "pump-b")), entity_column="machine")
        )
    )
    assert with_series.sections[-1] == "over-time"
    text = with_series.text("over-time")
    assert "machine" in text and "2 values" in text
    png_from_data_uri(with_series.images[-1])


def test_over_time_chart_caps_the_panels_and_handles_a_single_series():
    many = make_series(tuple(f"m{i:02d}" for i in range(15)), n=30)
    png = report.score_over_time_png(many, 12.0, "machine")
    assert png[:8] == PNG_SIGNATURE
    single = make_series(("only",), n=50).drop(columns="machine")
    single["timestamp"] = single["timestamp"].dt.tz_localize(None)
    assert report.score_over_time_png(single, 12.0)[:8] == PNG_SIGNATURE
    assert report.score_over_time_png(single.iloc[:0], 12.0)[:8] == PNG_SIGNATURE
    assert report.score_over_time_png(None, 12.0)[:8] == PNG_SIGNATURE
    as_text = single.assign(timestamp=["batch-" + str(i) for i in range(len(single))])
    assert report.score_over_time_png(as_text, 12.0)[:8] == PNG_SIGNATURE  # plotted by position


def test_accounting_ok_and_mismatch():
    ok = parse(report.render_html(make_data()))
    assert "OK" in ok.text("accounting") and "MISMATCH" not in ok.text("accounting")
    bad_data = make_data(rows_in=415)
    bad = parse(report.render_html(bad_data))
    text = bad.text("accounting")
    assert "MISMATCH" in text and "415" in text and "+5" in text
    assert "MISMATCH" in report.render_markdown(bad_data)
    assert "MISMATCH" not in report.render_markdown(make_data())


@pytest.mark.parametrize(
    ("n_flagged", "unusual"),
    [(8, False), (20, True), (2, True)],  # 1x, 2.5x, 0.25x of 2%
)
def test_alert_rate_is_highlighted_outside_half_to_double(n_flagged, unusual):
    data = make_data(n_flagged=n_flagged)
    assert data.alert_rate_unusual is unusual
    page = report.render_html(data)
    assert ('data-alert="unusual"' in page) is unusual
    assert ("unusual" in report.render_markdown(data)) is unusual


def test_zero_rows_scored_still_renders(tmp_path):
    data = make_data(
        rows_in=5,
        rows_scored=0,
        rows_quarantined=5,
        quarantine_reasons={"bad": 5},
        score_sample=np.array([]),
        n_flagged=0,
        score_quantiles={},
        top_anomalies=pd.DataFrame(),
        time_series=pd.DataFrame(
            {"timestamp": pd.Series([], dtype="datetime64[ns]"), "score": [], "is_anomaly": []}
        ),
    )
    page = parse(report.render_html(data))
    assert page.sections == [*BASE_SECTIONS, "over-time"]
    for uri in page.images:
        png_from_data_uri(uri)
    assert "OK" in page.text("accounting")
    assert report.top_anomalies_table(data) == []
    assert "No rows were scored" in report.render_markdown(data)
    assert report.write_report(data, tmp_path / "r.html").read_text(encoding="utf-8")


def test_histogram_handles_degenerate_scores():
    for scores, threshold in [
        (np.array([]), 1.0),
        (np.full(50, 3.0), 3.0),
        (np.array([1.0, np.nan, np.inf, 2.0]), float("nan")),
        (np.linspace(0, 1, 100), 50.0),  # threshold far outside the scores
        (np.r_[np.linspace(0, 1, 100), 1e9], 0.9),  # an extreme outlier
    ]:
        png = report.score_histogram_png(scores, threshold, "t")
        assert png[:8] == PNG_SIGNATURE
    assert report.training_histogram_png(np.arange(10.0), 5.0)[:8] == PNG_SIGNATURE


def test_top_features_chart_handles_missing_contributions():
    top = make_top(3)
    top.loc[1, "top_feature_3"] = None
    top.loc[2, "top_feature_2_share"] = np.nan
    assert report.top_features_png(top)[:8] == PNG_SIGNATURE
    assert report.top_features_png(pd.DataFrame())[:8] == PNG_SIGNATURE


def test_top_anomalies_table_is_json_serialisable_and_sorted():
    top = make_top(4).iloc[::-1]  # unsorted on purpose
    top = top.astype({"kl": "float32"})
    top.loc[top.index[0], "recon_error"] = np.nan
    top["when"] = pd.Series([pd.NaT, *pd.date_range("2024-01-01", periods=3)], index=top.index)
    rows = report.top_anomalies_table(make_data(top_anomalies=top))
    text = json.dumps(rows, allow_nan=False)
    assert json.loads(text) == rows
    assert [row["rank"] for row in rows] == [1, 2, 3, 4]
    assert [row["score"] for row in rows] == sorted((row["score"] for row in rows), reverse=True)
    first = rows[0]
    assert first["id"] == 100 and type(first["id"]) is int
    assert first["ts"] == "2024-03-01T00:00:00+00:00"
    assert first["is_anomaly"] is True and type(first["kl"]) is float
    assert first["top_feature_1"] == MALICIOUS
    assert rows[-1]["recon_error"] is None
    assert "when" in first


def test_markdown_lists_at_most_ten_anomalies():
    markdown = report.render_markdown(make_data(top_anomalies=make_top(14)))
    top_part = markdown.split("### Top 10 anomalies", 1)[1]
    table_rows = [line for line in top_part.splitlines() if line.startswith("| ")]
    assert len(table_rows) == 1 + 10  # header + 10 anomalies
    assert "2.00%" in markdown and "contamination" in markdown and "410" in markdown


def test_write_report_is_atomic(tmp_path, monkeypatch):
    data = make_data()
    target = tmp_path / "out" / "report.html"
    assert report.write_report(data, target) == target
    assert target.read_text(encoding="utf-8") == report.render_html(data)
    report.write_report(make_data(title="second"), target)  # replaces the file
    assert "second" in target.read_text(encoding="utf-8")
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        report.write_report(make_data(title="third"), target)
    assert "second" in target.read_text(encoding="utf-8")
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]


# -- sensor runs: window statuses, flagged spans ------------------------------------------
def test_report_shows_window_statuses_and_shaded_spans() -> None:
    series = make_series()
    series.loc[series["machine"] == "pump-b", "timestamp"] += pd.Timedelta(days=3)
    spans = pd.DataFrame(
        {"entity": ["pump-a"], "start": [series["timestamp"][5]], "end": [series["timestamp"][9]]}
    )
    data = make_data(
        time_series=series,
        entity_column="machine",
        flagged_spans=spans,
        n_flagged_spans=3,
        window_status_counts={"ok": 390, "warming_up": 10},
    )
    page = report.render_html(data)
    assert "Window status: warming_up" in page
    assert "3 flagged spans (1 drawn)" in page
    png = charts.score_over_time_png(series, 12.0, "machine", spans=spans)
    assert png.startswith(b"\x89PNG")


def test_the_top_table_sorts_numbers_as_numbers_and_shows_the_kl_part() -> None:
    page = report.render_html(make_data())
    assert '<th data-key="id" data-type="num">id</th>' in page
    assert '<th data-key="ts">ts</th>' in page  # times sort as ISO text
    assert 'data-sort="100.0"' in page
    # recon 29 of score 30: 1/30 of the score is KL, the columns' shares are scaled by 29/30
    assert "<code>KL</code> 3.3%" in page and "<code>sensor_2</code> 24.2%" in page

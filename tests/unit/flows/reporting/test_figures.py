"""The report's figures on inputs whose answers are known: severity, the parts of a score,
values beside the training profile, drift, history, metrics, links."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from flows.reporting.artifacts import render_markdown, run_metrics
from flows.reporting.drift import PSI_LARGE, DriftCounter, drift_note, psi
from flows.reporting.explain import explain_rows, score_parts, severity, severity_text
from flows.reporting.history import history_view
from flows.reporting.links import RunLinks
from flows.reporting.report import ReportData
from vae_core.profile import DataProfile

QUANTILES = {"q0.01": 1.0, "q0.5": 5.0, "q0.9": 9.0, "q0.99": 20.0, "q0.999": 40.0}


def report_data(**changes) -> ReportData:
    fields = dict(
        title="t",
        model_name="m",
        model_version="3",
        threshold=20.0,
        threshold_method="iqr",
        expected_alert_rate=0.02,
        rows_in=1000,
        rows_scored=1000,
        rows_quarantined=0,
        quarantine_reasons={},
        score_sample=np.linspace(0, 30, 1000),
        n_flagged=20,
        score_quantiles={"q0.5": 5.0, "q0.9": 9.0, "q0.99": 21.0},
        top_anomalies=pd.DataFrame(),
        input_path="/in.parquet",
        output_path="/out/scores.parquet",
        generated_at="2024-03-05T06:00:00+00:00",
    )
    fields.update(changes)
    return ReportData(**fields)


# -- severity -------------------------------------------------------------------------------
def test_severity_interpolates_between_reference_quantiles() -> None:
    assert severity(5.0, QUANTILES) == pytest.approx(50.0)
    assert severity(7.0, QUANTILES) == pytest.approx(70.0)  # halfway from q0.5 to q0.9
    assert severity(30.0, QUANTILES) == pytest.approx(99.45)
    assert severity(1000.0, QUANTILES) == pytest.approx(99.9)
    assert severity(float("nan"), QUANTILES) is None
    assert severity(3.0, {}) is None
    assert severity_text(severity(1000.0, QUANTILES), QUANTILES) == "above p99.9"
    assert severity_text(severity(7.0, QUANTILES), QUANTILES) == "p70.0"
    assert severity_text(None, QUANTILES) == "\u2014"


# -- parts of a score -------------------------------------------------------------------------
def top_row(**changes) -> pd.Series:
    row = {
        "id": "a1",
        "recon_error": 6.0,
        "kl": 4.0,
        "score": 10.0,  # beta = 1: the KL part is 40% of the score
        "is_anomaly": True,
        "top_feature_1": "fee",
        "top_feature_1_share": 0.5,
        "top_feature_2": "kind",
        "top_feature_2_share": 0.25,
    }
    row.update(changes)
    return pd.Series(row)


def test_parts_of_a_score_add_up_with_kl_as_its_own_share() -> None:
    columns, kl = score_parts(top_row(), [1, 2])
    assert kl == pytest.approx(0.4)
    assert columns == [("fee", pytest.approx(0.3)), ("kind", pytest.approx(0.15))]
    (explained,) = explain_rows(pd.DataFrame([top_row()]))
    assert sum(p.share for p in explained.parts) == pytest.approx(1.0)
    assert [p.kind for p in explained.parts] == ["column", "column", "kl", "rest"]
    assert "40%" in explained.sentence and "combination" in explained.sentence
    _, none = score_parts(top_row(score=0.0), [1, 2])
    assert math.isnan(none)


def test_explanations_show_values_beside_the_training_profile() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame(
        {"fee": rng.normal(10.0, 1.0, 10_000), "kind": ["card"] * 9_995 + ["wire"] * 5}
    )
    profile = DataProfile.from_frame(train, ["fee", "kind"]).to_dict()
    top = pd.DataFrame([top_row(), top_row(id="a2", score=9.0, recon_error=8.0, kl=1.0)])
    values = pd.DataFrame({"fee": [54.6, 10.2], "kind": ["wire", "cash"]})
    expected = pd.DataFrame({"fee": [10.3, 10.1], "kind": ["card", "card"]})
    first, second = explain_rows(top, values, expected, profile, QUANTILES)
    fee, kind = first.parts[:2]
    assert (fee.name, fee.value, fee.expected) == ("fee", "54.6", "10.3")
    median, low, high = np.quantile(train["fee"], [0.5, 0.05, 0.95])
    assert fee.median == f"{median:.4g}"
    assert fee.typical == f"{low:.4g} \u2013 {high:.4g}"
    assert kind.value == "wire" and kind.expected == "card"
    assert kind.typical == "5 of 10,000 training rows (0.05%) (rare)"
    assert second.parts[1].typical == "never seen in training"
    assert (
        first.label == "id = a1" and first.severity == "p90.8"
    )  # 10 lies 1/11 of the way from q0.9 to q0.99


# -- drift ----------------------------------------------------------------------------------
def test_psi_of_known_distributions() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0.0)
    # (0.8 - 0.5) ln(0.8/0.5) + (0.2 - 0.5) ln(0.2/0.5)
    assert psi([1, 1], [4, 1]) == pytest.approx(0.3 * math.log(1.6) + 0.3 * math.log(2.5))
    assert math.isnan(psi([1, 1], [0, 0]))


def profile_and_counter(train: pd.DataFrame) -> DriftCounter:
    return DriftCounter(DataProfile.from_frame(train).to_dict())


def test_drift_is_zero_on_the_same_distribution_and_large_on_a_shift() -> None:
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"x": rng.normal(0, 1, 20_000), "y": rng.normal(0, 1, 20_000)})
    counter = profile_and_counter(train)
    shifted = pd.DataFrame({"x": rng.normal(0, 1, 20_000), "y": rng.normal(1.5, 1, 20_000)})
    for part in np.array_split(np.arange(len(shifted)), 7):  # batch by batch
        counter.add(shifted.iloc[part])
    by_name = {d.column: d for d in counter.result()}
    assert counter.result()[0].column == "y"  # largest first
    assert by_name["x"].psi < 0.01
    assert by_name["y"].psi > 1.0 and by_name["y"].level == "large"
    assert "y" in drift_note(counter.result()) and "x" not in drift_note(counter.result())[:40]
    assert drift_note([by_name["x"]]) is None


def test_drift_of_levels_and_of_the_missing_share() -> None:
    train = pd.DataFrame(
        {
            "kind": ["card"] * 900 + ["wire"] * 99 + ["cash"],
            "fee": [np.nan] * 100 + list(np.linspace(0, 1, 900)),
        }
    )
    counter = profile_and_counter(train)
    now = pd.DataFrame(
        {
            "kind": ["card"] * 500 + ["crypto"] * 300 + ["cash"] * 200,
            "fee": [np.nan] * 400 + list(np.linspace(0, 1, 600)),
        }
    )
    counter.add(now)
    by_name = {d.column: d for d in counter.result()}
    kind, fee = by_name["kind"], by_name["fee"]
    assert kind.unseen_now == pytest.approx(0.3)
    assert kind.rare_now == pytest.approx(0.5)  # crypto (unseen) + cash (1 in 1,000: rare)
    assert kind.rare_train == pytest.approx(0.001)
    assert kind.psi >= PSI_LARGE
    assert fee.missing_train == pytest.approx(0.1) and fee.missing_now == pytest.approx(0.4)
    assert fee.missing_change == pytest.approx(0.3)


# -- history ----------------------------------------------------------------------------------
def run_index(rates: list[float]) -> pd.DataFrame:
    n = len(rates)
    return pd.DataFrame(
        {
            "run_date": pd.date_range("2024-03-01", periods=n).date,
            "run_id": [f"r{i}" for i in range(n)],
            "finished_at": pd.date_range("2024-03-01 06:00", periods=n, tz="UTC"),
            "model_name": "m",
            "model_version": "3",
            "rows_in": 1000,
            "rows_scored": 1000,
            "rows_quarantined": 0,
            "rows_flagged": [int(r * 1000) for r in rates],
            "alert_rate": rates,
            "score_p50": 5.0,
            "score_p90": 9.0,
            "score_p99": 21.0,
            "threshold": 20.0,
        }
    )


def test_history_adds_the_current_run_and_warns_outside_the_band() -> None:
    index = run_index([0.02, 0.021, 0.019, 0.05])
    view = history_view(index, report_data(n_flagged=60))  # 6%: above 2 x 2%
    assert len(view.runs) == 5 and view.runs["current"].tolist() == [False] * 4 + [True]
    assert view.band == pytest.approx((0.01, 0.04))
    assert view.n_outside == 2  # the 5% run and this one
    assert "6.00%" in view.warning and "1 of the 4 earlier runs" in view.warning
    calm = history_view(index, report_data(n_flagged=20))
    assert calm.warning is None
    assert "**History:**" in render_markdown(report_data(n_flagged=60, history=index))
    assert "History" not in render_markdown(report_data(n_flagged=20, history=index))


def test_history_marks_the_current_run_when_the_index_has_it() -> None:
    index = run_index([0.02] * 40)
    data = report_data(links=RunLinks(index_run_id="r39"))
    view = history_view(index, data, max_runs=30)
    assert len(view.runs) == 30 and view.runs["current"].tolist() == [False] * 29 + [True]
    empty = history_view(index.iloc[:0], report_data())
    assert len(empty.runs) == 1 and bool(empty.runs["current"].iloc[0])


def test_metrics_hold_drift_and_history() -> None:
    rng = np.random.default_rng(2)
    counter = profile_and_counter(pd.DataFrame({"a b%": rng.normal(0, 1, 5000)}))
    counter.add(pd.DataFrame({"a b%": rng.normal(3, 1, 5000)}))
    data = report_data(drift=counter.result(), history=run_index([0.02, 0.01, 0.03]))
    metrics = run_metrics(data)
    assert metrics["drift_psi_max"] > PSI_LARGE and metrics["drift_columns_large"] == 1
    assert metrics["drift_psi/a b_"] == metrics["drift_psi_max"]
    assert metrics["history_runs"] == 3 and metrics["alert_rate_in_band"] == 1.0
    assert metrics["history_alert_rate_median"] == pytest.approx(0.02)
    assert metrics["alert_rate_vs_history"] == pytest.approx(1.0)
    assert run_metrics(report_data()) == {}
    assert "drifted strongly" in render_markdown(data)


# -- links ----------------------------------------------------------------------------------
def test_links_only_where_they_can_be_followed() -> None:
    served = RunLinks(
        tracking_uri="http://mlflow:5000/",
        mlflow_run_id="abc",
        mlflow_experiment_id="4",
        model_name="pay ments",
        model_version="7",
        prefect_flow_run_url="http://prefect:4200/runs/flow-run/f1",
    )
    assert served.mlflow_run_url == "http://mlflow:5000/#/experiments/4/runs/abc"
    assert served.model_version_url == "http://mlflow:5000/#/models/pay%20ments/versions/7"
    assert served.prefect_url == "http://prefect:4200/runs/flow-run/f1"
    local = RunLinks(tracking_uri="sqlite:///mlflow.db", mlflow_run_id="abc",
                     mlflow_experiment_id="4", model_name="m", model_version="7")  # fmt: skip
    assert local.mlflow_run_url is None and local.model_version_url is None
    markdown = render_markdown(report_data(links=served))
    assert "[abc](http://mlflow:5000/#/experiments/4/runs/abc)" in markdown
    from flows.reporting.page import render_html

    page = render_html(report_data(links=served, run_id="abc"))
    assert '<a href="http://mlflow:5000/#/experiments/4/runs/abc">abc</a>' in page
    assert '<a href="http://prefect:4200/runs/flow-run/f1">' not in page  # no flow run id
    assert ">pay ments version 7</a>" in page
    plain = render_html(report_data(links=local, run_id="abc"))
    assert ">MLflow run<" not in plain and ">Model version<" not in plain  # shown once, as text
    assert RunLinks(mlflow_run_id="r", tracking_uri="https://m/").mlflow_run_url == (
        "https://m/#/runs/r"
    )


def test_new_sections_escape_text_from_data_and_stay_small() -> None:
    from flows.reporting.explain import explain_rows
    from flows.reporting.page import render_html
    from flows.reporting.sections import MAX_DRIFT_ROWS

    evil = "<script>alert(1)</script>"
    rng = np.random.default_rng(3)
    names = [f"{evil}{i}" for i in range(MAX_DRIFT_ROWS + 7)]
    train = pd.DataFrame({n: rng.normal(0, 1, 500) for n in names})
    counter = profile_and_counter(train)
    counter.add(pd.DataFrame({n: rng.normal(0.5, 1, 500) for n in names}))
    top = pd.DataFrame([top_row(id=evil, top_feature_1=names[0])])
    values = pd.DataFrame({names[0]: [evil], "kind": [evil]})
    data = report_data(
        top_anomalies=top,
        drift=counter.result(),
        explanations=explain_rows(top, values, None, None, QUANTILES),
        history=run_index([0.02]),
        links=RunLinks(mlflow_run_id=evil, tracking_uri="javascript:alert(1)", run_date=evil),
    )
    page = render_html(data)
    assert page.lower().count("<script") == 1 and "javascript:" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "7 more columns drifted less" in page

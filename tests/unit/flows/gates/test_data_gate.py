"""The data gate on real profiles of the demo data: each broken case refused, naming the
column and the figure; data of the same kind passes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flows.config import load_settings
from flows.config.gates import DataGateSettings
from flows.demo_data import make_demo_frames
from flows.gates.data_gate import check_training_data, feature_columns
from vae_core.profile import DataProfile

LIMITS = DataGateSettings()


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    old, new, _ = make_demo_frames(seed=5, n_train=1500, n_score=1500)
    return old, new


@pytest.fixture(scope="module")
def features(frames) -> list[str]:
    cfg = load_settings(files=[], environ={}, overrides={"train": {"key_columns": ["payment_id"]}})
    return feature_columns(frames[0], cfg.train)


@pytest.fixture(scope="module")
def champion(frames, features) -> DataProfile:
    return DataProfile.from_frame(frames[0], features)


def checks(report) -> set[tuple[str, str]]:
    return {(f.column, f.check) for f in report.findings}


def test_the_features_leave_out_keys_and_timestamps(features) -> None:
    assert "payment_id" not in features and "created_at" not in features
    assert {"amount", "fee", "channel", "card_present"} <= set(features)


def test_new_data_of_the_same_kind_passes(frames, features, champion) -> None:
    report = check_training_data(frames[1], features, champion, LIMITS, "v1")
    assert report.passed, report.summary_line()
    assert report.compared_with == "v1"
    assert report.columns["amount"]["psi"] < 0.1
    assert report.columns["channel"]["psi"] < 0.1
    assert "passed" in report.summary_line()


def test_a_third_huge_and_a_third_infinite_is_refused(frames, features, champion) -> None:
    broken = frames[1].copy()
    n = len(broken)
    broken.loc[: n // 3, "amount"] = 1e308
    broken.loc[n // 3 : 2 * n // 3, "amount"] = np.inf
    report = check_training_data(broken, features, champion, LIMITS, "v1")
    assert {("amount", "non_finite"), ("amount", "absurd_magnitude")} <= checks(report)
    line = report.summary_line()
    assert "column 'amount'" in line and "non-finite" in line and "\n" not in line
    assert report.columns["amount"]["non_finite_share"] == pytest.approx(1 / 3, abs=0.01)


def test_a_feature_entirely_missing_is_refused(frames, features, champion) -> None:
    broken = frames[1].assign(fee=np.nan)
    report = check_training_data(broken, features, champion, LIMITS, "v1")
    assert ("fee", "missing") in checks(report)
    assert ("fee", "missing_increase") in checks(report)
    # The first model of a name gets the sanity checks alone: an empty column is left out
    # of the model (the detector warns), and the report notes it.
    first = check_training_data(broken, features, None, LIMITS)
    assert first.passed and first.compared_with is None
    assert any("'fee'" in note and "not modelled" in note for note in first.notes)


def test_the_first_model_is_refused_for_infinite_or_absurd_values(frames, features) -> None:
    broken = frames[1].copy()
    broken.loc[:100, "amount"] = np.inf
    broken.loc[200:300, "fee"] = 1e300
    report = check_training_data(broken, features, None, LIMITS)
    assert checks(report) == {("amount", "non_finite"), ("fee", "absurd_magnitude")}
    assert "with the sanity checks (no champion profile" in report.summary_line()


def test_a_column_times_1e300_is_refused(frames, features, champion) -> None:
    broken = frames[1].assign(distance_km=frames[1]["distance_km"] * 1e300)
    report = check_training_data(broken, features, champion, LIMITS, "v1")
    found = checks(report)
    assert ("distance_km", "absurd_magnitude") in found
    assert ("distance_km", "median_out_of_range") in found
    assert ("distance_km", "psi") in found


def test_moved_constant_absent_and_changed_kind(frames, features, champion) -> None:
    new = frames[1]
    broken = new.assign(
        amount=new["amount"] * 1000,  # moved: finite and modest, but far out of range
        items=3.0,  # constant
        channel=new["channel"].map({"web": 1, "pos_terminal": 2, "mobile_app": 3}),
    ).drop(columns=["fee"])
    report = check_training_data(broken, features, champion, LIMITS, "v1")
    found = checks(report)
    assert {("amount", "median_out_of_range"), ("amount", "psi")} <= found
    assert ("items", "constant") in found
    assert ("fee", "absent") in found
    assert ("channel", "kind_changed") in found
    assert ("amount", "non_finite") not in found


def test_a_level_mix_that_moved_is_refused_by_psi(frames, features, champion) -> None:
    new = frames[1].copy()
    new["merchant_category"] = "travel"
    new.loc[::50, "merchant_category"] = "grocery"
    report = check_training_data(new, features, champion, LIMITS, "v1")
    assert ("merchant_category", "psi") in checks(report)


def test_a_champion_that_was_constant_or_empty_too_is_not_refused(frames, features) -> None:
    old = frames[0].assign(items=3.0, session_seconds=np.nan)
    profile = DataProfile.from_frame(old, features)
    new = frames[1].assign(items=3.0, session_seconds=np.nan)
    report = check_training_data(new, features, profile, LIMITS, "v1")
    assert not {c for c, _ in checks(report)} & {"items", "session_seconds"}


def test_limits_are_settings(frames, features, champion) -> None:
    broken = frames[1].copy()
    broken.loc[:10, "amount"] = np.inf  # under 1% of the rows
    assert check_training_data(broken, features, champion, LIMITS, "v1").passed
    strict = DataGateSettings(max_non_finite_share=0.0)
    assert ("amount", "non_finite") in checks(
        check_training_data(broken, features, champion, strict, "v1")
    )


def test_the_report_is_strict_json_and_markdown(frames, features, champion) -> None:
    broken = frames[1].assign(fee=np.nan)
    report = check_training_data(broken, features, champion, LIMITS, "v1")
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["passed"] is False and data["findings"][0]["column"]
    assert data["columns"]["fee"]["missing_share"] == 1.0
    text = report.to_markdown()
    assert "| fee | missing |" in text and "| amount |" in text


def test_a_champion_without_a_profile_gets_the_sanity_checks_and_a_note(frames, features):
    report = check_training_data(frames[1], features, None, LIMITS, "v7")
    assert report.passed and report.compared_with is None
    assert "the champion (v7) has no training profile" in report.notes
    assert "no champion profile to compare with" in report.summary_line()


def test_a_new_column_is_noted_not_refused(frames, features, champion) -> None:
    new = frames[1].assign(extra=np.nan)
    report = check_training_data(new, [*features, "extra"], champion, LIMITS, "v1")
    assert report.passed
    assert any("not trained on: ['extra']" in note for note in report.notes)
    assert any("'extra'" in note and "not modelled" in note for note in report.notes)


def test_a_boolean_column_with_a_null_has_not_changed_kind(frames, features, champion) -> None:
    new = frames[1].copy()
    new["card_present"] = new["card_present"].astype(object)
    new.loc[3, "card_present"] = None  # how Parquet reads a boolean column with a null
    report = check_training_data(new, features, champion, LIMITS, "v1")
    assert report.passed, report.summary_line()
    assert report.columns["card_present"]["kind"] == "boolean"

"""SensorVAEDetector: window scores per row, contributions by channel and lag, streaming
consistency, the alarm rule and persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from vae_core import SensorVAEDetector, VAEAnomalyDetector
from vae_core.errors import ModelFileError, NotFittedError, TooFewRowsError
from vae_core.sensor import SENSOR_MANIFEST, SensorStream, is_sensor_model, load_detector
from vae_core.sizing import MAX_STEPS
from vae_core.windows import STATUS_OK, STATUS_WARMING_UP

FAST = {"max_epochs": 6, "hidden_sizes": (16, 8), "latent_dim": 2, "random_state": 0}
START = pd.Timestamp("2024-05-01")


def sensor_frame(
    n: int = 240, seed: int = 0, devices: tuple[str, ...] = ("p1", "p2")
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for k, device in enumerate(devices):
        t = np.arange(n)
        phase = np.sin(2 * np.pi * t / 30 + k)
        parts.append(
            pd.DataFrame(
                {
                    "ts": START + pd.to_timedelta(t, unit="s"),
                    "device": device,
                    "pressure": phase + 0.05 * rng.normal(size=n),
                    "flow": 0.5 * phase + 0.05 * rng.normal(size=n),
                    "temp": 20 + 0.05 * rng.normal(size=n),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def make_detector(**kwargs) -> SensorVAEDetector:
    params = {
        "timestamp_column": "ts",
        "entity_columns": ("device",),
        "window_length": 5,
        "detector_params": FAST,
        **kwargs,
    }
    return SensorVAEDetector(**params)


@pytest.fixture(scope="module")
def fitted() -> SensorVAEDetector:
    return make_detector().fit(sensor_frame())


@pytest.fixture(scope="module")
def incoming() -> pd.DataFrame:
    """Later data of both devices, with a pressure spike on p2 at its row 60."""
    frame = sensor_frame(seed=1)
    frame["ts"] += pd.Timedelta(hours=1)
    spike = frame.index[frame["device"] == "p2"][60]
    frame.loc[spike, "pressure"] += 6.0
    return frame.sample(frac=1.0, random_state=0)  # arrival order is not time order


def test_window_scores_keep_the_gaussian_unless_asked(fitted) -> None:
    assert fitted.detector_.numeric_dof is None
    assert VAEAnomalyDetector().numeric_dof == 30.0
    heavy = make_detector(detector_params={**FAST, "numeric_dof": 10.0})
    assert heavy.fit(sensor_frame()).detector_.numeric_dof == 10.0


def test_window_scores_weigh_the_kl_as_the_training_loss_unless_asked(fitted) -> None:
    inner = fitted.detector_
    assert inner.kl_weight == inner.kl_weight_ == inner.beta == fitted.kl_weight_
    frame = fitted.score_frame(sensor_frame(seed=1))
    np.testing.assert_allclose(frame["score"], frame["recon_error"] + frame["kl"])
    np.testing.assert_allclose(fitted.negative_elbo(sensor_frame(seed=1)), frame["score"])
    scores, losses = fitted.scores_and_losses(sensor_frame(seed=1))
    np.testing.assert_array_equal(scores, fitted.decision_function(sensor_frame(seed=1)))
    np.testing.assert_array_equal(losses, fitted.negative_elbo(sensor_frame(seed=1)))
    light = make_detector(detector_params={**FAST, "beta": 0.5}).fit(sensor_frame())
    assert light.detector_.kl_weight_ == 0.5
    fitted_weight = make_detector(detector_params={**FAST, "kl_weight": "auto"})
    assert fitted_weight.fit(sensor_frame()).detector_.kl_weight_ >= 1.0


def test_window_models_keep_the_full_step_budget(fitted) -> None:
    """The window fence was chosen on models trained for 2,000 steps."""
    assert fitted.detector_.min_steps == MAX_STEPS > VAEAnomalyDetector().min_steps
    short = make_detector(detector_params={**FAST, "min_steps": 100})
    assert short.fit(sensor_frame()).detector_.min_steps == 100


def test_window_scores_get_the_plain_four_iqr_fence(fitted) -> None:
    """No cap: the training windows' own scores understate new normal data's spread."""
    assert fitted.threshold_.params == {"iqr_factor": 4.0, "iqr_min_alert_rate": 0.0}
    assert fitted.threshold_.note == ""  # a capped fence says so, and records the fence
    assert VAEAnomalyDetector().iqr_min_alert_rate == 0.05  # the tabular default


def test_every_row_gets_a_status_and_full_windows_get_a_score(fitted, incoming) -> None:
    scores = fitted.score_frame(incoming)
    assert scores.index.equals(incoming.index)
    assert list(scores.columns[:3]) == ["device", "ts", "window_status"]
    warming = scores["window_status"] == STATUS_WARMING_UP
    assert warming.sum() == 2 * 4  # length - 1 rows per device
    assert scores.loc[warming, "score"].isna().all()
    assert not scores.loc[warming, "is_anomaly"].any()
    assert scores.loc[~warming, "score"].notna().all()
    assert fitted.spec_.channels == ("pressure", "flow", "temp")
    assert fitted.fit_status_counts_ == {STATUS_OK: 2 * 236, STATUS_WARMING_UP: 8}


def test_a_spike_scores_highest_and_its_contribution_names_channel_and_lag(
    fitted, incoming
) -> None:
    scores = fitted.score_frame(incoming)
    p2 = scores[scores["device"] == "p2"].sort_values("ts")
    top = p2["score"].idxmax()
    spike_time = p2["ts"].iloc[60]
    # The spike is in the five windows that end at it and after it.
    assert spike_time <= scores.loc[top, "ts"] <= spike_time + pd.Timedelta(seconds=4)
    lag = int((scores.loc[top, "ts"] - spike_time).total_seconds())
    expected = "pressure@t" if lag == 0 else f"pressure@t-{lag}"
    assert scores.loc[top, "top_feature_1"] in {expected, f"pressure.diff{expected[8:]}"}
    assert scores.loc[top, "is_anomaly"]


@pytest.mark.parametrize("alarm", [(1, 1), (2, 3)])
def test_scores_streamed_in_pieces_equal_one_piece_scores(incoming, alarm) -> None:
    """Split the series at several points (mid-window, between devices, one-row batches):
    every score and flag equals that of scoring it whole."""
    detector = make_detector(alarm_k=alarm[0], alarm_n=alarm[1]).fit(sensor_frame())
    ordered = incoming.sort_values("ts", kind="stable")
    whole = detector.score_frame(ordered)
    for cuts in ([0, 3, 4, 5, 200, 201, len(ordered)], [0, 137, 300, len(ordered)]):
        stream = detector.stream()
        pieces = [
            stream.score(ordered.iloc[start:stop]).to_frame()
            for start, stop in zip(cuts[:-1], cuts[1:], strict=True)
        ]
        pd.testing.assert_frame_equal(pd.concat(pieces), whole)


def test_alarm_rule_needs_k_of_the_last_n_rows(fitted, incoming) -> None:
    strict = make_detector(alarm_k=3, alarm_n=3)
    strict.detector_, strict.spec_ = fitted.detector_, fitted.spec_
    strict.channel_dtypes_ = fitted.channel_dtypes_
    scores = strict.score_frame(incoming.sort_values(["device", "ts"]))
    for _, part in scores.groupby("device"):
        # Over each device's scored rows in time order: warming-up rows neither count nor
        # get flagged.
        ok = (part["window_status"] == STATUS_OK).to_numpy()
        above = part["above_threshold"].to_numpy()[ok].astype(int)
        rule = np.convolve(above, np.ones(3, dtype=int))[: len(above)] >= 3
        assert (part["is_anomaly"].to_numpy()[ok] == rule).all()
        assert not part["is_anomaly"].to_numpy()[~ok].any()
    assert 0 < scores["is_anomaly"].sum() < scores["above_threshold"].sum()


def test_save_and_load_give_the_same_scores(fitted, incoming, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "model")
    assert is_sensor_model(path) and (path / "vae" / "weights.safetensors").is_file()
    manifest = json.loads((path / SENSOR_MANIFEST).read_text())
    assert manifest["spec"]["length"] == 5
    loaded = load_detector(path)
    assert isinstance(loaded, SensorVAEDetector)
    pd.testing.assert_frame_equal(loaded.score_frame(incoming), fitted.score_frame(incoming))
    assert isinstance(load_detector(path / "vae"), VAEAnomalyDetector)
    with pytest.raises(FileExistsError):
        fitted.save(path)
    with pytest.raises(ModelFileError, match=SENSOR_MANIFEST):
        SensorVAEDetector.load(tmp_path)


def test_a_manifest_as_older_versions_wrote_it_loads(fitted, incoming, tmp_path: Path) -> None:
    """Parameters as JSON lists and no model kind: the model loads, scores the same, and
    its parameters train the same model again."""
    path = fitted.save(tmp_path / "model")
    manifest_path = path / SENSOR_MANIFEST
    manifest = json.loads(manifest_path.read_text())
    assert manifest["params"]["entity_columns"] == ["device"]
    assert manifest["params"]["detector_params"] == {**FAST, "hidden_sizes": [16, 8]}
    del manifest["kind"]
    manifest_path.write_text(json.dumps(manifest))
    (path / "files.json").unlink()  # older versions wrote no file list
    loaded = SensorVAEDetector.load(path)
    pd.testing.assert_frame_equal(loaded.score_frame(incoming), fitted.score_frame(incoming))
    retrained = clone(loaded).fit(sensor_frame())
    np.testing.assert_array_equal(
        retrained.decision_function(incoming), fitted.decision_function(incoming)
    )


# -- scikit-learn estimator: parameters, clone, training-row outputs -----------------------


def test_parameters_are_stored_as_given_and_round_trip_through_clone() -> None:
    entities, inner = ["device"], {"random_state": 3}
    detector = SensorVAEDetector(timestamp_column="ts", entity_columns=entities)
    detector.set_params(detector_params=inner, window_length=7)
    params = detector.get_params(deep=True)
    assert params["entity_columns"] is entities and params["detector_params"] is inner
    assert params["channels"] is None and params["window_length"] == 7
    assert detector.get_params(deep=False) == params  # no estimator among the parameters
    fresh = clone(detector)
    assert fresh is not detector and fresh.get_params() == params
    assert fresh.detector_params is not inner  # clone copies what it cannot clone
    assert not hasattr(fresh, "detector_")
    assert SensorVAEDetector(**params).get_params() == params
    assert repr(detector).startswith("SensorVAEDetector(")
    with pytest.raises(ValueError, match="Invalid parameter"):
        detector.set_params(window=3)


def test_clone_of_a_fitted_detector_is_unfitted_and_trains_the_same_model(fitted) -> None:
    fresh = clone(fitted)
    assert fresh.get_params() == fitted.get_params()
    with pytest.raises(NotFittedError):
        fresh.predict(sensor_frame())
    train = sensor_frame()
    np.testing.assert_array_equal(
        fresh.fit(train).decision_scores_, fitted.decision_scores_, strict=True
    )


@pytest.mark.parametrize("alarm", [(1, 1), (2, 3)])
def test_training_rows_get_decision_scores_and_labels(alarm) -> None:
    train = sensor_frame()
    train.loc[train.index[train["device"] == "p1"][100], "pressure"] += 6.0
    train = train.sample(frac=1.0, random_state=1)  # any row order
    detector = make_detector(alarm_k=alarm[0], alarm_n=alarm[1]).fit(train)
    scores = detector.decision_function(train)
    np.testing.assert_array_equal(detector.decision_scores_, scores)  # NaN where NaN
    np.testing.assert_array_equal(detector.labels_, detector.predict(train))
    assert detector.labels_.dtype == np.int64 and detector.labels_.shape == (len(train),)
    assert np.isnan(scores).sum() == 2 * 4  # the warming-up rows: no window, no score
    assert detector.labels_[np.isnan(scores)].sum() == 0
    above = detector.decision_scores_ > detector.threshold_.value
    assert detector.labels_.sum() > 0  # the windows over the spike
    if alarm == (1, 1):
        np.testing.assert_array_equal(detector.labels_, above.astype(np.int64))
    else:
        # 2 of 3: the first row of the run above is not flagged yet, the row after it is.
        assert not np.array_equal(detector.labels_, above.astype(np.int64))


def test_raw_schema_names_channels_keys_and_timestamp(fitted) -> None:
    schema = fitted.schema_
    assert schema.feature_names == ["pressure", "flow", "temp"]
    assert schema.key_columns == ("device",) and schema.ignored_columns == ("ts",)


def test_errors_before_fit_and_on_too_short_series() -> None:
    with pytest.raises(NotFittedError):
        make_detector().score_frame(sensor_frame())
    with pytest.raises(TooFewRowsError, match="full windows"):
        make_detector(window_length=10).fit(sensor_frame(n=12))
    with pytest.raises(ValueError, match="alarm_k"):
        make_detector(alarm_k=3, alarm_n=2).fit(sensor_frame())
    assert isinstance(make_detector().fit(sensor_frame(n=40)).stream(), SensorStream)


def test_an_array_is_refused_naming_the_frame_a_sensor_model_needs(fitted) -> None:
    from scipy import sparse

    from vae_core.errors import SchemaError

    detector = SensorVAEDetector(timestamp_column="ts")
    with pytest.raises(
        SchemaError, match=r"fit\(\) takes a DataFrame with the timestamp column 'ts'"
    ):
        detector.fit(np.zeros((50, 3)))
    with pytest.raises(SchemaError, match="sparse input is not supported"):
        detector.fit(sparse.csr_matrix(np.zeros((50, 3))))
    with pytest.raises(SchemaError, match="scoring takes a DataFrame"):
        fitted.score_frame(np.zeros((5, 3)))

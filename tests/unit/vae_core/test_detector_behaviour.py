"""End-to-end behaviour of ``VAEAnomalyDetector`` on synthetic mixed-type data."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import OutlierMixin, clone
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from vae_core import VAEAnomalyDetector
from vae_core.persistence import MANIFEST_NAME
from vae_core.scoring import score_encoded
from vae_core.training import EpochRecord

SCORE_COLUMNS = [
    "recon_error",
    "kl",
    "score",
    "is_anomaly",
    "top_feature_1",
    "top_feature_1_share",
    "top_feature_2",
    "top_feature_2_share",
    "top_feature_3",
    "top_feature_3_share",
]


# -- detection quality -------------------------------------------------------------------


def test_injected_anomalies_rank_first(fitted_detector, mixed_data):
    frame, labels = mixed_data
    scores = fitted_detector.decision_function(frame)
    assert roc_auc_score(labels, scores) > 0.95


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_each_kind_of_anomaly_is_detected(make_frame, kind):
    """Broken sensor correlations and contradicting categories are each found on their own."""
    frame, labels = make_frame(n_rows=1000, seed=11, anomaly_kinds=(kind,))
    detector = VAEAnomalyDetector(max_epochs=40, key_columns=("id",), random_state=1)
    scores = detector.fit(frame).decision_function(frame)
    assert roc_auc_score(labels, scores) > 0.95


def test_top_feature_names_the_broken_sensor(fitted_detector, mixed_data):
    frame, _ = mixed_data
    row = frame.iloc[[5]].copy()
    assert not row[["sensor_2", "cat", "grade"]].isna().any(axis=None)
    before = fitted_detector.score_frame(row)
    row["sensor_2"] = row["sensor_2"] + 8.0  # far off the plane the other sensors span
    after = fitted_detector.score_frame(row)
    assert after["score"].iloc[0] > before["score"].iloc[0] + 5.0
    assert after["top_feature_1"].iloc[0] == "sensor_2"
    assert after["top_feature_1_share"].iloc[0] > 0.5


def test_unseen_category_raises_score_and_is_named(fitted_detector, mixed_data):
    frame, _ = mixed_data
    rows = frame[frame["cat"].notna()].iloc[:25].copy()
    known = fitted_detector.score_frame(rows)
    rows["cat"] = "a direction never seen in training"
    unseen = fitted_detector.score_frame(rows)
    assert (unseen["score"].to_numpy() > known["score"].to_numpy()).all()
    assert (unseen["top_feature_1"] == "cat").all()


def test_extreme_and_infinite_values_score_finite_and_high(fitted_detector, mixed_data):
    frame, _ = mixed_data
    rows = frame[frame["sensor_0"].notna()].iloc[:5].copy()
    baseline = fitted_detector.decision_function(rows)
    rows["sensor_0"] = [np.inf, -np.inf, 1e308, -1e308, 1e6]
    scores = fitted_detector.decision_function(rows)
    assert np.isfinite(scores).all()
    assert (scores > baseline).all()
    assert (fitted_detector.score_frame(rows)["top_feature_1"] == "sensor_0").all()


# -- scikit-learn contract ---------------------------------------------------------------


def test_fit_returns_self_and_only_adds_underscore_attributes(small_frame, fast_params):
    detector = VAEAnomalyDetector(key_columns=["id"], **fast_params)
    params_before = detector.get_params(deep=False)
    attributes_before = set(vars(detector))
    assert detector.fit(small_frame) is detector
    added = {name for name in set(vars(detector)) - attributes_before if not name.startswith("_")}
    assert added, "fit stored no fitted attributes"
    assert all(name.endswith("_") for name in added), sorted(added)
    assert {"threshold_", "schema_", "n_features_in_", "decision_scores_", "labels_"} <= added
    params_after = detector.get_params(deep=False)
    assert params_after == params_before
    assert params_after["key_columns"] == ["id"]  # not converted to a tuple in place
    check_is_fitted(detector)


def test_unfitted_detector_has_no_fitted_attributes():
    detector = VAEAnomalyDetector()
    assert not [name for name in vars(detector) if name.endswith("_")]


def test_clone_and_params_round_trip(fitted_detector):
    fresh = clone(fitted_detector)
    assert fresh is not fitted_detector
    assert fresh.get_params() == fitted_detector.get_params()
    assert not hasattr(fresh, "threshold_")
    returned = fresh.set_params(beta=0.5, threshold_method="fpr", hidden_sizes=(8, 4))
    assert returned is fresh
    params = fresh.get_params()
    assert params["beta"] == 0.5
    assert params["threshold_method"] == "fpr"
    assert params["hidden_sizes"] == (8, 4)
    rebuilt = VAEAnomalyDetector(**params)
    assert rebuilt.get_params() == params
    assert fitted_detector.get_params()["beta"] == 1.0  # the original is untouched


def test_n_features_and_feature_names(fitted_detector):
    assert fitted_detector.n_features_in_ == 9
    assert list(fitted_detector.feature_names_in_) == [
        *(f"sensor_{j}" for j in range(6)),
        "cat",
        "grade",
        "flag",
    ]


# -- inputs fit accepts ------------------------------------------------------------------


def test_fit_on_mixed_frame_infers_the_contract(fitted_detector):
    schema = fitted_detector.schema_
    kinds = {c.name: (c.kind, c.dtype) for c in schema.columns}
    assert all(kinds[f"sensor_{j}"] == ("numeric", "float64") for j in range(6))
    assert kinds["cat"][0] == "categorical"
    assert kinds["grade"] == ("categorical", "category")
    assert kinds["flag"] == ("categorical", "bool")
    assert schema.ignored_columns == ("ts",)  # datetimes are carried, not modelled
    assert schema.key_columns == ("id",)
    assert "id" not in schema.feature_names and "ts" not in schema.feature_names
    layout = fitted_detector.preprocessor_.layout
    # NaN was sprinkled over sensors, cat and grade, never over flag.
    assert set(layout.missing_columns) == {*(f"sensor_{j}" for j in range(6)), "cat", "grade"}


def test_fit_on_numpy_array(array_detector, array_data):
    assert array_detector.schema_.from_array
    assert array_detector.schema_.feature_names == [f"x{j}" for j in range(5)]
    assert array_detector.n_features_in_ == 5
    scores = array_detector.decision_function(array_data)
    assert scores.shape == (len(array_data),)
    assert np.isfinite(scores).all()
    # the same values as a DataFrame with the generated names score the same
    named = pd.DataFrame(array_data, columns=[f"x{j}" for j in range(5)])
    np.testing.assert_array_equal(array_detector.decision_function(named), scores)


def test_fit_on_numpy_array_with_nan(array_data, fast_params):
    data = array_data.copy()
    data[::7, 1] = np.nan
    data[3, :] = np.nan  # a row with nothing observed
    detector = VAEAnomalyDetector(**fast_params).fit(data)
    assert detector.preprocessor_.layout.missing_columns == ("x0", "x1", "x2", "x3", "x4")
    assert np.isfinite(detector.decision_function(data)).all()


def test_fit_on_object_array_keeps_numeric_columns_numeric(fast_params):
    """A mixed-type 2-D array has dtype object; its float columns are still numbers.

    Treated as categorical, a float column has (almost) every value as its own rare level,
    so all its information is silently lost.
    """
    rng = np.random.default_rng(0)
    data = np.empty((200, 3), dtype=object)
    data[:, 0] = rng.normal(size=200)
    data[:, 1] = rng.normal(size=200)
    data[:, 2] = rng.choice(["a", "b"], 200)
    detector = VAEAnomalyDetector(**fast_params).fit(data)
    kinds = {c.name: c.kind for c in detector.schema_.columns}
    assert kinds == {"x0": "numeric", "x1": "numeric", "x2": "categorical"}


def test_fit_accepts_nan_in_every_column_kind(fast_params):
    rng = np.random.default_rng(4)
    n = 200
    frame = pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "count": pd.array(rng.integers(0, 20, n), dtype="Int64"),
            "ratio": pd.array(rng.random(n), dtype="Float64"),
            "text": pd.Series(rng.choice(["a", "b", "c"], n), dtype="str"),
            "level": pd.Categorical(rng.choice(["lo", "hi"], n)),
            "ok": pd.Series(rng.random(n) > 0.5, dtype=object),
            "nullable_ok": pd.array(rng.random(n) > 0.5, dtype="boolean"),
            "when": pd.date_range("2020-01-01", periods=n, freq="h"),
        }
    )
    for position, name in enumerate(frame.columns):
        frame.loc[position * 3, name] = None
    detector = VAEAnomalyDetector(**fast_params).fit(frame)
    kinds = {c.name: c.kind for c in detector.schema_.columns}
    assert kinds == {
        "num": "numeric",
        "count": "numeric",
        "ratio": "numeric",
        "text": "categorical",
        "level": "categorical",
        "ok": "categorical",
        "nullable_ok": "categorical",
    }
    assert detector.schema_.ignored_columns == ("when",)
    assert set(detector.preprocessor_.layout.missing_columns) == set(kinds)
    scores = detector.decision_function(frame)
    assert np.isfinite(scores).all()


def test_key_columns_are_carried_not_modelled(small_frame, fast_params):
    detector = VAEAnomalyDetector(key_columns=("id",), **fast_params).fit(small_frame)
    assert "id" not in detector.schema_.feature_names
    scores = detector.decision_function(small_frame)
    renumbered = small_frame.assign(id=small_frame["id"] * 1000 + 7)
    np.testing.assert_array_equal(detector.decision_function(renumbered), scores)
    # keys and ignored columns are not required at scoring time
    np.testing.assert_array_equal(
        detector.decision_function(small_frame.drop(columns=["id", "ts"])), scores
    )


def test_fit_on_clean_numeric_array_emits_no_warnings(array_data, fast_params):
    """NaN-free, all-numeric data is the most common input: fitting it must be silent."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        VAEAnomalyDetector(**fast_params).fit(array_data)
    assert [str(w.message) for w in caught] == []


# -- score_frame, decision_function, predict ---------------------------------------------


def test_score_frame_columns_index_and_identities(fitted_detector, mixed_data):
    frame, _ = mixed_data
    shuffled = frame.sample(frac=0.3, random_state=0)
    shuffled.index = [f"row-{i}" for i in shuffled.index]
    result = fitted_detector.score_frame(shuffled)
    assert list(result.columns) == SCORE_COLUMNS
    assert result.index.equals(shuffled.index)
    np.testing.assert_allclose(
        result["score"],
        result["recon_error"] + fitted_detector.kl_weight_ * result["kl"],
        rtol=1e-12,
    )
    assert (result["recon_error"] >= 0).all() and (result["kl"] >= 0).all()
    shares = result[[f"top_feature_{k}_share" for k in (1, 2, 3)]].to_numpy()
    assert ((shares >= 0) & (shares <= 1)).all()
    assert (shares.sum(axis=1) <= 1 + 1e-9).all()
    assert (np.diff(shares, axis=1) <= 1e-12).all()  # ranked by share
    names = result[[f"top_feature_{k}" for k in (1, 2, 3)]].to_numpy()
    assert set(names.ravel()) <= set(fitted_detector.feature_names_in_)
    assert all(len(set(row)) == 3 for row in names)
    # score_frame and decision_function agree row for row
    np.testing.assert_array_equal(
        result["score"].to_numpy(), fitted_detector.decision_function(shuffled)
    )


def test_score_frame_is_encode_then_score_arrays_then_to_frame(fitted_detector, mixed_data):
    """The stages a pipeline runs in separate threads give exactly ``score_frame``."""
    from vae_core.scoring import to_frame

    frame, _ = mixed_data
    encoded = fitted_detector.encode(frame, source="input")
    staged = to_frame(
        fitted_detector.score_arrays(encoded), fitted_detector.threshold_.value, frame.index
    )
    pd.testing.assert_frame_equal(staged, fitted_detector.score_frame(frame))


def test_score_uses_beta_as_the_kl_weight_when_asked(small_frame, fast_params):
    detector = VAEAnomalyDetector(beta=0.25, kl_weight=0.25, **fast_params).fit(small_frame)
    result = detector.score_frame(small_frame)
    np.testing.assert_allclose(
        result["score"], result["recon_error"] + 0.25 * result["kl"], rtol=1e-12
    )
    np.testing.assert_allclose(detector.negative_elbo(small_frame), result["score"])


def test_predict_is_consistent_with_threshold(fitted_detector, mixed_data):
    frame, _ = mixed_data
    predictions = fitted_detector.predict(frame)
    scores = fitted_detector.decision_function(frame)
    assert predictions.dtype.kind == "i"
    assert set(np.unique(predictions)) <= {0, 1}
    np.testing.assert_array_equal(predictions, (scores > fitted_detector.threshold_.value))
    np.testing.assert_array_equal(
        fitted_detector.score_frame(frame)["is_anomaly"].to_numpy(), predictions.astype(bool)
    )
    np.testing.assert_array_equal(fitted_detector.score_samples(frame), -scores)


def test_decision_function_is_deterministic(fitted_detector, mixed_data):
    frame, _ = mixed_data
    first = fitted_detector.decision_function(frame)
    second = fitted_detector.decision_function(frame)
    np.testing.assert_array_equal(first, second)
    # a row's score does not depend on which other rows are scored with it
    np.testing.assert_allclose(
        fitted_detector.decision_function(frame.iloc[100:110]), first[100:110], rtol=1e-5
    )


def test_scoring_zero_rows(fitted_detector, mixed_data):
    frame, _ = mixed_data
    empty = frame.iloc[:0]
    assert fitted_detector.decision_function(empty).shape == (0,)
    result = fitted_detector.score_frame(empty)
    assert list(result.columns) == SCORE_COLUMNS
    assert len(result) == 0


def test_scoring_does_not_modify_input(fitted_detector, mixed_data):
    frame, _ = mixed_data
    copy = frame.copy(deep=True)
    fitted_detector.score_frame(frame)
    pd.testing.assert_frame_equal(frame, copy)


def test_fit_predict_matches_fit_then_predict(small_frame, fast_params):
    flagged = VAEAnomalyDetector(**fast_params).fit_predict(small_frame)
    again = VAEAnomalyDetector(**fast_params).fit(small_frame).predict(small_frame)
    np.testing.assert_array_equal(flagged, again)


# -- PyOD's convention: training-row scores and labels -----------------------------------


def _check_training_outputs(detector: VAEAnomalyDetector, frame: pd.DataFrame) -> None:
    # Bit for bit: decision_scores_ is the training rows' decision_function, not an
    # approximation of it.
    np.testing.assert_array_equal(detector.decision_scores_, detector.decision_function(frame))
    np.testing.assert_array_equal(detector.labels_, detector.predict(frame))
    assert detector.labels_.dtype == np.int64
    np.testing.assert_array_equal(
        detector.labels_, (detector.decision_scores_ > detector.threshold_.value).astype(int)
    )
    assert 0 < detector.labels_.sum() < len(frame)


def test_training_outputs_reuse_the_reference_scores_when_they_cover_every_row(
    small_frame, fast_params
):
    detector = VAEAnomalyDetector(**fast_params).fit(small_frame)
    assert detector.threshold_.n_reference == len(small_frame)  # 60 held out: too few
    _check_training_outputs(detector, small_frame)


def test_training_outputs_score_every_row_when_the_reference_is_held_out(
    fitted_detector, mixed_data
):
    frame, labels = mixed_data
    assert fitted_detector.threshold_.n_reference < len(frame)  # 225 held-out rows
    _check_training_outputs(fitted_detector, frame)
    # PyOD's direction: the injected anomalies score higher and are labelled 1.
    assert fitted_detector.labels_[labels == 1].mean() > 0.5
    assert fitted_detector.labels_[labels == 0].mean() < 0.1


def test_scoring_draws_no_random_numbers(fitted_detector, mixed_data):
    """Scoring the training rows in fit must leave the random streams as they were."""
    frame, _ = mixed_data
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    fitted_detector.decision_function(frame)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1])


def test_outputs_follow_pyod_conventions_as_a_pyod_detector_does(small_frame, fast_params):
    """Against PyOD's own IsolationForest: the same methods, attributes and directions."""
    iforest = pytest.importorskip("pyod.models.iforest")
    numeric = small_frame[[f"sensor_{j}" for j in range(6)]].fillna(0.0).to_numpy()
    far = np.vstack([numeric, np.full((1, 6), 25.0)])  # one row far from all others
    ours = VAEAnomalyDetector(**fast_params).fit(far)
    pyod = iforest.IForest(random_state=0).fit(far)
    for detector in (ours, pyod):
        assert detector.decision_scores_.shape == detector.labels_.shape == (len(far),)
        assert set(np.unique(detector.labels_)) == {0, 1}
        assert detector.decision_scores_.argmax() == len(far) - 1  # higher is more abnormal
        assert detector.labels_[-1] == 1 == detector.predict(far[-1:])[0]
    assert not isinstance(ours, OutlierMixin)
    assert (ours.predict(far) != -1).all()


# -- reproducibility and persistence -----------------------------------------------------


def test_same_seed_same_scores_different_seed_different_scores(small_frame, fast_params):
    first = VAEAnomalyDetector(**fast_params).fit(small_frame).decision_function(small_frame)
    second = VAEAnomalyDetector(**fast_params).fit(small_frame).decision_function(small_frame)
    np.testing.assert_array_equal(first, second)
    other_params = {**fast_params, "random_state": 1}
    other = VAEAnomalyDetector(**other_params).fit(small_frame).decision_function(small_frame)
    assert not np.allclose(first, other)


def test_random_state_none_draws_and_records_a_seed(array_data, fast_params):
    params = {**fast_params, "random_state": None, "max_epochs": 2}
    detector = VAEAnomalyDetector(**params).fit(array_data)
    assert isinstance(detector.random_state_, int)
    assert detector.random_state is None
    replay = VAEAnomalyDetector(**{**params, "random_state": detector.random_state_})
    np.testing.assert_array_equal(
        replay.fit(array_data).decision_function(array_data),
        detector.decision_function(array_data),
    )


def test_save_load_gives_bit_identical_scores(fitted_detector, mixed_data, tmp_path):
    frame, _ = mixed_data
    path = fitted_detector.save(tmp_path / "model")
    loaded = VAEAnomalyDetector.load(path)
    np.testing.assert_array_equal(
        loaded.decision_function(frame), fitted_detector.decision_function(frame)
    )
    pd.testing.assert_frame_equal(
        loaded.score_frame(frame), fitted_detector.score_frame(frame), check_exact=True
    )
    np.testing.assert_array_equal(loaded.predict(frame), fitted_detector.predict(frame))
    assert loaded.threshold_ == fitted_detector.threshold_
    assert loaded.schema_ == fitted_detector.schema_
    assert loaded.get_params() == fitted_detector.get_params()
    assert loaded.random_state_ == fitted_detector.random_state_
    check_is_fitted(loaded)


def test_model_saved_before_heavy_tailed_scoring_scores_as_it_was_thresholded(
    fitted_detector, mixed_data, tmp_path
):
    """A manifest without numeric_dof or level counts loads with the Gaussian, no rarity,
    without min_steps with the fixed 2,000-step budget it was trained with, and without a
    KL weight scores with beta."""
    frame, _ = mixed_data
    path = fitted_detector.save(tmp_path / "model")
    manifest_path = path / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    del manifest["params"]["numeric_dof"]
    del manifest["params"]["min_steps"]
    del manifest["params"]["kl_weight"], manifest["kl_weight_"]
    for column in manifest["preprocessing"]["categorical"]:
        column.pop("counts", None)
    manifest_path.write_text(json.dumps(manifest))
    (path / "files.json").unlink()  # older versions wrote no file list
    loaded = VAEAnomalyDetector.load(path)
    assert loaded.numeric_dof is None
    assert loaded.min_steps == 2000
    assert loaded.kl_weight == loaded.kl_weight_ == fitted_detector.beta
    layout = loaded.preprocessor_.layout
    assert layout.category_rarity == ()
    encoded = fitted_detector.preprocessor_.transform(frame)
    expected = score_encoded(
        fitted_detector.models_, encoded, layout, fitted_detector.beta, numeric_dof=None
    ).score
    np.testing.assert_allclose(loaded.decision_function(frame), expected, rtol=1e-6)
    assert fitted_detector.numeric_dof == 30.0
    assert not np.allclose(fitted_detector.decision_function(frame), expected)


def test_loaded_model_can_be_saved_again(fitted_detector, mixed_data, tmp_path):
    frame, _ = mixed_data
    loaded = VAEAnomalyDetector.load(fitted_detector.save(tmp_path / "first"))
    reloaded = VAEAnomalyDetector.load(loaded.save(tmp_path / "second"))
    np.testing.assert_array_equal(
        reloaded.decision_function(frame), fitted_detector.decision_function(frame)
    )


# -- training options --------------------------------------------------------------------


def test_epoch_callback_is_called_once_per_epoch(small_frame, fast_params):
    records: list[EpochRecord] = []
    detector = VAEAnomalyDetector(**fast_params)
    detector.fit(small_frame, epoch_callback=records.append)
    history = detector.training_results_[0].history
    assert len(records) == len(history) >= 1
    assert [r.epoch for r in records] == list(range(len(records)))
    assert all(r.member == 0 for r in records)
    for record in records:
        assert math.isfinite(record.train_loss)
        assert math.isfinite(record.val_loss)
        assert record.best_val_loss <= record.val_loss
        assert record.seconds >= 0
    assert records == history


def test_two_model_ensemble(small_frame, fast_params, tmp_path):
    records: list[EpochRecord] = []
    detector = VAEAnomalyDetector(n_models=2, **fast_params)
    detector.fit(small_frame, epoch_callback=records.append)
    assert len(detector.models_) == 2
    assert {r.member for r in records} == {0, 1}
    assert len(detector.training_results_) == 2
    weights = [m.state_dict()["to_latent.weight"] for m in detector.models_]
    assert not np.array_equal(weights[0].numpy(), weights[1].numpy())  # different seeds

    encoded = detector.preprocessor_.transform(small_frame)
    layout = detector.preprocessor_.layout
    members = [
        score_encoded([m], encoded, layout, detector.kl_weight_, numeric_dof=detector.numeric_dof)
        for m in detector.models_
    ]
    ensemble = detector.decision_function(small_frame)
    np.testing.assert_allclose(ensemble, (members[0].score + members[1].score) / 2, rtol=1e-6)

    loaded = VAEAnomalyDetector.load(detector.save(tmp_path / "ensemble"))
    assert len(loaded.models_) == 2
    np.testing.assert_array_equal(loaded.decision_function(small_frame), ensemble)


@pytest.mark.parametrize("method", ["contamination", "fpr", "pot"])
def test_each_threshold_method(method, small_frame, fast_params):
    params = {**fast_params, "contamination": 0.1, "target_fpr": 0.05, "pot_risk": 0.02}
    detector = VAEAnomalyDetector(threshold_method=method, **params).fit(small_frame)
    threshold = detector.threshold_
    assert threshold.method == method
    assert math.isfinite(threshold.value)
    assert threshold.n_reference >= 50
    flagged = detector.predict(small_frame).mean()
    if method == "contamination":
        assert threshold.params["contamination"] == 0.1
        assert abs(threshold.expected_alert_rate - 0.1) <= 1.0 / threshold.n_reference + 1e-9
        assert 0.05 <= flagged <= 0.2
    elif method == "fpr":
        assert threshold.params["target_fpr"] == 0.05
        assert abs(threshold.expected_alert_rate - 0.05) <= 1.0 / threshold.n_reference + 1e-9
        assert 0.02 <= flagged <= 0.1
    else:
        assert threshold.params["pot_risk"] == 0.02
        assert threshold.value >= threshold.params["initial"]
        assert flagged <= 0.1
    assert threshold.reference_quantiles["q0.5"] < threshold.value


def test_trim_fraction_zero(small_frame, fast_params):
    detector = VAEAnomalyDetector(trim_fraction=0.0, **fast_params).fit(small_frame)
    assert np.isfinite(detector.decision_function(small_frame)).all()
    trimmed = VAEAnomalyDetector(trim_fraction=0.2, **fast_params).fit(small_frame)
    assert not np.array_equal(
        trimmed.decision_function(small_frame), detector.decision_function(small_frame)
    )


def test_explicit_sizes_are_used(small_frame):
    detector = VAEAnomalyDetector(
        hidden_sizes=(12, 6),
        latent_dim=3,
        max_epochs=3,
        batch_size=32,
        patience=100,
        random_state=0,
    ).fit(small_frame)
    assert detector.architecture_.hidden_sizes == (12, 6)
    assert detector.architecture_.latent_dim == 3
    assert len(detector.training_results_[0].history) == 3
    assert detector.models_[0].to_latent.out_features == 2 * 3  # mean and log-variance


def test_early_stopping_ends_training_before_max_epochs(small_frame):
    detector = VAEAnomalyDetector(
        hidden_sizes=(16, 8), latent_dim=2, max_epochs=500, patience=2, random_state=0
    ).fit(small_frame)
    result = detector.training_results_[0]
    assert result.stopped_early
    assert len(result.history) < 500
    assert len(result.history) == result.best_epoch + 2 + 1

"""scikit-learn's own estimator checks on both detectors, and the convention they declare.

Both detectors follow PyOD's convention (``predict`` 0/1, ``decision_function`` higher for
more abnormal rows), so neither claims scikit-learn's outlier-detector type and the outlier
checks, written for -1/+1, are not run. Every check that cannot apply is listed below with
its reason; the run is strict, so a listed check that starts to pass fails the test and
the entry has to go.
"""

from __future__ import annotations

import pytest
from sklearn.base import OutlierMixin, is_outlier_detector
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from vae_core import SensorVAEDetector, VAEAnomalyDetector

#: Tiny models: the checks fit a few dozen times on arrays of 10-60 rows.
FAST = {
    "max_epochs": 2,
    "hidden_sizes": (4,),
    "latent_dim": 2,
    "batch_size": 32,
    "random_state": 0,
    "device": "cpu",
}

_OWN_MESSAGE = (
    "raises the library's own error (a ValueError subclass) whose message names the "
    "problem in its own words, not the wording this check matches: "
)

#: Each reason says why the check cannot pass as the detector is meant to behave.
TABULAR_EXPECTED_FAILURES: dict[str, str] = {
    "check_n_features_in_after_fitting": _OWN_MESSAGE
    + "'input has 1 columns; the model was fitted on 4', not 'X has 1 features, but ...'",
    "check_estimators_empty_data_messages": _OWN_MESSAGE
    + "'no feature columns left after excluding keys ...', not '0 feature(s) (shape=...)'",
    "check_fit2d_1sample": _OWN_MESSAGE + "fit needs at least 10 rows and says so, not '1 sample'",
    "check_fit2d_predict1d": _OWN_MESSAGE
    + "'reshape a single feature with X.reshape(-1, 1)', not 'Reshape your data'",
    "check_complex_data": "complex columns are not rejected: schema inference counts a "
    "complex dtype as numeric, and the preprocessing keeps only the real part (with "
    "numpy's ComplexWarning)",
}

_NEEDS_A_FRAME = (
    "fit and scoring take a DataFrame: the timestamp and entity columns are found by "
    "name, and each row's window by its entity and time, so a bare array (which this "
    "check passes) is refused with a SchemaError saying so"
)

#: Every check that fits or scores passes a bare array; the rest (clone, repr, tags,
#: parameters, unfitted errors, sparse and 1-d input refused with a ValueError) apply and
#: pass.
SENSOR_EXPECTED_FAILURES: dict[str, str] = {
    name: _NEEDS_A_FRAME
    for name in (
        "check_fit_score_takes_y",
        "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self",
        "check_readonly_memmap_input",
        "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit",
        "check_estimators_dtypes",
        "check_complex_data",
        "check_dtype_object",
        "check_estimators_empty_data_messages",
        "check_pipeline_consistency",
        "check_estimators_pickle",
        "check_f_contiguous_array_estimator",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_fit2d_1sample",
        "check_fit2d_1feature",
        "check_dict_unchanged",
        "check_fit_idempotent",
        "check_fit_check_is_fitted",
        "check_n_features_in",
        "check_fit2d_predict1d",
    )
}


def expected_failures(estimator: object) -> dict[str, str]:
    if isinstance(estimator, SensorVAEDetector):
        return SENSOR_EXPECTED_FAILURES
    return TABULAR_EXPECTED_FAILURES


@parametrize_with_checks(
    [
        VAEAnomalyDetector(**FAST),
        SensorVAEDetector(timestamp_column="x0", window_length=3, detector_params=FAST),
    ],
    expected_failed_checks=expected_failures,
    xfail_strict=True,
)
def test_scikit_learn_estimator_checks(estimator, check) -> None:
    check(estimator)


@pytest.mark.parametrize(
    "estimator",
    [VAEAnomalyDetector(), SensorVAEDetector(timestamp_column="ts")],
    ids=["tabular", "sensor"],
)
def test_neither_detector_claims_scikit_learns_outlier_contract(estimator) -> None:
    assert not isinstance(estimator, OutlierMixin)
    assert not is_outlier_detector(estimator)
    tags = get_tags(estimator)
    assert tags.estimator_type is None
    assert tags.input_tags.allow_nan and tags.input_tags.string
    assert not tags.target_tags.required
    assert not tags.input_tags.sparse


def test_categorical_input_is_declared_where_it_is_modelled() -> None:
    """The tabular detector models categorical columns; the sensor one only numeric
    channels (its string columns are entity keys)."""
    assert get_tags(VAEAnomalyDetector()).input_tags.categorical
    assert not get_tags(SensorVAEDetector(timestamp_column="ts")).input_tags.categorical


def test_every_listed_check_exists() -> None:
    """A misspelt name would silently expect nothing."""
    from sklearn.utils.estimator_checks import check_estimator

    for estimator, listed in (
        (VAEAnomalyDetector(**FAST), TABULAR_EXPECTED_FAILURES),
        (
            SensorVAEDetector(timestamp_column="x0", detector_params=FAST),
            SENSOR_EXPECTED_FAILURES,
        ),
    ):
        results = check_estimator(estimator, on_fail=None, expected_failed_checks=listed)
        ran = {result["check_name"] for result in results}
        assert set(listed) <= ran, sorted(set(listed) - ran)

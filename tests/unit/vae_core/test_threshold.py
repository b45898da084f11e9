"""Label-free thresholds: quantiles by contamination or false-positive rate, and POT."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vae_core import VAEAnomalyDetector
from vae_core.threshold import (
    MAX_CALIBRATION,
    MIN_POT_EXCESSES,
    THRESHOLD_METHODS,
    THRESHOLD_RULES,
    ConformalFDR,
    ContaminationRate,
    FalsePositiveRate,
    IQRFence,
    PeaksOverThreshold,
    Threshold,
    benjamini_hochberg,
    conformal_p_values,
    fit_threshold,
    pot_threshold,
    threshold_rule,
)

DEFAULTS = {
    "contamination": 0.05,
    "target_fpr": 0.01,
    "pot_risk": 0.01,
    "pot_initial_quantile": 0.9,
}


def fit(scores, method, **overrides) -> Threshold:
    return fit_threshold(np.asarray(scores), method, **{**DEFAULTS, **overrides})


@pytest.fixture
def uniform_scores() -> np.ndarray:
    return np.random.default_rng(0).uniform(size=1000)


def test_methods_listed():
    assert set(THRESHOLD_METHODS) == {"iqr", "contamination", "fpr", "pot", "conformal"}


def test_iqr_fence_is_tukeys_far_out_fence_and_ignores_the_tail():
    rng = np.random.default_rng(0)
    bulk = rng.normal(size=2000)
    q1, q3 = np.quantile(bulk, [0.25, 0.75])
    plain = {"iqr_factor": 3.0, "iqr_min_alert_rate": 0.0}
    fitted = fit_threshold(bulk, "iqr", 0.1, 0.01, 0.01, 0.9, **plain)
    assert fitted.value == pytest.approx(q3 + 3.0 * (q3 - q1))
    assert fitted.params == plain and fitted.note == ""
    # 5% of huge anomalies barely move the fence: quartiles are robust
    contaminated = np.concatenate([bulk, np.full(100, 1e6)])
    moved = fit_threshold(contaminated, "iqr", 0.1, 0.01, 0.01, 0.9, **plain).value
    assert moved == pytest.approx(fitted.value, rel=0.1)
    assert fitted.expected_alert_rate < 0.001


def test_iqr_fence_above_the_caps_quantile_is_lowered_to_it():
    """A short-tailed bulk (Gaussian) puts the far-out fence beyond anomalies that sit just
    above it; the cap flags the top ``min_alert_rate`` of the reference instead."""
    bulk = np.random.default_rng(0).normal(size=2000)
    q1, q3 = np.quantile(bulk, [0.25, 0.75])
    capped = IQRFence(min_alert_rate=0.05).fit(bulk)
    assert capped.value == pytest.approx(np.quantile(bulk, 0.95))
    assert capped.expected_alert_rate == pytest.approx(0.05, abs=1 / bulk.size)
    assert capped.params == {
        "iqr_factor": 3.0,
        "iqr_min_alert_rate": 0.05,
        "fence": pytest.approx(q3 + 3.0 * (q3 - q1)),
    }
    assert "capped" in capped.note
    assert IQRFence() == IQRFence(min_alert_rate=0.05)  # the default


def test_iqr_fence_below_the_caps_quantile_is_kept():
    """10% of the reference far out: the fence already flags more than the cap would."""
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(size=1800), rng.normal(50.0, size=200)])
    q1, q3 = np.quantile(scores, [0.25, 0.75])
    fitted = IQRFence(min_alert_rate=0.05).fit(scores)
    assert fitted.value == pytest.approx(q3 + 3.0 * (q3 - q1))
    assert fitted.expected_alert_rate == pytest.approx(0.1)
    assert fitted.params == {"iqr_factor": 3.0, "iqr_min_alert_rate": 0.05}
    assert fitted.note == ""


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.2])
def test_contamination_flags_that_fraction(uniform_scores, rate):
    threshold = fit(uniform_scores, "contamination", contamination=rate)
    flagged = np.mean(uniform_scores > threshold.value)
    assert abs(flagged - rate) <= 1 / len(uniform_scores) + 1e-12
    assert threshold.expected_alert_rate == pytest.approx(flagged)
    assert threshold.value == pytest.approx(1 - rate, abs=0.05)
    assert threshold.method == "contamination"
    assert threshold.params == {"contamination": rate}
    assert threshold.n_reference == 1000


def test_fpr_flags_that_fraction(uniform_scores):
    threshold = fit(uniform_scores, "fpr", target_fpr=0.02)
    assert abs(np.mean(uniform_scores > threshold.value) - 0.02) <= 1e-3 + 1e-12
    assert threshold.params == {"target_fpr": 0.02}
    # a lower target false-positive rate never lowers the threshold
    assert fit(uniform_scores, "fpr", target_fpr=0.005).value >= threshold.value


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("risk", [1e-3, 1e-4])
def test_pot_on_exponential_scores_finds_the_true_quantile(seed, risk):
    """Exp(1) excesses are GPD with shape 0: the risk-quantile is -log(risk).

    At risk 1e-4 only ~2 of 20000 samples lie beyond it: the fit has to extrapolate.
    """
    scores = np.random.default_rng(seed).exponential(size=20_000)
    threshold = fit(scores, "pot", pot_risk=risk, pot_initial_quantile=0.95)
    assert threshold.value == pytest.approx(-math.log(risk), rel=0.1)
    assert threshold.note == ""
    assert abs(threshold.params["gpd_shape"]) < 0.1
    assert threshold.params["gpd_scale"] == pytest.approx(1.0, rel=0.15)
    assert threshold.params["initial"] == pytest.approx(-math.log(0.05), rel=0.1)
    assert threshold.params["pot_risk"] == risk
    assert threshold.expected_alert_rate == pytest.approx(risk, abs=5 * risk)


def test_pot_adapts_to_a_heavy_tail():
    """For Pareto scores (shape 0.5) the POT threshold sits near the true quantile, far
    beyond what an exponential tail would give."""
    rng = np.random.default_rng(5)
    scores = rng.pareto(2.0, size=20_000)  # Lomax: P(X > x) = (1 + x)^-2
    risk = 1e-3
    true = risk ** (-1 / 2.0) - 1.0  # 30.6
    threshold = fit(scores, "pot", pot_risk=risk, pot_initial_quantile=0.95)
    assert threshold.value == pytest.approx(true, rel=0.25)
    assert threshold.params["gpd_shape"] == pytest.approx(0.5, abs=0.15)


def test_pot_falls_back_to_a_quantile_with_few_points():
    scores = np.random.default_rng(0).exponential(size=50)
    value, params, note = pot_threshold(scores, risk=0.05, initial_quantile=0.9)
    assert value == float(np.quantile(scores, 0.95, method="higher"))
    assert "gpd_shape" not in params
    assert note  # says why no tail was fitted
    threshold = fit(scores, "pot", pot_risk=0.05)
    assert threshold.value == value
    assert threshold.note == note
    assert 0 < MIN_POT_EXCESSES <= 50


def test_pot_falls_back_when_every_excess_is_the_same():
    scores = np.concatenate([np.linspace(0, 1, 900), np.full(100, 5.0)])
    threshold = fit(scores, "pot", pot_risk=0.01)
    assert threshold.note
    assert threshold.value == float(np.quantile(scores, 0.99, method="higher"))


def test_non_finite_scores_are_ignored(uniform_scores):
    dirty = np.concatenate([uniform_scores, [np.nan, np.inf, -np.inf]])
    clean = fit(uniform_scores, "contamination")
    threshold = fit(dirty, "contamination")
    assert threshold.n_reference == len(uniform_scores)
    assert threshold.value == clean.value


def test_no_finite_scores_or_unknown_method_raise(uniform_scores):
    with pytest.raises(ValueError, match="finite"):
        fit([np.nan, np.inf], "contamination")
    with pytest.raises(ValueError, match="median"):
        fit(uniform_scores, "median")


def test_reference_quantiles_and_json_round_trip(uniform_scores):
    for method in THRESHOLD_METHODS:
        threshold = fit(uniform_scores, method)
        quantiles = list(threshold.reference_quantiles.values())
        assert quantiles == sorted(quantiles)
        assert threshold.reference_quantiles["q0.5"] == pytest.approx(0.5, abs=0.05)
        restored = Threshold.from_dict(json.loads(json.dumps(threshold.to_dict())))
        assert restored == threshold


# -- the rule objects ---------------------------------------------------------------------
RULES = [
    (IQRFence(2.5), "iqr", {"iqr_factor": 2.5, "iqr_min_alert_rate": 0.05}),
    (IQRFence(3.0, 0.0), "iqr", {"iqr_factor": 3.0, "iqr_min_alert_rate": 0.0}),
    (ContaminationRate(0.1), "contamination", {"contamination": 0.1}),
    (FalsePositiveRate(0.02), "fpr", {"target_fpr": 0.02}),
    (PeaksOverThreshold(0.02, 0.8), "pot", {"pot_risk": 0.02, "pot_initial_quantile": 0.8}),
    (ConformalFDR(0.05), "conformal", {"fdr": 0.05, "conformal_trim": False}),
    (ConformalFDR(0.2, True), "conformal", {"fdr": 0.2, "conformal_trim": True}),
]


def test_method_names_come_from_the_rules():
    assert THRESHOLD_METHODS == ("iqr", "contamination", "fpr", "pot", "conformal")
    assert THRESHOLD_METHODS == tuple(rule.method for rule in THRESHOLD_RULES)
    assert THRESHOLD_RULES[0] is IQRFence  # the default


@pytest.mark.parametrize("rule, method, flat", RULES)
def test_rule_fits_exactly_what_fit_threshold_fits(uniform_scores, rule, method, flat):
    """Bit for bit: the rule object is what the detector's flat parameters build."""
    scores = np.concatenate([uniform_scores, np.random.default_rng(1).exponential(size=500)])
    flat_all = {**DEFAULTS, "iqr_factor": 3.0, **flat}
    assert threshold_rule(method, **flat_all) == rule
    assert rule.estimator_params() == {"threshold_method": method, **flat}
    assert rule.fit(scores) == fit_threshold(scores, method, **flat_all)
    assert rule.fit(scores).params.items() >= flat.items()


def test_rule_defaults_are_the_detectors_defaults():
    params = VAEAnomalyDetector().get_params()
    assert params["threshold_method"] == THRESHOLD_RULES[0].method
    for rule in THRESHOLD_RULES:
        for flat, value in rule().estimator_params().items():
            if flat != "threshold_method":
                assert params[flat] == value, flat


@pytest.mark.parametrize(
    "build, named",
    [
        (lambda: IQRFence(0.0), "iqr_factor=0.0 must be greater than 0"),
        (lambda: IQRFence(-1.0), "iqr_factor=-1.0"),
        (lambda: IQRFence(min_alert_rate=-0.1), "iqr_min_alert_rate=-0.1 must be at least 0"),
        (lambda: IQRFence(min_alert_rate=0.5), "iqr_min_alert_rate=0.5 must be at least 0"),
        (lambda: ContaminationRate(0.5), "contamination=0.5 must lie strictly between 0 and 0.5"),
        (lambda: FalsePositiveRate(0.0), "target_fpr=0.0"),
        (lambda: PeaksOverThreshold(risk=0.6), "pot_risk=0.6"),
        (lambda: PeaksOverThreshold(initial_quantile=1.0), "pot_initial_quantile=1.0"),
    ],
)
def test_a_rule_checks_its_own_bounds(build, named):
    with pytest.raises(ValueError, match=named):
        build()


def test_threshold_rule_ignores_other_methods_parameters_and_names_an_unknown_one():
    assert threshold_rule("iqr", contamination=0.9) == IQRFence()
    assert threshold_rule("pot", pot_risk=0.03) == PeaksOverThreshold(risk=0.03)
    with pytest.raises(ValueError, match="'median' is not one of"):
        threshold_rule("median")


def test_rules_are_frozen():
    with pytest.raises(AttributeError):
        IQRFence().factor = 1.0  # type: ignore[misc]


# -- conformal p-values and Benjamini-Hochberg -------------------------------------------
def test_conformal_p_value_counts_calibration_scores_at_or_above():
    calibration = np.array([1.0, 2.0, 2.0, 3.0])
    p = conformal_p_values(np.array([0.5, 2.0, 2.5, 3.0, 9.0, np.nan]), calibration)
    np.testing.assert_allclose(p, [5 / 5, 4 / 5, 2 / 5, 2 / 5, 1 / 5, 1.0])


def test_conformal_p_values_of_exchangeable_inliers_are_valid():
    """P(p <= a) <= a for rows from the calibration's distribution, at every level: over
    draws of the calibration set too (given one set, the share varies around a)."""
    rng = np.random.default_rng(0)
    p = np.concatenate(
        [
            conformal_p_values(rng.standard_t(3, size=50), np.sort(rng.standard_t(3, size=99)))
            for _ in range(2000)
        ]
    )
    for level in (0.01, 0.05, 0.1, 0.3):
        assert np.mean(p <= level) <= level + 0.004
    assert np.mean(p <= 0.1) > 0.09  # and not far below: the p-values are not trivial


def test_benjamini_hochberg_rejects_the_step_up_set():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    # fdr 0.05, m = 10: p_(k) <= 0.005 k holds for k = 1, 2 only (0.039 > 0.015)
    np.testing.assert_array_equal(benjamini_hochberg(p, 0.05), np.arange(10) < 2)
    # fdr 0.5: p_(k) <= 0.05 k up to k = 10 (0.216 <= 0.5): every one
    assert benjamini_hochberg(p, 0.5).all()
    assert not benjamini_hochberg(np.array([0.5, 0.9]), 0.1).any()
    assert benjamini_hochberg(np.array([]), 0.1).shape == (0,)


def test_bh_on_conformal_p_values_keeps_the_false_discovery_rate():
    """Inlier calibration, 5% shifted anomalies in each batch: the mean share of inliers
    among the flags stays under the target, and most anomalies are found."""
    rng = np.random.default_rng(1)
    shares, recalls = [], []
    for _ in range(200):
        calibration = np.sort(rng.normal(size=400))
        inliers, anomalies = rng.normal(size=190), rng.normal(4.0, 1.0, size=10)
        flags = benjamini_hochberg(
            conformal_p_values(np.concatenate([inliers, anomalies]), calibration), 0.1
        )
        shares.append(flags[:190].sum() / max(flags.sum(), 1))
        recalls.append(flags[190:].mean())
    assert np.mean(shares) <= 0.1
    assert np.mean(recalls) > 0.5


def test_conformal_rule_calibrates_on_every_reference_score_by_default():
    """Without trimming BH finds nothing in the reference itself (its p-values are its
    ranks): the fixed threshold is the highest reference score."""
    rng = np.random.default_rng(2)
    reference = np.concatenate([rng.normal(size=1900), rng.normal(12.0, 1.0, size=100)])
    fitted = ConformalFDR(0.1).fit(reference)
    np.testing.assert_array_equal(fitted.calibration, np.sort(reference))
    assert fitted.value == reference.max() and fitted.params["conformal_trim"] == 0.0


def test_trimmed_conformal_rule_calibrates_below_the_fence_and_keeps_the_scores():
    rng = np.random.default_rng(2)
    reference = np.concatenate([rng.normal(size=1900), rng.normal(12.0, 1.0, size=100)])
    fitted = ConformalFDR(0.1, trim=True).fit(reference)
    q1, q3 = np.quantile(reference, [0.25, 0.75])
    calibration = np.asarray(fitted.calibration)
    assert calibration.max() <= q3 + 3 * (q3 - q1) < 12.0 - 3  # the far-out rows left out
    assert list(calibration) == sorted(calibration) and calibration.size < 2000
    # the threshold flags the far-out rows and a few more, not most of the bulk
    assert 0.05 <= fitted.expected_alert_rate <= 0.05 / 0.9 + 0.01
    assert fitted.method == "conformal" and fitted.params["fdr"] == 0.1
    p = fitted.p_values(np.array([0.0, 50.0]))
    assert p[0] > 0.3 and p[1] == pytest.approx(1 / (calibration.size + 1))
    restored = Threshold.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert restored == fitted


def test_conformal_rule_without_discoveries_keeps_the_highest_reference_score():
    reference = np.random.default_rng(3).normal(size=300)
    fitted = ConformalFDR(0.1, trim=True).fit(reference)
    assert fitted.value == reference.max() and fitted.expected_alert_rate == 0.0
    assert "no reference row" in fitted.note


def test_calibration_is_thinned_to_a_bound():
    reference = np.random.default_rng(4).normal(size=MAX_CALIBRATION + 5_000)
    calibration = ConformalFDR().calibration(reference)
    assert calibration.size == MAX_CALIBRATION
    assert calibration[0] == reference.min()


def test_other_methods_keep_their_record_shape(uniform_scores):
    """No calibration key in their records: saved models stay as they were."""
    for method in ("iqr", "contamination", "fpr", "pot"):
        assert "calibration" not in fit(uniform_scores, method).to_dict()
        assert fit(uniform_scores, method).p_values(uniform_scores) is None


def test_conformal_bounds():
    with pytest.raises(ValueError, match="fdr"):
        ConformalFDR(0.0)
    with pytest.raises(ValueError, match="fdr"):
        ConformalFDR(1.0)


def test_a_conformal_model_saves_and_loads_with_its_calibration(tmp_path):
    X = np.random.default_rng(0).normal(size=(300, 3))
    detector = VAEAnomalyDetector(max_epochs=3, threshold_method="conformal", random_state=0)
    detector.fit(X)
    detector.save(tmp_path / "model")
    restored = VAEAnomalyDetector.load(tmp_path / "model")
    assert restored.threshold_ == detector.threshold_

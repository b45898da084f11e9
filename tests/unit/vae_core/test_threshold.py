"""Label-free thresholds: quantiles by contamination or false-positive rate, and POT."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vae_core import VAEAnomalyDetector
from vae_core.threshold import (
    MIN_POT_EXCESSES,
    THRESHOLD_METHODS,
    THRESHOLD_RULES,
    ContaminationRate,
    FalsePositiveRate,
    IQRFence,
    PeaksOverThreshold,
    Threshold,
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
    assert set(THRESHOLD_METHODS) == {"iqr", "contamination", "fpr", "pot"}


def test_iqr_fence_is_tukeys_far_out_fence_and_ignores_the_tail():
    rng = np.random.default_rng(0)
    bulk = rng.normal(size=2000)
    q1, q3 = np.quantile(bulk, [0.25, 0.75])
    fitted = fit_threshold(bulk, "iqr", 0.1, 0.01, 0.01, 0.9, iqr_factor=3.0)
    assert fitted.value == pytest.approx(q3 + 3.0 * (q3 - q1))
    # 5% of huge anomalies barely move the fence: quartiles are robust
    contaminated = np.concatenate([bulk, np.full(100, 1e6)])
    moved = fit_threshold(contaminated, "iqr", 0.1, 0.01, 0.01, 0.9).value
    assert moved == pytest.approx(fitted.value, rel=0.1)
    assert fitted.expected_alert_rate < 0.001


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
    (IQRFence(2.5), "iqr", {"iqr_factor": 2.5}),
    (ContaminationRate(0.1), "contamination", {"contamination": 0.1}),
    (FalsePositiveRate(0.02), "fpr", {"target_fpr": 0.02}),
    (PeaksOverThreshold(0.02, 0.8), "pot", {"pot_risk": 0.02, "pot_initial_quantile": 0.8}),
]


def test_method_names_come_from_the_rules():
    assert THRESHOLD_METHODS == ("iqr", "contamination", "fpr", "pot")  # the CLI's order
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

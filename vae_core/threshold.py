"""Turning scores into flags without labels.

Four methods, all fitted on reference scores the model did not train on:

- ``iqr`` (default): Tukey's far-out fence, Q3 + k * (Q3 - Q1) with k = 3. It needs no
  guess of the anomaly rate and is not moved by the anomalies themselves (quartiles are
  robust to up to 25% contamination), so it flags what lies far outside the bulk. On the
  ADBench runs it gave the best mean flag F1 of all label-free rules tried.
- ``contamination``: flag the expected fraction of rows (a quantile of the reference scores).
- ``fpr``: flag at most ``target_fpr`` of normal-looking rows (same quantile logic, but the
  parameter says what the user controls: the false-alarm rate on data like the reference).
- ``pot``: peaks over threshold. Fit a generalised Pareto distribution to the excesses over
  a high initial quantile and extrapolate to the score that normal data exceeds with
  probability ``pot_risk`` (Siffer et al., KDD 2017). Adapts to how heavy the tail is
  instead of assuming a fixed fraction of anomalies.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats

ThresholdMethod = Literal["iqr", "contamination", "fpr", "pot"]
THRESHOLD_METHODS: tuple[str, ...] = ("iqr", "contamination", "fpr", "pot")
REFERENCE_LEVELS: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999)
#: Fewest excesses a generalised Pareto fit is trusted on; fewer falls back to a quantile.
MIN_POT_EXCESSES = 10


@dataclass(frozen=True)
class Threshold:
    """A fitted decision threshold and everything needed to explain it."""

    method: str
    value: float
    params: dict[str, float]
    expected_alert_rate: float  # share of reference scores above ``value``
    reference_quantiles: dict[str, float] = field(default_factory=dict)
    n_reference: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Threshold:
        return cls(**data)


def _quantile_threshold(scores: np.ndarray, alert_rate: float) -> float:
    return float(np.quantile(scores, 1.0 - alert_rate, method="higher"))


def pot_threshold(
    scores: np.ndarray, risk: float, initial_quantile: float
) -> tuple[float, dict[str, float], str]:
    """Score exceeded by normal data with probability ``risk``, from a GPD tail fit."""
    initial = float(np.quantile(scores, initial_quantile))
    excesses = scores[scores > initial] - initial
    if excesses.size < MIN_POT_EXCESSES or np.ptp(excesses) <= 0:
        value = _quantile_threshold(scores, risk)
        note = f"only {excesses.size} distinct excesses: used the {1 - risk:.4g} quantile"
        return value, {"initial": initial}, note
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        shape, _, scale = stats.genpareto.fit(excesses, floc=0.0)
    tail_share = excesses.size / scores.size
    ratio = risk / tail_share
    if abs(shape) < 1e-6:
        value = initial - scale * math.log(ratio)
    else:
        value = initial + scale / shape * (ratio ** (-shape) - 1.0)
    params = {"initial": initial, "gpd_shape": float(shape), "gpd_scale": float(scale)}
    if not math.isfinite(value) or value < initial:
        return _quantile_threshold(scores, risk), params, "GPD fit unusable: used a quantile"
    return float(value), params, ""


def fit_threshold(
    reference_scores: np.ndarray,
    method: str,
    contamination: float,
    target_fpr: float,
    pot_risk: float,
    pot_initial_quantile: float,
    iqr_factor: float = 3.0,
) -> Threshold:
    """Fit the threshold of ``method`` on scores of rows the model did not train on."""
    scores = np.asarray(reference_scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        raise ValueError("no finite reference scores to fit a threshold on")
    note = ""
    if method == "iqr":
        q1, q3 = np.quantile(scores, [0.25, 0.75])
        value, params = q3 + iqr_factor * (q3 - q1), {"iqr_factor": iqr_factor}
    elif method == "contamination":
        value, params = _quantile_threshold(scores, contamination), {"contamination": contamination}
    elif method == "fpr":
        value, params = _quantile_threshold(scores, target_fpr), {"target_fpr": target_fpr}
    elif method == "pot":
        value, params, note = pot_threshold(scores, pot_risk, pot_initial_quantile)
        params = {"pot_risk": pot_risk, "pot_initial_quantile": pot_initial_quantile, **params}
    else:
        raise ValueError(f"threshold_method {method!r} is not one of {THRESHOLD_METHODS}")
    quantiles = {f"q{level:g}": float(np.quantile(scores, level)) for level in REFERENCE_LEVELS}
    return Threshold(
        method=method,
        value=float(value),
        params={k: float(v) for k, v in params.items()},
        expected_alert_rate=float(np.mean(scores > value)),
        reference_quantiles=quantiles,
        n_reference=int(scores.size),
        note=note,
    )

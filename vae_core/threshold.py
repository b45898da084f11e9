"""Turning scores into flags without labels.

Five methods, all fitted on reference scores the model did not train on:

- ``iqr`` (default): Tukey's far-out fence, Q3 + k * (Q3 - Q1) with k = 3. It needs no
  guess of the anomaly rate and is not moved by the anomalies themselves (quartiles are
  robust to up to 25% contamination), so it flags what lies far outside the bulk. Where
  it lies above the reference scores' 0.95 quantile it is lowered to it
  (``min_alert_rate``): on short-tailed scores (discrete, binary, sparse data) the fence
  alone can lie beyond every anomaly. On the four quality benchmarks this capped fence
  gave the best mean flag F1 of all label-free rules tried.
- ``contamination``: flag the expected fraction of rows (a quantile of the reference scores).
- ``fpr``: flag at most ``target_fpr`` of normal-looking rows (same quantile logic, but the
  parameter says what the user controls: the false-alarm rate on data like the reference).
- ``pot``: peaks over threshold. Fit a generalised Pareto distribution to the excesses over
  a high initial quantile and extrapolate to the score that normal data exceeds with
  probability ``pot_risk`` (Siffer et al., KDD 2017). Adapts to how heavy the tail is
  instead of assuming a fixed fraction of anomalies.
- ``conformal``: conformal p-values of each row's score against calibration scores, flags
  by Benjamini-Hochberg at a target false-discovery rate ``fdr`` (``ConformalFDR``).

Each method is a small frozen rule (``IQRFence``, ``ContaminationRate``,
``FalsePositiveRate``, ``PeaksOverThreshold``, ``ConformalFDR``) that checks its own bounds
and whose ``fit(scores)`` returns the ``Threshold``; ``threshold_rule`` builds one from the
detector's flat parameters, and ``fit_threshold`` is that plus ``fit``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
from scipy import stats

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
    #: Sorted calibration scores of a ``conformal`` threshold, which each row's p-value is
    #: computed against (``conformal_p_values``); empty for the other methods.
    calibration: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.calibration:  # the other methods' records stay as they were
            del data["calibration"]
        else:
            data["calibration"] = list(self.calibration)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Threshold:
        data = dict(data)
        data["calibration"] = tuple(float(v) for v in data.get("calibration", ()))
        return cls(**data)

    def p_values(self, scores: np.ndarray) -> np.ndarray | None:
        """Conformal p-value of each score; None unless the threshold has calibration."""
        if not self.calibration:
            return None
        return conformal_p_values(scores, np.asarray(self.calibration, dtype=np.float64))


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


# -- conformal p-values and Benjamini-Hochberg -------------------------------------------
#: Most calibration scores a conformal threshold keeps (evenly spaced order statistics
#: beyond it): the smallest p-value is 1 / (n + 1), so 10,000 resolve 1e-4, and the model
#: file stays small.
MAX_CALIBRATION = 10_000


def conformal_p_values(scores: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    """``(1 + #{calibration >= s}) / (n + 1)`` for each score ``s``; ``calibration`` sorted.

    For a row exchangeable with the calibration rows, P(p <= a) <= a: the p-value is valid
    whatever the score's distribution. NaN scores get p-value 1 (never flagged).
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = calibration.size
    at_or_above = n - np.searchsorted(calibration, scores, side="left")
    p = (1.0 + at_or_above) / (n + 1.0)
    p[np.isnan(scores)] = 1.0
    return p


def benjamini_hochberg(p_values: np.ndarray, fdr: float) -> np.ndarray:
    """Flags (bool) of the Benjamini-Hochberg procedure at false-discovery rate ``fdr``.

    Rejects the k smallest p-values, k the largest rank with ``p_(k) <= fdr * k / m``.
    With conformal p-values against inlier calibration scores, the expected share of
    inliers among the flags is at most ``fdr`` (Bates et al., Ann. Statist. 2023).
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return np.zeros(0, dtype=bool)
    ordered = np.sort(p)
    passing = np.flatnonzero(ordered <= fdr * np.arange(1, m + 1) / m)
    if passing.size == 0:
        return np.zeros(m, dtype=bool)
    return p <= ordered[passing[-1]]


def _thin(sorted_scores: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` evenly spaced order statistics of sorted scores (ends kept)."""
    if sorted_scores.size <= limit:
        return sorted_scores
    return sorted_scores[np.linspace(0, sorted_scores.size - 1, limit).round().astype(np.int64)]


# -- the rules ---------------------------------------------------------------------------
#: Open interval (low, high) a rule parameter must lie in; None: no upper bound. A rule's
#: ``closed_low`` names the parameters whose low end is allowed (``[low, high)``).
Bounds = tuple[float, float | None]


def _check_bounds(rule: Any) -> None:
    """Raise ValueError naming the estimator parameter of the first value out of bounds."""
    for name, (low, high) in rule.bounds.items():
        value = getattr(rule, name)
        label = rule.estimator_names[name]
        if name in rule.closed_low:
            if not (low <= value and (high is None or value < high)):
                upper = "" if high is None else f" and below {high:g}"
                raise ValueError(f"{label}={value!r} must be at least {low:g}{upper}.")
        elif high is None and not value > low:
            raise ValueError(f"{label}={value!r} must be greater than {low:g}.")
        elif high is not None and not low < value < high:
            raise ValueError(f"{label}={value!r} must lie strictly between {low:g} and {high:g}.")


def _finite(reference_scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(reference_scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        raise ValueError("no finite reference scores to fit a threshold on")
    return scores


def _record(
    method: str, scores: np.ndarray, value: float, params: dict[str, float], note: str = ""
) -> Threshold:
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


class _Rule:
    """Shared by the rules: ``fit`` drops non-finite scores, then the rule's ``_value``."""

    method: ClassVar[str]
    #: Bounds of each parameter, checked when the rule is built; the job settings use them.
    bounds: ClassVar[dict[str, Bounds]]
    closed_low: ClassVar[frozenset[str]] = frozenset()
    #: The flat ``VAEAnomalyDetector`` parameter each field is, also the Threshold's keys.
    estimator_names: ClassVar[dict[str, str]]

    def __post_init__(self) -> None:
        _check_bounds(self)

    def estimator_params(self) -> dict[str, Any]:
        """The flat detector parameters (``threshold_method``, ``iqr_factor``, ...)."""
        fields = {flat: getattr(self, name) for name, flat in self.estimator_names.items()}
        return {"threshold_method": self.method, **fields}

    def fit(self, reference_scores: np.ndarray) -> Threshold:
        """The threshold fitted on scores of rows the model did not train on."""
        scores = _finite(reference_scores)
        value, params, note = self._value(scores)
        return _record(self.method, scores, value, params, note)

    def _value(self, scores: np.ndarray) -> tuple[float, dict[str, float], str]:
        raise NotImplementedError


@dataclass(frozen=True)
class IQRFence(_Rule):
    """Tukey's fence Q3 + factor * (Q3 - Q1) (3: far out) of the reference scores, lowered
    to their (1 - min_alert_rate) quantile where it lies above it.

    The fence alone needs no guess of the anomaly rate, but where normal scores have a
    short tail and the anomalies sit just above it (discrete, binary and sparse data) it
    lies beyond every anomaly and flags nothing; the cap makes it flag at least about
    ``min_alert_rate`` of rows like the reference, and 0 turns it off.
    """

    factor: float = 3.0
    min_alert_rate: float = 0.05
    method: ClassVar[str] = "iqr"
    bounds: ClassVar[dict[str, Bounds]] = {"factor": (0.0, None), "min_alert_rate": (0.0, 0.5)}
    closed_low: ClassVar[frozenset[str]] = frozenset({"min_alert_rate"})
    estimator_names: ClassVar[dict[str, str]] = {
        "factor": "iqr_factor",
        "min_alert_rate": "iqr_min_alert_rate",
    }

    def _value(self, scores: np.ndarray) -> tuple[float, dict[str, float], str]:
        q1, q3 = np.quantile(scores, [0.25, 0.75])
        fence = float(q3 + self.factor * (q3 - q1))
        params = {"iqr_factor": self.factor, "iqr_min_alert_rate": self.min_alert_rate}
        if self.min_alert_rate == 0.0:
            return fence, params, ""
        cap = float(np.quantile(scores, 1.0 - self.min_alert_rate))
        if cap < fence:
            note = f"the fence flagged under {self.min_alert_rate:g} of the reference: capped"
            return cap, {**params, "fence": fence}, note
        return fence, params, ""


@dataclass(frozen=True)
class ContaminationRate(_Rule):
    """Flag the expected share ``rate`` of rows: the (1 - rate) quantile of the scores."""

    rate: float = 0.05
    method: ClassVar[str] = "contamination"
    bounds: ClassVar[dict[str, Bounds]] = {"rate": (0.0, 0.5)}
    estimator_names: ClassVar[dict[str, str]] = {"rate": "contamination"}

    def _value(self, scores: np.ndarray) -> tuple[float, dict[str, float], str]:
        return _quantile_threshold(scores, self.rate), {"contamination": self.rate}, ""


@dataclass(frozen=True)
class FalsePositiveRate(_Rule):
    """Flag at most the share ``rate`` of rows that look like the reference data."""

    rate: float = 0.01
    method: ClassVar[str] = "fpr"
    bounds: ClassVar[dict[str, Bounds]] = {"rate": (0.0, 0.5)}
    estimator_names: ClassVar[dict[str, str]] = {"rate": "target_fpr"}

    def _value(self, scores: np.ndarray) -> tuple[float, dict[str, float], str]:
        return _quantile_threshold(scores, self.rate), {"target_fpr": self.rate}, ""


@dataclass(frozen=True)
class PeaksOverThreshold(_Rule):
    """The score normal data exceeds with probability ``risk``, from a GPD fit to the tail
    above the ``initial_quantile`` quantile."""

    risk: float = 0.01
    initial_quantile: float = 0.9
    method: ClassVar[str] = "pot"
    bounds: ClassVar[dict[str, Bounds]] = {"risk": (0.0, 0.5), "initial_quantile": (0.0, 1.0)}
    estimator_names: ClassVar[dict[str, str]] = {
        "risk": "pot_risk",
        "initial_quantile": "pot_initial_quantile",
    }

    def _value(self, scores: np.ndarray) -> tuple[float, dict[str, float], str]:
        value, fitted, note = pot_threshold(scores, self.risk, self.initial_quantile)
        own = {"pot_risk": self.risk, "pot_initial_quantile": self.initial_quantile}
        return value, {**own, **fitted}, note


@dataclass(frozen=True)
class ConformalFDR(_Rule):
    """Benjamini-Hochberg at false-discovery rate ``fdr`` on conformal p-values.

    Each row's ``p_value`` is its score's conformal p-value against the calibration scores
    (``conformal_p_values``). BH over any set of rows chosen after scoring
    (``benjamini_hochberg`` on their p-values: a day's run, an entity) flags them with an
    expected share of inliers among the flags of at most ``fdr``, for inliers exchangeable
    with the calibration rows. The guarantee covers that set of rows, not a stream.

    Calibration, ``trim=False`` (default): every reference score. The reference is
    held-out training data, contaminated as the training data are; anomalies in it only
    make p-values larger, so the guarantee holds, but with as many anomalies in the
    calibration as in the data scored an anomaly is no rarer than the calibration's own,
    and BH finds (almost) nothing. ``trim=True``: the reference scores up to Tukey's
    far-out fence (Q3 + 3 IQR), which leaves out the anomalies the fence is sure of and
    finds about what the fence finds; the guarantee is then lost for inliers beyond the
    fence, and on the shared benchmarks the share of normal rows among the flags was far
    above ``fdr`` (see the benchmarks' README).

    ``is_anomaly`` is a fixed score threshold, not BH over each scored batch: scoring
    streams batches of arbitrary size and partitions in parallel, and a flag must not
    depend on which rows came in the same batch. It is BH's on the reference itself (its
    scores' p-values against the calibration), the score above which a batch like the
    reference would have about ``fdr`` false discoveries; when BH rejects none of the
    reference (always, without trimming), the reference's highest score.
    """

    fdr: float = 0.1
    trim: bool = False
    method: ClassVar[str] = "conformal"
    bounds: ClassVar[dict[str, Bounds]] = {"fdr": (0.0, 1.0)}
    estimator_names: ClassVar[dict[str, str]] = {"fdr": "fdr", "trim": "conformal_trim"}

    def fit(self, reference_scores: np.ndarray) -> Threshold:
        scores = _finite(reference_scores)
        calibration = self.calibration(scores)
        value, params, note = self._value(scores)
        record = _record(self.method, scores, value, params, note)
        return replace(record, calibration=tuple(float(v) for v in calibration))

    def calibration(self, scores: np.ndarray) -> np.ndarray:
        """The sorted calibration scores (see ``trim``), thinned to a bound."""
        if self.trim:
            q1, q3 = np.quantile(scores, [0.25, 0.75])
            scores = scores[scores <= q3 + 3.0 * (q3 - q1)]
        return _thin(np.sort(scores), MAX_CALIBRATION)

    def _value(self, scores: np.ndarray) -> tuple[float, dict[str, float], str]:
        calibration = self.calibration(scores)
        flags = benjamini_hochberg(conformal_p_values(scores, calibration), self.fdr)
        params = {
            "fdr": self.fdr,
            "conformal_trim": float(self.trim),
            "n_calibration": float(calibration.size),
        }
        if not flags.any():
            return float(scores.max()), params, "no reference row passed BH: its highest score"
        if flags.all():
            return float(scores.min()), params, ""
        return float(scores[~flags].max()), params, ""


ThresholdRule = IQRFence | ContaminationRate | FalsePositiveRate | PeaksOverThreshold | ConformalFDR
#: Every rule, the default (``iqr``) first; the one declaration of the method names.
THRESHOLD_RULES: tuple[type[ThresholdRule], ...] = (
    IQRFence,
    ContaminationRate,
    FalsePositiveRate,
    PeaksOverThreshold,
    ConformalFDR,
)
THRESHOLD_METHODS: tuple[str, ...] = tuple(rule.method for rule in THRESHOLD_RULES)


def threshold_rule(method: str, **estimator_params: float) -> ThresholdRule:
    """The rule ``method`` names, from the detector's flat parameters (``iqr_factor``, ...).

    Parameters of other methods are ignored; missing ones take the rule's default.
    """
    rule = next((r for r in THRESHOLD_RULES if r.method == method), None)
    if rule is None:
        raise ValueError(f"threshold_method {method!r} is not one of {THRESHOLD_METHODS}")
    kwargs: dict[str, Any] = {
        name: estimator_params[flat]
        for name, flat in rule.estimator_names.items()
        if flat in estimator_params
    }
    return rule(**kwargs)


def fit_threshold(
    reference_scores: np.ndarray,
    method: str,
    contamination: float,
    target_fpr: float,
    pot_risk: float,
    pot_initial_quantile: float,
    iqr_factor: float = 3.0,
    fdr: float = 0.1,
    conformal_trim: bool = False,
    iqr_min_alert_rate: float = 0.05,
) -> Threshold:
    """Fit the threshold of ``method`` on scores of rows the model did not train on."""
    rule = threshold_rule(
        method,
        contamination=contamination,
        target_fpr=target_fpr,
        pot_risk=pot_risk,
        pot_initial_quantile=pot_initial_quantile,
        iqr_factor=iqr_factor,
        iqr_min_alert_rate=iqr_min_alert_rate,
        fdr=fdr,
        conformal_trim=conformal_trim,
    )
    return rule.fit(reference_scores)

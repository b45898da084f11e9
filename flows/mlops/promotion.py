"""The promotion gate: does a newly trained version replace the current ``champion``?

Pure functions; the training flow scores the *same* data with both models and passes the
two metric dictionaries. The candidate gets the ``champion`` alias when ``promote`` is
true, ``challenger`` otherwise.

Rules, in order:

1. **No champion** (``champion_metrics is None``): promote.
2. **Labelled** (``labelled=True``, a labelled evaluation set scored by both models):
   keys ``eval_average_precision`` and ``eval_roc_auc``. Promote when the candidate's
   average precision is higher than the champion's; on a tie (within ``TIE``), when its
   ROC AUC is at least the champion's. Average precision leads because alerts are rare
   and AP measures the ranking at the top, where analysts look; no tolerance applies,
   labels are the ground truth.
3. **Label-free** (no labels): two checks on the shared holdout, both must pass.

   - *Fit*: ``val_score_median`` (median per-row negative ELBO, reconstruction NLL +
     beta * KL, the training loss, lower = data explained better; not the score, whose
     KL weight each version fits, ``flows.evaluation.holdout_metrics``) of the candidate
     must not exceed the champion's by more than ``tolerance`` relative to the
     champion's: ``cand <= champ + tolerance * |champ|``. The median, not the mean,
     because production holdouts are contaminated and a few anomalies must not decide.
     Losses of two versions are comparable when both were trained with the same
     preprocessing and score settings (the usual retraining case); after changing those,
     compare with labels.
   - *Alert-rate stability*: the candidate's alert rate on the holdout,
     ``val_alert_rate``, must lie within ``max(0.02, expected)`` of the rate its
     threshold was fitted to produce, ``expected_alert_rate``:
     ``|val_alert_rate - expected_alert_rate| <= max(0.02, expected_alert_rate)``.
     A threshold that flags a very different share of fresh data than it was fitted for
     would flood (or starve) the people reading the alerts.

Any metric that is missing raises ``ValueError``; a non-finite candidate figure fails the
gate (never promotes), a non-finite champion figure lets a finite candidate win.

``decide_on_reference`` is the gate the training flow applies: the rules above, but on
figures the new data cannot fool (``flows.evaluation.gate_metrics``: both models scored on
the champion's stored holdout sample; the new holdout only when there is none), plus four
checks, all of which must pass:

- *Detection*: synthetic anomalies injected into those rows (``vae_core.synthetic_anomalies``)
  must be separated from the clean rows (by the negative ELBO, as the fit check ranks) at
  least as well as the champion does:
  ``gate_synthetic_roc_auc >= champion's - auc_tolerance``;
- *Detection at the threshold*: the share of synthetic anomalies above the candidate's own
  threshold, ``gate_synthetic_recall >= champion's - recall_tolerance`` (a model whose
  threshold rose out of reach ranks well and flags nothing);
- *Every column watched*: per column, the ROC AUC of the anomalies that push that column
  out of range (far-out values, rare levels), ``gate_column_auc``, must not fall more than
  ``column_tolerance`` below the champion's (a model fitted on data where a column was
  missing or scaled absurdly stops watching it: about 0.5 where the champion has 1.0);
- *Alert rate on the champion's reference*: ``gate_alert_rate_reference`` within
  ``alert_rate_band`` of the candidate's ``expected_alert_rate``.

The fit check compares ``gate_score_median`` (not the new holdout's median), and with
labels the labelled rule decides the fit instead. A candidate that cannot score the
reference at all (``gate_error``) is not promoted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

CHAMPION, CHALLENGER = "champion", "challenger"
LABEL_KEYS = ("eval_average_precision", "eval_roc_auc")
LABEL_FREE_KEYS = ("val_score_median", "val_alert_rate", "expected_alert_rate")
#: Label metrics closer than this are a tie.
TIE = 1e-9
#: Smallest allowed gap between holdout and expected alert rate (absolute).
MIN_ALERT_RATE_BAND = 0.02
DEFAULT_TOLERANCE = 0.05


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    alias: Literal["champion", "challenger"]
    reason: str
    candidate: dict[str, Any]
    champion: dict[str, Any] | None
    criterion: Literal["no_champion", "labelled", "label_free"] = "label_free"
    #: Every check of ``decide_on_reference``: name, passed, candidate, champion, limit.
    checks: tuple[dict[str, Any], ...] = ()


def decide(
    candidate_metrics: dict[str, Any],
    champion_metrics: dict[str, Any] | None,
    labelled: bool,
    tolerance: float = DEFAULT_TOLERANCE,
) -> PromotionDecision:
    """Compare candidate and champion on the same data; see the module docstring."""
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance={tolerance!r} must be a finite number >= 0.")
    candidate = dict(candidate_metrics)
    champion = None if champion_metrics is None else dict(champion_metrics)
    if champion is None:
        return _decision(True, "no champion exists yet", candidate, None, "no_champion")
    if labelled:
        return _labelled(candidate, champion)
    return _label_free(candidate, champion, tolerance)


def _decision(
    promote: bool, reason: str, candidate: dict, champion: dict | None, criterion: str
) -> PromotionDecision:
    alias = CHAMPION if promote else CHALLENGER
    return PromotionDecision(promote, alias, reason, candidate, champion, criterion)


def _require(metrics: dict[str, Any], keys: tuple[str, ...], whose: str) -> dict[str, float]:
    missing = [k for k in keys if metrics.get(k) is None]
    if missing:
        raise ValueError(
            f"promotion gate: the {whose} metrics lack {missing} (has {sorted(metrics)}); "
            "score the same evaluation data with both models before deciding."
        )
    return {k: float(metrics[k]) for k in keys}


def _labelled(candidate: dict, champion: dict) -> PromotionDecision:
    cand = _require(candidate, LABEL_KEYS, "candidate")
    champ = _require(champion, LABEL_KEYS, "champion")
    ap, auc = cand["eval_average_precision"], cand["eval_roc_auc"]
    ap0, auc0 = champ["eval_average_precision"], champ["eval_roc_auc"]
    figures = f"AP {ap:.4f} vs champion {ap0:.4f}, ROC AUC {auc:.4f} vs {auc0:.4f}"

    def decided(promote: bool, why: str) -> PromotionDecision:
        return _decision(promote, f"{why} ({figures})", candidate, champion, "labelled")

    if not (math.isfinite(ap) and math.isfinite(auc)):
        return decided(False, "candidate label metrics are not finite")
    if not (math.isfinite(ap0) and math.isfinite(auc0)):
        return decided(True, "champion label metrics are not finite")
    if ap > ap0 + TIE:
        return decided(True, "higher average precision")
    if ap < ap0 - TIE:
        return decided(False, "lower average precision")
    if auc >= auc0 - TIE:
        return decided(True, "same average precision, ROC AUC at least as high")
    return decided(False, "same average precision, lower ROC AUC")


def alert_rate_band(expected_alert_rate: float) -> float:
    """Largest allowed |holdout alert rate - expected alert rate|."""
    return max(MIN_ALERT_RATE_BAND, expected_alert_rate)


def _label_free(candidate: dict, champion: dict, tolerance: float) -> PromotionDecision:
    cand = _require(candidate, LABEL_FREE_KEYS, "candidate")
    champ = _require(champion, ("val_score_median",), "champion")
    median, median0 = cand["val_score_median"], champ["val_score_median"]
    rate, expected = cand["val_alert_rate"], cand["expected_alert_rate"]
    band = alert_rate_band(expected)
    figures = (
        f"holdout median score {median:.6g} vs champion {median0:.6g} "
        f"(tolerance {tolerance:.1%}); holdout alert rate {rate:.2%} vs expected "
        f"{expected:.2%} (band ±{band:.2%})"
    )

    def decided(promote: bool, why: str) -> PromotionDecision:
        return _decision(promote, f"{why}: {figures}", candidate, champion, "label_free")

    if not all(math.isfinite(v) for v in (median, rate, expected)):
        return decided(False, "candidate holdout metrics are not finite")
    if abs(rate - expected) > band:
        return decided(False, "alert rate unstable")
    if not math.isfinite(median0):
        return decided(True, "champion median score is not finite")
    if median > median0 + tolerance * abs(median0):
        return decided(False, "worse fit of the holdout")
    return decided(True, "fit within tolerance and alert rate stable")


@dataclass(frozen=True)
class GateLimits:
    """The tolerances of ``decide_on_reference`` (``train.promotion_gate`` and
    ``train.promotion_tolerance``)."""

    tolerance: float = DEFAULT_TOLERANCE
    auc_tolerance: float = 0.02
    recall_tolerance: float = 0.1
    column_tolerance: float = 0.1


def decide_on_reference(
    candidate_metrics: dict[str, Any],
    champion_metrics: dict[str, Any] | None,
    labelled: bool,
    limits: GateLimits | None = None,
) -> PromotionDecision:
    """The training flow's gate on the reference figures; see the module docstring."""
    limits = limits or GateLimits()
    candidate = dict(candidate_metrics)
    champion = None if champion_metrics is None else dict(champion_metrics)
    if champion is None:
        return _decision(True, "no champion exists yet", candidate, None, "no_champion")
    criterion = "labelled" if labelled else "label_free"
    if "gate_error" in candidate:
        why = f"the candidate cannot score the reference data: {candidate['gate_error']}"
        return _decision(False, why, candidate, champion, criterion)
    # A champion that cannot score the data is judged as having no figures: the candidate
    # must still pass its own checks (alert rate, finite figures).
    judged = _NO_FIGURES if "gate_error" in champion else champion
    fit = _fit_check(candidate, judged, labelled, limits.tolerance)
    checks = [
        fit,
        _alert_check(candidate),
        *_detection_checks(candidate, judged, limits),
        *_column_check(candidate, judged, limits.column_tolerance),
    ]
    failed = [c for c in checks if not c["passed"]]
    if failed:
        reason = "failed " + "; ".join(f"{c['name']}: {c['why']}" for c in failed)
    else:
        reason = "passed " + "; ".join(f"{c['name']}: {c['why']}" for c in checks)
    alias = CHAMPION if not failed else CHALLENGER
    return PromotionDecision(
        not failed, alias, reason, candidate, champion, criterion, tuple(checks)
    )


_NO_FIGURES = {
    key: float("nan")
    for key in (
        "gate_score_median",
        "gate_synthetic_roc_auc",
        "gate_synthetic_recall",
        "eval_average_precision",
        "eval_roc_auc",
    )
}


def _check(name: str, passed: bool, why: str, candidate: Any, champion: Any, limit: Any) -> dict:
    return {
        "name": name,
        "passed": bool(passed),
        "why": why,
        "candidate": candidate,
        "champion": champion,
        "limit": limit,
    }


def _fit_check(candidate: dict, champion: dict, labelled: bool, tolerance: float) -> dict:
    """The labelled rule, or the median rule on the reference scores."""
    if labelled:
        decision = _labelled(candidate, champion)
        ap = candidate.get("eval_average_precision")
        return _check(
            "fit",
            decision.promote,
            decision.reason,
            ap,
            champion.get("eval_average_precision"),
            "higher AP, or equal AP and ROC AUC",
        )
    median = _require(candidate, ("gate_score_median",), "candidate")["gate_score_median"]
    median0 = _require(champion, ("gate_score_median",), "champion")["gate_score_median"]
    limit = median0 + tolerance * abs(median0)
    why = (
        f"median score {median:.6g} on the reference data vs champion {median0:.6g} "
        f"(tolerance {tolerance:.1%})"
    )
    if not math.isfinite(median):
        passed = False
    else:
        passed = not math.isfinite(median0) or median <= limit
    return _check("fit", passed, why, median, median0, limit)


def _alert_check(candidate: dict) -> dict:
    figures = _require(candidate, ("gate_alert_rate_reference", "expected_alert_rate"), "candidate")
    rate, expected = figures["gate_alert_rate_reference"], figures["expected_alert_rate"]
    band = alert_rate_band(expected) if math.isfinite(expected) else float("nan")
    passed = math.isfinite(rate) and math.isfinite(expected) and abs(rate - expected) <= band
    return _check(
        "alert_rate",
        passed,
        f"alert rate {rate:.2%} on the champion's reference data vs expected {expected:.2%} "
        f"(band ±{band:.2%})",
        rate,
        None,
        [expected - band, expected + band],
    )


def _detection_checks(candidate: dict, champion: dict, limits: GateLimits) -> list[dict]:
    checks = []
    for key, name, tolerance in (
        ("gate_synthetic_roc_auc", "detection", limits.auc_tolerance),
        ("gate_synthetic_recall", "detection_at_threshold", limits.recall_tolerance),
    ):
        if key not in candidate and key not in champion:
            continue  # a model that scores series gets no synthetic rows
        value = float(candidate.get(key, float("nan")))
        value0 = float(champion.get(key, float("nan")))
        floor = value0 - tolerance
        if not math.isfinite(value):
            passed, why = False, f"{key} {_fmt(value)} is not finite"
        elif not math.isfinite(value0):
            passed, why = True, f"{key} {value:.4f}; the champion's is not finite"
        else:
            passed = value >= floor
            why = f"{key} {value:.4f} vs champion {value0:.4f} (tolerance {tolerance:g})"
        checks.append(_check(name, passed, why, value, value0, floor))
    return checks


def _column_check(candidate: dict, champion: dict, tolerance: float) -> list[dict]:
    """The column whose out-of-range anomalies the candidate lost most sight of."""
    mine, theirs = candidate.get("gate_column_auc") or {}, champion.get("gate_column_auc") or {}
    drops = {
        column: float(theirs[column]) - float(mine.get(column, float("nan")))
        for column in theirs
        if math.isfinite(float(theirs[column]))
    }
    if not drops:
        return []
    column = max(drops, key=lambda c: drops[c] if math.isfinite(drops[c]) else math.inf)
    drop, value = drops[column], float(mine.get(column, float("nan")))
    passed = math.isfinite(drop) and drop <= tolerance
    why = (
        f"worst column '{column}': ROC AUC {value:.4f} on its out-of-range values vs "
        f"champion {float(theirs[column]):.4f} (tolerance {tolerance:g})"
    )
    return [_check("columns", passed, why, value, float(theirs[column]), -tolerance)]


def _fmt(value: Any) -> str:
    return "missing" if value is None else f"{float(value):.6g}"

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

   - *Fit*: ``val_score_median`` (median per-row score, i.e. reconstruction NLL + beta *
     KL, a negative-ELBO-like quantity, lower = data explained better) of the candidate
     must not exceed the champion's by more than ``tolerance`` relative to the
     champion's: ``cand <= champ + tolerance * |champ|``. The median, not the mean,
     because production holdouts are contaminated and a few anomalies must not decide.
     Scores of two versions are comparable when both were trained with the same
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

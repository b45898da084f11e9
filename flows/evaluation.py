"""Figures of a fitted detector that the training run logs and the promotion gate compares.

Label-free figures on the shared holdout, and, with ``train.evaluation`` set, ROC AUC,
average precision and F1 on a labelled set. For the promotion gate, ``gate_data`` builds the
reference both models are judged on (the champion's stored holdout sample with the new
holdout, and synthetic anomalies injected into those rows) and ``gate_metrics`` scores one
model on it. ``training_report`` is the Markdown summary the training run logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from flows.config import TrainSettings
from flows.config.gates import PromotionGateSettings
from vae_core.errors import InputError, SchemaError
from vae_core.io import read_table
from vae_core.profile import schema_kinds
from vae_core.streaming import Detector
from vae_core.synthetic_anomalies import SyntheticAnomalies, inject_anomalies


def holdout_metrics(detector: Detector, holdout: pd.DataFrame) -> dict[str, float]:
    """Label-free figures on the shared holdout; the promotion gate compares these.

    The fit figures (``val_score_median`` here, ``gate_score_median`` and
    ``gate_new_score_median`` in ``gate_metrics``) are medians of the negative ELBO, the
    quantity training minimised: each version weighs the KL in its scores as it fitted
    (``kl_weight_``), so their scores do not compare, their ELBOs do. The names stay, and
    for models saved before the weight existed the figures are the same as before.
    """
    all_scores, losses = detector.scores_and_losses(holdout)
    scores = finite_scores(all_scores)
    threshold = detector.threshold_
    metrics = {
        "threshold": threshold.value,
        "expected_alert_rate": threshold.expected_alert_rate,
        "val_alert_rate": float(np.mean(scores > threshold.value)),
        "val_score_median": _median(finite_scores(losses)),
        "kl_weight": detector.kl_weight_,
    }
    for level in (0.5, 0.9, 0.99):
        metrics[f"val_score_q{int(level * 100)}"] = float(np.quantile(scores, level))
    return metrics


def finite_scores(scores: np.ndarray) -> np.ndarray:
    """Scores of rows that have one: a sensor model leaves rows without a full window NaN."""
    return scores[np.isfinite(scores)]


def labelled_metrics(detector: Detector, cfg: TrainSettings) -> dict[str, float]:
    evaluation = cfg.evaluation
    if evaluation is None:
        return {}
    frame = read_table(evaluation.path)
    if evaluation.label_column not in frame.columns:
        raise SchemaError(
            f"{evaluation.path}: label column '{evaluation.label_column}' is missing."
        )
    labels = (frame.pop(evaluation.label_column) == evaluation.positive_label).to_numpy()
    if labels.all() or not labels.any():
        raise SchemaError(
            f"{evaluation.path}: column '{evaluation.label_column}' needs both anomalies "
            f"(== {evaluation.positive_label!r}) and normal rows to compute ROC AUC."
        )
    scores = detector.decision_function(frame)
    windowed = np.isfinite(scores)
    labels, scores = labels[windowed], scores[windowed]
    return {
        "eval_roc_auc": float(roc_auc_score(labels, scores)),
        "eval_average_precision": float(average_precision_score(labels, scores)),
        "eval_f1": float(f1_score(labels, scores > detector.threshold_.value)),
    }


@dataclass(frozen=True)
class GateData:
    """What the promotion gate scores both models on.

    ``reference`` is the champion's stored holdout sample, which the new data cannot
    change: the checks that decide are computed on it (``clean``, with the synthetic
    ``anomalies`` made from its rows). The new ``holdout`` is scored too, for the record:
    a model fitted on broken data looks good on the same broken data, so it decides only
    when the champion has no stored sample (one trained before samples were stored).
    """

    reference: pd.DataFrame | None
    holdout: pd.DataFrame
    clean: pd.DataFrame  # the rows the checks are computed on, bounded
    anomalies: SyntheticAnomalies | None  # None: no detection check (sensor models)

    def describe(self) -> dict[str, int]:
        return {
            "gate_reference_rows": 0 if self.reference is None else len(self.reference),
            "gate_holdout_rows": len(self.holdout),
            "gate_clean_rows": len(self.clean),
            "gate_synthetic_anomalies": 0 if self.anomalies is None else len(self.anomalies.rows),
        }


def reference_sample(
    frame: pd.DataFrame, max_rows: int, seed: int, contiguous: bool = False
) -> pd.DataFrame:
    """At most ``max_rows`` rows of ``frame``, a seeded uniform sample in the original order;
    ``contiguous``: the last ``max_rows`` rows instead (a series keeps its windows)."""
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    if contiguous:
        return frame.iloc[-max_rows:].reset_index(drop=True)
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), max_rows, replace=False))
    return frame.iloc[rows].reset_index(drop=True)


def gate_data(
    reference: pd.DataFrame | None,
    holdout: pd.DataFrame,
    detectors: list[Detector],
    settings: PromotionGateSettings,
) -> GateData:
    """The rows the gate's checks use and the synthetic anomalies made from them.

    Windowed (sensor) models score series, not rows: copies of single rows mean nothing to
    them, so they get no detection check.
    """
    base = reference if reference is not None and len(reference) else holdout
    series = any(d.ordered_stream for d in detectors)
    clean = reference_sample(base, settings.reference_rows, settings.seed, contiguous=series)
    anomalies = None
    if not series and len(clean) >= 2:
        kinds: dict[str, str] = {}
        for detector in detectors:
            kinds.update(schema_kinds(detector.schema_))
        kinds = {c: k for c, k in kinds.items() if c in clean.columns}
        anomalies = inject_anomalies(clean, kinds, settings.synthetic_anomalies, settings.seed)
    return GateData(reference, holdout, clean, anomalies)


def gate_metrics(detector: Detector, data: GateData) -> dict[str, Any]:
    """One model's figures on the gate's data; ``gate_error`` when it cannot score them
    (a column it needs is not in the champion's reference data, for example)."""
    try:
        return _gate_metrics(detector, data)
    except InputError as exc:
        return {"gate_error": " ".join(str(exc).split())[:500]}


def _gate_metrics(detector: Detector, data: GateData) -> dict[str, Any]:
    """Alert rates and recall from the scores against the threshold; medians and ROC AUCs
    from the negative ELBO, the same yardstick for every version (``holdout_metrics``):
    the gate judges the models, and the KL weight each fitted is judged by benchmarks
    (the synthetic anomalies lie off the data's manifold, where a larger KL weight
    ranks a little lower: a first retraining after the weight came in could otherwise
    stay challenger against a champion scoring with the loss's weight)."""
    threshold = detector.threshold_
    clean_scores, clean = detector.scores_and_losses(data.clean)
    new_scores, new_losses = detector.scores_and_losses(data.holdout)
    metrics: dict[str, Any] = {
        "expected_alert_rate": threshold.expected_alert_rate,
        "gate_score_median": _median(finite_scores(clean)),
        "gate_alert_rate_reference": _rate(finite_scores(clean_scores), threshold.value),
        "gate_new_score_median": _median(finite_scores(new_losses)),
        "gate_new_alert_rate": _rate(finite_scores(new_scores), threshold.value),
    }
    if data.anomalies is not None:
        scores, broken = detector.scores_and_losses(data.anomalies.rows)
        metrics["gate_synthetic_roc_auc"] = _auc(clean, broken)
        metrics["gate_synthetic_recall"] = _rate(scores, threshold.value)
        for kind in sorted(set(data.anomalies.kinds)):
            metrics[f"gate_synthetic_auc_{kind}"] = _auc(
                clean, broken[data.anomalies.kinds == kind]
            )
        metrics["gate_column_auc"] = _column_aucs(clean, broken, data.anomalies)
    return metrics


#: The kinds that change one column to a value it never takes: a model that still models
#: the column notices every one of them, whatever the other columns hold.
_OUT_OF_RANGE = ("far_out", "rare_category")


def _column_aucs(clean: np.ndarray, broken: np.ndarray, made: SyntheticAnomalies) -> dict:
    """ROC AUC of the out-of-range anomalies of each column against the clean rows: how well
    the model still watches that column (about 0.5 for one it stopped modelling)."""
    out_of_range = np.isin(made.kinds, _OUT_OF_RANGE)
    aucs = {}
    for column in sorted({str(c) for c in made.columns[out_of_range]}):
        selected = out_of_range & (made.columns == column)
        aucs[column] = _auc(clean, broken[selected])
    return aucs


def _median(scores: np.ndarray) -> float:
    return float(np.median(scores)) if len(scores) else float("nan")


def _rate(scores: np.ndarray, threshold: float) -> float:
    # A non-finite score (NaN from a model that broke) is no alert.
    return float(np.mean(scores > threshold)) if len(scores) else float("nan")


def _auc(clean: np.ndarray, broken: np.ndarray) -> float:
    """ROC AUC of anomalies against clean rows; a NaN score counts as the lowest."""
    scores = np.nan_to_num(np.r_[clean, broken], nan=-np.inf, posinf=np.finfo(float).max)
    scores = np.where(np.isneginf(scores), np.finfo(float).min, scores)
    labels = np.r_[np.zeros(len(clean)), np.ones(len(broken))]
    if len(clean) == 0 or len(broken) == 0:
        return float("nan")
    return float(roc_auc_score(labels, scores))


def training_report(
    detector: Detector, metrics: dict[str, float], validation: dict[str, Any]
) -> str:
    """The run's ``training_report.md``: data, training, threshold and holdout figures."""
    lines = [
        "# Training report",
        "",
        "## Data",
        "",
        f"- rows: {validation['rows']}",
        f"- duplicate keys: {validation['duplicate_keys']}",
        f"- columns with missing values: {len(validation['null_share'])}",
        "",
        "## Training",
        "",
    ]
    for result in detector.training_results_:
        lines.append(
            f"- member {result.history[0].member if result.history else 0}: "
            f"{len(result.history)} epochs, best {result.best_epoch + 1}, "
            f"validation loss {result.best_val_loss:.4f}"
            + (" (stopped early)" if result.stopped_early else "")
        )
    threshold = detector.threshold_
    lines += [
        "",
        "## Threshold",
        "",
        f"- score: recon_error + {detector.kl_weight_:.4g} * kl",
        f"- method: {threshold.method} {threshold.params}",
        f"- value: {threshold.value:.6g}",
        f"- expected alert rate: {threshold.expected_alert_rate:.4%}",
        "",
        "## Holdout metrics",
        "",
    ]
    lines += [f"- {k}: {v:.6g}" for k, v in sorted(metrics.items())]
    return "\n".join(lines) + "\n"

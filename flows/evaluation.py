"""Figures of a fitted detector that the training run logs and the promotion gate compares.

Label-free figures on the shared holdout, and, with ``train.evaluation`` set, ROC AUC,
average precision and F1 on a labelled set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from flows.config import TrainSettings
from vae_core.errors import SchemaError
from vae_core.io import read_table
from vae_core.streaming import Detector


def holdout_metrics(detector: Detector, holdout: pd.DataFrame) -> dict[str, float]:
    """Label-free figures on the shared holdout; the promotion gate compares these."""
    scores = finite_scores(detector.decision_function(holdout))
    threshold = detector.threshold_
    metrics = {
        "threshold": threshold.value,
        "expected_alert_rate": threshold.expected_alert_rate,
        "val_alert_rate": float(np.mean(scores > threshold.value)),
        "val_score_median": float(np.median(scores)),
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

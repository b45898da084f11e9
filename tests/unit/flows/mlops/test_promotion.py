"""The promotion gate, branch by branch (pure function, no MLflow)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from flows.mlops import promotion
from flows.mlops.promotion import decide


def label_free(median: float = 10.0, alert_rate: float = 0.01, expected: float = 0.01) -> dict:
    return {
        "val_score_median": median,
        "val_alert_rate": alert_rate,
        "expected_alert_rate": expected,
        "threshold": 30.0,
    }


def labelled(ap: float, auc: float) -> dict:
    return {**label_free(), "eval_average_precision": ap, "eval_roc_auc": auc}


def test_without_a_champion_the_candidate_is_promoted():
    for is_labelled in (True, False):
        decision = decide(label_free(), None, labelled=is_labelled)
        assert decision.promote and decision.alias == "champion"
        assert decision.champion is None and decision.criterion == "no_champion"


@pytest.mark.parametrize(
    ("candidate", "champion", "promote", "why"),
    [
        ((0.60, 0.80), (0.50, 0.90), True, "higher average precision"),
        ((0.40, 0.99), (0.50, 0.80), False, "lower average precision"),
        ((0.50, 0.85), (0.50, 0.80), True, "ROC AUC at least as high"),
        ((0.50, 0.80), (0.50, 0.80), True, "ROC AUC at least as high"),
        ((0.50, 0.75), (0.50, 0.80), False, "lower ROC AUC"),
        ((math.nan, 0.9), (0.50, 0.80), False, "not finite"),
        ((0.10, 0.6), (math.nan, 0.80), True, "champion label metrics are not finite"),
    ],
)
def test_with_labels_average_precision_decides_and_roc_auc_breaks_ties(
    candidate, champion, promote, why
):
    decision = decide(labelled(*candidate), labelled(*champion), labelled=True)
    assert decision.promote is promote
    assert decision.alias == ("champion" if promote else "challenger")
    assert why in decision.reason and decision.criterion == "labelled"
    assert "AP" in decision.reason  # both figures are in the reason


def test_with_labels_the_label_free_figures_do_not_matter():
    candidate = {**labelled(0.7, 0.9), "val_score_median": 1e6, "val_alert_rate": 0.5}
    assert decide(candidate, labelled(0.6, 0.9), labelled=True).promote


def test_label_free_promotes_a_fit_within_tolerance_with_a_stable_alert_rate():
    decision = decide(
        label_free(median=10.4), label_free(median=10.0), labelled=False, tolerance=0.05
    )
    assert decision.promote and decision.criterion == "label_free"
    assert "10.4" in decision.reason and "10" in decision.reason
    assert decide(label_free(median=8.0), label_free(median=10.0), labelled=False).promote


def test_label_free_rejects_a_worse_fit_of_the_holdout():
    decision = decide(
        label_free(median=10.6), label_free(median=10.0), labelled=False, tolerance=0.05
    )
    assert not decision.promote and decision.alias == "challenger"
    assert "worse fit" in decision.reason
    assert not decide(
        label_free(median=10.01), label_free(median=10.0), labelled=False, tolerance=0.0
    ).promote


@pytest.mark.parametrize(
    ("alert_rate", "expected", "stable"),
    [
        (0.03, 0.01, True),  # band max(0.02, 0.01) = 0.02: exactly on the edge
        (0.031, 0.01, False),
        (0.0, 0.01, True),
        (0.19, 0.10, True),  # band = expected = 0.10
        (0.21, 0.10, False),
        (0.0, 0.10, True),
    ],
)
def test_label_free_requires_a_stable_alert_rate(alert_rate, expected, stable):
    candidate = label_free(median=5.0, alert_rate=alert_rate, expected=expected)
    decision = decide(candidate, label_free(median=10.0), labelled=False)
    assert decision.promote is stable
    if not stable:
        assert "alert rate unstable" in decision.reason


def test_label_free_non_finite_figures():
    assert not decide(label_free(median=math.nan), label_free(), labelled=False).promote
    assert decide(label_free(), label_free(median=math.inf), labelled=False).promote


def test_missing_metrics_are_a_clear_error():
    with pytest.raises(ValueError, match="eval_average_precision"):
        decide(label_free(), labelled(0.5, 0.5), labelled=True)
    with pytest.raises(ValueError, match="champion metrics lack"):
        decide(label_free(), {"val_alert_rate": 0.01}, labelled=False)
    with pytest.raises(ValueError, match="tolerance"):
        decide(label_free(), label_free(), labelled=False, tolerance=-0.1)


def test_decision_keeps_both_figure_sets():
    candidate, champion = label_free(median=9.0), label_free(median=10.0)
    decision = decide(candidate, champion, labelled=False)
    assert decision.candidate == candidate and decision.champion == champion
    assert decision.candidate is not candidate  # a copy: later edits cannot rewrite history


def test_promotion_module_is_pure():
    tree = ast.parse(Path(promotion.__file__).read_text(encoding="utf-8"))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    assert modules and not modules & {"mlflow", "prefect", "torch"}

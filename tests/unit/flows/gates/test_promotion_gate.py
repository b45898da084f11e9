"""The promotion gate on reference figures (``decide_on_reference``), check by check, and
the figures ``flows.evaluation`` computes for it on real models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flows.config.gates import PromotionGateSettings
from flows.evaluation import gate_data, gate_metrics, reference_sample
from flows.mlops.promotion import GateLimits, decide_on_reference
from tests.conftest import FAST_PARAMS
from vae_core import VAEAnomalyDetector


def figures(**changes: object) -> dict:
    base = {
        "expected_alert_rate": 0.02,
        "gate_score_median": 10.0,
        "gate_alert_rate_reference": 0.025,
        "gate_synthetic_roc_auc": 0.90,
        "gate_synthetic_recall": 0.60,
        "gate_column_auc": {"amount": 1.0, "fee": 0.98, "channel": 0.9},
    }
    return {**base, **changes}


def failed(decision) -> set[str]:
    return {c["name"] for c in decision.checks if not c["passed"]}


def test_no_champion_promotes() -> None:
    decision = decide_on_reference(figures(), None, labelled=False)
    assert decision.promote and decision.criterion == "no_champion" and not decision.checks


def test_an_equal_candidate_passes_every_check() -> None:
    decision = decide_on_reference(figures(), figures(), labelled=False)
    assert decision.promote and decision.alias == "champion" and not failed(decision)
    assert [c["name"] for c in decision.checks] == [
        "fit",
        "alert_rate",
        "detection",
        "detection_at_threshold",
        "columns",
    ]
    assert decision.reason.startswith("passed fit:")


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"gate_score_median": 10.6}, "fit"),
        ({"gate_alert_rate_reference": 0.0}, None),  # within max(0.02, expected) of 2%
        ({"gate_alert_rate_reference": 0.5}, "alert_rate"),
        ({"gate_synthetic_roc_auc": 0.87}, "detection"),
        ({"gate_synthetic_recall": 0.45}, "detection_at_threshold"),
        ({"gate_column_auc": {"amount": 1.0, "fee": 0.5, "channel": 0.9}}, "columns"),
        ({"gate_column_auc": {"amount": 1.0, "channel": 0.9}}, "columns"),  # fee unwatched
        ({"gate_synthetic_roc_auc": float("nan")}, "detection"),
    ],
)
def test_each_check_refuses_on_its_own(changes: dict, check: str | None) -> None:
    decision = decide_on_reference(figures(**changes), figures(), labelled=False)
    assert failed(decision) == ({check} if check else set())
    assert decision.promote is (check is None)
    if check:
        assert decision.alias == "challenger" and check in decision.reason


def test_the_worst_column_is_named_and_tolerances_are_limits() -> None:
    candidate = figures(gate_column_auc={"amount": 0.95, "fee": 0.52, "channel": 0.88})
    decision = decide_on_reference(candidate, figures(), labelled=False)
    columns = next(c for c in decision.checks if c["name"] == "columns")
    assert "'fee'" in columns["why"] and columns["candidate"] == 0.52
    loose = GateLimits(column_tolerance=0.5)
    assert decide_on_reference(candidate, figures(), False, loose).promote


def test_a_candidate_that_cannot_score_the_reference_is_not_promoted() -> None:
    candidate = {"gate_error": "column(s) ['fee'] required by the model are missing"}
    decision = decide_on_reference(candidate, figures(), labelled=False)
    assert not decision.promote and "cannot score the reference data" in decision.reason


def test_a_champion_that_cannot_score_leaves_the_candidates_own_checks() -> None:
    decision = decide_on_reference(figures(), {"gate_error": "broken"}, labelled=False)
    assert decision.promote
    bad = decide_on_reference(figures(gate_alert_rate_reference=0.6), {"gate_error": "x"}, False)
    assert failed(bad) == {"alert_rate"}


def test_with_labels_average_precision_decides_the_fit() -> None:
    labelled = {"eval_average_precision": 0.5, "eval_roc_auc": 0.8}
    worse = {"eval_average_precision": 0.4, "eval_roc_auc": 0.9}
    decision = decide_on_reference(
        figures(**worse, gate_score_median=99.0), figures(**labelled), labelled=True
    )
    assert failed(decision) == {"fit"} and "lower average precision" in decision.reason
    better = {"eval_average_precision": 0.6, "eval_roc_auc": 0.8}
    assert decide_on_reference(figures(**better), figures(**labelled), labelled=True).promote


def test_sensor_figures_without_synthetic_rows_skip_the_detection_checks() -> None:
    plain = {k: v for k, v in figures().items() if not k.startswith(("gate_synth", "gate_col"))}
    decision = decide_on_reference(plain, plain, labelled=False)
    assert decision.promote and [c["name"] for c in decision.checks] == ["fit", "alert_rate"]


# -- the figures on real models --------------------------------------------------------------
def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    return pd.DataFrame(
        {
            "a": z + rng.normal(0, 0.1, n) + shift,
            "b": 2 * z + rng.normal(0, 0.1, n),
            "kind": np.where(z > 0, "up", "down"),
        }
    )


def test_gate_figures_come_from_the_reference_rows_not_the_new_holdout() -> None:
    detector = VAEAnomalyDetector(**FAST_PARAMS).fit(frame(600, 0))
    reference, holdout = frame(300, 1), frame(200, 2, shift=5.0)
    settings = PromotionGateSettings(synthetic_anomalies=200)
    data = gate_data(reference, holdout, [detector], settings)
    assert data.clean.equals(reference) and len(data.anomalies.rows) == 200
    metrics = gate_metrics(detector, data)
    losses = detector.negative_elbo(reference)
    assert metrics["gate_score_median"] == pytest.approx(float(np.median(losses)))
    assert metrics["gate_new_score_median"] > metrics["gate_score_median"]  # the shifted rows
    assert 0.5 < metrics["gate_synthetic_roc_auc"] <= 1.0
    assert set(metrics["gate_column_auc"]) == {"a", "b", "kind"}
    assert data.describe()["gate_reference_rows"] == 300
    without = gate_data(None, holdout, [detector], settings)  # an older champion: no sample
    assert without.clean.equals(holdout)


def test_the_fit_and_detection_figures_are_the_loss_whatever_weight_the_scores_give_the_kl() -> (
    None
):
    """Two versions trained alike, one scoring with the loss's KL weight and one with its
    fitted weight: their scores differ, and the fit and detection checks, which judge the
    models, must not see a difference."""
    fitted = VAEAnomalyDetector(**FAST_PARAMS).fit(frame(600, 0))
    plain = VAEAnomalyDetector(**FAST_PARAMS, kl_weight=1.0).fit(frame(600, 0))
    assert fitted.kl_weight_ > plain.kl_weight_ == 1.0
    data = gate_data(frame(300, 1), frame(200, 2), [fitted, plain], PromotionGateSettings())
    figures_fitted, figures_plain = gate_metrics(fitted, data), gate_metrics(plain, data)
    assert np.median(fitted.decision_function(data.clean)) > figures_plain["gate_score_median"]
    for name in ("gate_score_median", "gate_new_score_median"):
        assert figures_fitted[name] == pytest.approx(figures_plain[name])
    for name in ("gate_synthetic_roc_auc", "gate_synthetic_auc_broken_correlation"):
        assert figures_fitted[name] == pytest.approx(figures_plain[name])
    assert figures_fitted["gate_column_auc"] == pytest.approx(figures_plain["gate_column_auc"])
    assert decide_on_reference(figures_fitted, figures_plain, labelled=False).promote


def test_a_model_that_cannot_score_the_reference_reports_why() -> None:
    detector = VAEAnomalyDetector(**FAST_PARAMS).fit(
        frame(300, 0).assign(extra=np.linspace(0, 1, 300))
    )
    data = gate_data(frame(100, 1), frame(100, 2), [detector], PromotionGateSettings())
    metrics = gate_metrics(detector, data)
    assert "extra" in metrics["gate_error"] and len(metrics) == 1


def test_the_reference_sample_is_bounded_seeded_and_ordered() -> None:
    rows = pd.DataFrame({"i": np.arange(1000)})
    sample = reference_sample(rows, 100, seed=0)
    assert len(sample) == 100 and sample["i"].is_monotonic_increasing
    assert sample.equals(reference_sample(rows, 100, seed=0))
    assert reference_sample(rows, 5000, seed=0).equals(rows)
    assert not sample.equals(reference_sample(rows, 100, seed=1))


def test_a_series_reference_keeps_its_latest_rows_in_one_piece() -> None:
    rows = pd.DataFrame({"i": np.arange(1000)})
    sample = reference_sample(rows, 100, seed=0, contiguous=True)
    assert sample["i"].tolist() == list(range(900, 1000))

"""The KL term's weight in the score: fitted on the reference rows, saved, and checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from tests.conftest import FAST_PARAMS, edit_manifest
from vae_core import VAEAnomalyDetector
from vae_core.errors import ModelFileError
from vae_core.kl_weight import EXPONENT, MAX_SPREAD_RATIO, fitted_kl_weight

CARDIO = Path(__file__).resolve().parents[3].parent / "shared/datasets/adbench/6_cardio.parquet"
RNG = np.random.default_rng(0)
#: Reference parts whose quartiles are known: an IQR of 8 and of 1.
RECON = np.repeat([0.0, 8.0], 50) + RNG.uniform(-1e-9, 1e-9, 100)
KL = np.repeat([0.0, 1.0], 50) + RNG.uniform(-1e-9, 1e-9, 100)


def test_the_weight_follows_the_spread_ratio_to_the_exponent() -> None:
    assert fitted_kl_weight(RECON, KL, 1.0) == pytest.approx(8.0**EXPONENT, rel=1e-6)
    # beta scales the KL part and the weight alike: the ratio is of recon to beta * kl.
    assert fitted_kl_weight(RECON, KL, 2.0) == pytest.approx(2.0 * 4.0**EXPONENT, rel=1e-6)


def test_the_weight_is_never_below_beta_nor_past_the_bound() -> None:
    assert fitted_kl_weight(KL, RECON, 1.0) == 1.0  # the KL spreads more: the loss's weight
    huge = fitted_kl_weight(RECON * 1e6, KL, 1.0)
    assert huge == pytest.approx(MAX_SPREAD_RATIO**EXPONENT)


@pytest.mark.parametrize(
    "recon, kl",
    [(RECON, np.zeros(100)), (np.ones(100), KL), (np.array([1.0]), np.array([2.0]))],
    ids=["constant kl", "constant recon", "one row"],
)
def test_parts_without_spread_keep_beta(recon: np.ndarray, kl: np.ndarray) -> None:
    assert fitted_kl_weight(recon, kl, 1.5) == 1.5


def test_non_finite_parts_are_left_out() -> None:
    recon = np.r_[RECON, np.nan, np.inf]
    kl = np.r_[KL, 1.0, np.nan]
    assert fitted_kl_weight(recon, kl, 1.0) == pytest.approx(8.0**EXPONENT, rel=1e-6)


# -- the detector ------------------------------------------------------------------------
def along_a_line(n: int, seed: int) -> pd.DataFrame:
    """Twelve columns driven by one factor, with noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    x = z[:, None] * np.linspace(0.5, 1.5, 12) + rng.normal(0, 0.3, (n, 12))
    return pd.DataFrame(x, columns=[f"c{i}" for i in range(12)])


@pytest.fixture(scope="module")
def fitted() -> VAEAnomalyDetector:
    return VAEAnomalyDetector(random_state=0, max_epochs=40).fit(along_a_line(1500, 0))


def test_the_score_is_recon_plus_the_fitted_weight_times_kl(fitted) -> None:
    frame = fitted.score_frame(along_a_line(300, 1))
    assert fitted.kl_weight_ > fitted.beta
    expected = frame["recon_error"] + fitted.kl_weight_ * frame["kl"]
    np.testing.assert_allclose(frame["score"], expected, rtol=1e-12)
    loss = fitted.negative_elbo(along_a_line(300, 1))
    np.testing.assert_allclose(loss, frame["recon_error"] + frame["kl"], rtol=1e-12)
    scores, losses = fitted.scores_and_losses(along_a_line(300, 1))  # one pass, both
    np.testing.assert_array_equal(scores, fitted.decision_function(along_a_line(300, 1)))
    np.testing.assert_array_equal(losses, loss)


@pytest.mark.skipif(
    not CARDIO.is_file(), reason="the shared datasets are not beside the repository"
)
def test_the_fitted_weight_ranks_the_cardio_anomalies_better_than_the_loss() -> None:
    """The set where the loss's weight lost most (benchmarks/README.md): one fit, and its
    scores against its own negative ELBO on the same held-out rows."""
    frame = pd.read_parquet(CARDIO)
    labels = frame.pop("label").to_numpy()
    rows = frame.to_numpy(np.float64)
    train, test, _, y = train_test_split(
        rows, labels, test_size=0.3, stratify=labels, random_state=0
    )
    detector = VAEAnomalyDetector(random_state=0).fit(train)
    loss_auc = roc_auc_score(y, detector.negative_elbo(test))
    assert roc_auc_score(y, detector.decision_function(test)) > loss_auc + 0.02


def test_a_number_fixes_the_weight_and_leaves_training_alone(fitted) -> None:
    rows = along_a_line(1500, 0)
    fixed = VAEAnomalyDetector(random_state=0, max_epochs=40, kl_weight=1.0).fit(rows)
    assert fixed.kl_weight_ == 1.0
    new = along_a_line(300, 1)
    np.testing.assert_allclose(fixed.decision_function(new), fitted.negative_elbo(new))
    assert fixed.threshold_.value < fitted.threshold_.value


def test_save_and_load_keep_the_weight(fitted, tmp_path) -> None:
    loaded = VAEAnomalyDetector.load(fitted.save(tmp_path / "m"))
    assert loaded.kl_weight_ == fitted.kl_weight_
    new = along_a_line(200, 3)
    np.testing.assert_array_equal(loaded.decision_function(new), fitted.decision_function(new))


def test_a_model_saved_before_the_weight_scores_with_beta(tmp_path) -> None:
    rows = along_a_line(600, 0)
    detector = VAEAnomalyDetector(**FAST_PARAMS).fit(rows)
    path = detector.save(tmp_path / "old")

    def as_before(manifest: dict) -> None:
        del manifest["kl_weight_"], manifest["params"]["kl_weight"]

    edit_manifest(path, as_before)
    old = VAEAnomalyDetector.load(path)
    assert old.kl_weight_ == old.beta == 1.0 and old.get_params()["kl_weight"] == 1.0
    np.testing.assert_allclose(old.decision_function(rows), detector.negative_elbo(rows))


@pytest.mark.parametrize("value", [-1.0, "heavy", None])
def test_a_saved_weight_that_is_no_weight_is_refused(fitted, tmp_path, value) -> None:
    path = fitted.save(tmp_path / "m")
    edit_manifest(path, lambda manifest: manifest.update(kl_weight_=value))
    with pytest.raises(ModelFileError, match="kl_weight_"):
        VAEAnomalyDetector.load(path)


@pytest.mark.parametrize("value", [-0.5, float("inf"), "fitted", None])
def test_a_kl_weight_that_is_no_weight_is_refused_before_fitting(value) -> None:
    with pytest.raises(ValueError, match="kl_weight"):
        VAEAnomalyDetector(kl_weight=value).fit(along_a_line(100, 0))

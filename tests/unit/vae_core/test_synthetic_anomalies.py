"""Synthetic anomalies: each kind changes what it says, seeded, and a fitted model sees them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tests.conftest import FAST_PARAMS
from vae_core import VAEAnomalyDetector
from vae_core.profile import infer_kind
from vae_core.synthetic_anomalies import ANOMALY_KINDS, RARE_LEVEL, inject_anomalies


def clean_rows(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "a": z + rng.normal(0, 0.1, n),
            "b": 2 * z + rng.normal(0, 0.1, n),
            "count": rng.poisson(5, n).astype(np.int64),
            "colour": np.where(z > 0, "red", "blue"),
            "flag": z > 0.5,
        }
    )


def kinds_of(frame: pd.DataFrame) -> dict[str, str]:
    return {c: infer_kind(frame[c]) for c in frame.columns if c != "id"}


def test_each_kind_changes_what_it_says() -> None:
    clean = clean_rows()
    made = inject_anomalies(clean, kinds_of(clean), 40, seed=1)
    assert list(made.rows.columns) == list(clean.columns)
    assert set(made.kinds) == set(ANOMALY_KINDS) and len(made.rows) == 40
    source = clean.iloc[made.sources].reset_index(drop=True)
    assert (made.rows["id"] == source["id"]).all()  # keys carried unchanged
    changed = made.rows.drop(columns="id").ne(source.drop(columns="id"))
    assert changed.any(axis=1).sum() >= 36  # nearly every copy differs from its row
    far = made.kinds == "far_out"
    values = made.rows.loc[far, ["a", "b", "count"]]
    low, high = clean[["a", "b", "count"]].quantile(0.01), clean[["a", "b", "count"]].quantile(0.99)
    outside = (values > high + 5 * (high - low)) | (values < low - 5 * (high - low))
    assert outside.any(axis=1).all()
    rare = made.rows.loc[made.kinds == "rare_category", "colour"]
    assert set(rare) == {RARE_LEVEL}  # red and blue are both common
    broken = made.kinds == "broken_correlation"
    assert changed.loc[broken, ["a", "b", "count"]].sum(axis=1).eq(1).all()
    assert made.rows["count"].dtype == np.int64 and made.rows["flag"].dtype == bool


def test_same_seed_same_anomalies_and_kinds_follow_the_columns() -> None:
    clean = clean_rows()
    one = inject_anomalies(clean, kinds_of(clean), 30, seed=3)
    two = inject_anomalies(clean, kinds_of(clean), 30, seed=3)
    pd.testing.assert_frame_equal(one.rows, two.rows)
    other = inject_anomalies(clean, kinds_of(clean), 30, seed=4)
    assert not one.rows.equals(other.rows)
    numbers_only = clean[["a", "b"]]
    made = inject_anomalies(numbers_only, kinds_of(numbers_only), 9, seed=0)
    assert set(made.kinds) == {"far_out", "swapped_columns", "broken_correlation"}
    with pytest.raises(ValueError, match="unknown anomaly kinds"):
        inject_anomalies(clean, kinds_of(clean), 5, anomaly_kinds=("typo",))
    with pytest.raises(ValueError, match="at least 2"):
        inject_anomalies(clean.head(1), kinds_of(clean), 5)


def test_a_rare_level_that_exists_is_used() -> None:
    clean = clean_rows()
    clean.loc[:5, "colour"] = "green"
    made = inject_anomalies(clean, kinds_of(clean), 20, anomaly_kinds=("rare_category",))
    rows = made.rows["colour"]
    assert set(rows) <= {"green", RARE_LEVEL}
    assert (rows == "green").any()


def test_a_fitted_model_separates_the_anomalies_from_clean_rows() -> None:
    train, held_out = clean_rows(600, seed=0), clean_rows(300, seed=1)
    detector = VAEAnomalyDetector(**FAST_PARAMS, key_columns=("id",)).fit(train)
    made = inject_anomalies(held_out, kinds_of(held_out), 200, seed=0)
    clean_scores, scores = (
        detector.decision_function(held_out),
        detector.decision_function(made.rows),
    )

    def auc(selected: np.ndarray) -> float:
        labels = np.r_[np.zeros(len(clean_scores)), np.ones(selected.sum())]
        return roc_auc_score(labels, np.r_[clean_scores, scores[selected]])

    # Values far out and levels never seen are plain to any model; broken correlations and
    # swapped columns only where columns move together (count and flag move with nothing).
    assert auc(made.kinds == "far_out") > 0.99 and auc(made.kinds == "rare_category") > 0.95
    assert auc(made.kinds == made.kinds) > 0.7

"""Tail evidence of discrete numeric columns: the levels kept, the figure, the score."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.conftest import edit_manifest
from vae_core import VAEAnomalyDetector
from vae_core.discrete_tails import (
    FLAG_WEIGHT,
    OFFSET,
    WEIGHT,
    DiscreteTails,
    FlagTails,
    level_table,
)
from vae_core.errors import ModelFileError

LEVELS, COUNTS = [0.0, 1.0, 2.0, 3.0, 4.0], [50.0, 20.0, 15.0, 10.0, 5.0]  # 100 rows


def expected_evidence(at_most: float, at_least: float, n: float = 100.0) -> float:
    """The module's rule, written out: Laplace-smoothed two-sided tail, beyond OFFSET."""
    p = 2.0 * (min(at_most, at_least) + 1.0) / (n + 2.0)
    return WEIGHT * max(0.0, -math.log(p) - OFFSET)


def table_of(observed: np.ndarray) -> dict | None:
    """The level table of a column's observed values, as the preprocessing builds it."""
    return level_table(*np.unique(observed, return_counts=True))


def test_only_columns_with_three_to_thirty_two_finite_levels_keep_a_table() -> None:
    assert table_of(np.array([0.0, 1.0, 1.0, 0.0])) is None  # a flag
    assert table_of(np.arange(33.0)) is None  # continuous enough
    assert table_of(np.array([0.0, 1.0, 2.0, np.inf])) is None
    table = table_of(np.repeat([0.0, 1.0, 2.0], [3, 2, 1]))
    assert table == {"discrete_values": [0.0, 1.0, 2.0], "discrete_counts": [3.0, 2.0, 1.0]}


def test_evidence_of_levels_between_beyond_and_missing() -> None:
    tails = DiscreteTails(
        [
            {"name": "x", "centre": 0.0, "scale": 1.0},  # continuous: no evidence
            {
                "name": "grade",
                "discrete_values": [0.0, 1.0, 2.0, 3.0, 4.0],
                "discrete_counts": COUNTS,
            },
        ]
    )
    assert tails.names == ("grade",) and tails.positions == [1]
    values = np.array([0.0, 1.0, 3.0, 4.0, 2.5, 10.0, -1.0, np.nan])
    raw = np.column_stack([np.zeros(len(values)), values])
    got = tails.terms(raw)[:, 0]
    expected = [
        expected_evidence(50, 100),  # the mode: no evidence
        expected_evidence(70, 50),
        expected_evidence(95, 15),
        expected_evidence(100, 5),  # the top level, 5% of rows
        expected_evidence(85, 15),  # between levels: as rare as the level above it
        expected_evidence(100, 0),  # beyond every training value
        expected_evidence(0, 100),
        0.0,  # missing: charged by the missing-value terms, not here
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[0] == 0.0 and got[5] == got[6] > got[3] > got[2] > 0.0


def test_flag_evidence_sums_the_rarer_side_beyond_the_training_median() -> None:
    # Two flags: the first set in 10 of 100 training rows, the second in 50.
    categorical = [
        {"name": "a", "numeric_values": [0.0, 1.0], "flag_counts": [90.0, 10.0]},
        {"name": "text", "levels": ["x", "y", "__unseen__"]},  # not a flag: no evidence
        {"name": "b", "numeric_values": [0.0, 1.0], "flag_counts": [50.0, 50.0]},
    ]
    right_a, right_b = -math.log(11 / 102), -math.log(51 / 102)
    left_a, left_b = -math.log(91 / 102), -math.log(51 / 102)
    flags = FlagTails(categorical, median=1.0)
    assert flags.names == ("a", "b") and flags.positions == [0, 2]
    codes = np.array([[1, 1], [0, 0], [1, -1], [2, 0], [0, 1]])
    np.testing.assert_allclose(
        flags.row_sums(codes),
        [
            right_a + right_b,  # both set: the right side
            left_a + left_b,  # neither set: the left side
            right_a,  # b missing: no cost
            left_b,  # a's value never seen in training: no cost here (the unseen floor)
            max(left_a + -math.log(101 / 102), -math.log(101 / 102) + right_b),
        ],
        rtol=1e-9,
    )
    terms = flags.terms(codes)
    total = right_a + right_b
    expected = FLAG_WEIGHT * (total - 1.0) * np.array([right_a, right_b]) / total
    np.testing.assert_allclose(terms[0], expected, rtol=1e-5)
    assert terms[1].sum() == 0.0  # left_a + left_b = 0.81 is below the median
    np.testing.assert_allclose(
        terms.sum(axis=1), FLAG_WEIGHT * np.maximum(0, flags.row_sums(codes) - 1.0), rtol=1e-5
    )


def discrete_frame(n_rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n_rows)
    return pd.DataFrame(
        {
            "level": np.clip(np.round(2 + 1.5 * z + rng.normal(0, 0.5, n_rows)), 0, 6),
            "amount": z + rng.normal(0, 0.3, n_rows),
            "flag": (z > 0.5).astype(float),
        }
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[VAEAnomalyDetector, VAEAnomalyDetector, pd.DataFrame]:
    frame = discrete_frame()
    params = {"max_epochs": 5, "hidden_sizes": (8,), "latent_dim": 2, "random_state": 0}
    with_tails = VAEAnomalyDetector(**params).fit(frame)
    without = VAEAnomalyDetector(**params, discrete_tails=False).fit(frame)
    return with_tails, without, frame


def column_terms(detector: VAEAnomalyDetector, rows: pd.DataFrame) -> pd.DataFrame:
    """Each row's term per column (its share of ``recon_error`` times ``recon_error``)."""
    arrays = detector.score_arrays(detector.encode(rows))
    terms = arrays.contributions * arrays.recon_error[:, None]
    return pd.DataFrame(terms, columns=list(arrays.feature_names)).assign(kl=arrays.kl)


def test_the_evidence_adds_to_its_columns_and_nothing_else(fitted) -> None:
    with_tails, without, _ = fitted
    state = with_tails.preprocessor_.to_dict()
    assert [c["name"] for c in state["numeric"] if "discrete_values" in c] == ["level"]
    assert [c["name"] for c in state["categorical"] if "flag_counts" in c] == ["flag"]
    assert with_tails.preprocessor_.layout.tail_columns == ("level", "flag")
    plain = without.preprocessor_.to_dict()
    assert not any("discrete_values" in c for c in plain["numeric"])
    assert not any("flag_counts" in c for c in plain["categorical"])
    rows = pd.DataFrame(
        {"level": [2.0, 6.0, 9.0, np.nan, 2.0], "amount": 0.0, "flag": [0.0, 0, 0, 0, 1]}
    )
    a, b = column_terms(with_tails, rows), column_terms(without, rows)
    # Training never sees the evidence: same seed, same networks, same KL and amount term.
    np.testing.assert_allclose(a["kl"], b["kl"], rtol=1e-6)
    np.testing.assert_allclose(a["amount"], b["amount"], rtol=1e-5, atol=1e-6)
    level = DiscreteTails(state["numeric"]).terms(rows[["level", "amount"]].to_numpy())[:, 0]
    np.testing.assert_allclose(a["level"] - b["level"], level, rtol=1e-4, atol=1e-5)
    assert level[0] == 0.0 and level[2] > level[1] > 0.0 and level[3] == 0.0
    flags = FlagTails(state["categorical"], state["flag_tail_median"])
    codes = (rows[["flag"]].to_numpy() == 1.0).astype(np.int64)
    flag = flags.terms(codes)[:, 0]
    np.testing.assert_allclose(a["flag"] - b["flag"], flag, rtol=1e-4, atol=1e-5)
    # The flag is set in about a third of the training rows: set, it is the rarer side.
    assert flag[4] > 0.0 and not flag[:4].any()


def test_a_saved_model_scores_the_same_after_loading(fitted, tmp_path) -> None:
    with_tails, _, frame = fitted
    with_tails.save(tmp_path / "model")
    loaded = VAEAnomalyDetector.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.score_samples(frame), with_tails.score_samples(frame))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["discrete_values"].reverse(), "must be strictly increasing"),
        (lambda c: c["discrete_counts"].pop(), "discrete_counts' has"),
        (lambda c: c["discrete_values"].__setitem__(0, "low"), "must be a number"),
        (lambda c: c["discrete_counts"].__setitem__(1, -4.0), "outside"),
    ],
    ids=["unsorted", "counts_short", "text_level", "negative_count"],
)
def test_an_edited_level_table_is_refused_naming_the_field(fitted, tmp_path, edit, message):
    with_tails, _, _ = fitted
    model = tmp_path / "model"
    with_tails.save(model)

    def edit_the_discrete_column(manifest: dict) -> None:
        (column,) = [c for c in manifest["preprocessing"]["numeric"] if "discrete_values" in c]
        edit(column)

    edit_manifest(model, edit_the_discrete_column)
    with pytest.raises(ModelFileError, match=message) as raised:
        VAEAnomalyDetector.load(model)
    assert "preprocessing.numeric[" in str(raised.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: _flag(m)["flag_counts"].append(3.0), "flag_counts' lists 3 items"),
        (lambda m: _flag(m)["flag_counts"].__setitem__(0, float("nan")), "finite number"),
        (lambda m: m["preprocessing"].update(flag_tail_median=-1.0), "flag_tail_median"),
    ],
    ids=["three_counts", "nan_count", "negative_median"],
)
def test_an_edited_flag_table_is_refused_naming_the_field(fitted, tmp_path, edit, message):
    with_tails, _, _ = fitted
    model = tmp_path / "model"
    with_tails.save(model)
    edit_manifest(model, edit)
    with pytest.raises(ModelFileError, match=message):
        VAEAnomalyDetector.load(model)


def _flag(manifest: dict) -> dict:
    (column,) = [c for c in manifest["preprocessing"]["categorical"] if "flag_counts" in c]
    return column

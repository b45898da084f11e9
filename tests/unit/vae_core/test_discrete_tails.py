"""Tail evidence of discrete numeric columns: the levels kept, the figure, the score."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from vae_core import VAEAnomalyDetector
from vae_core.discrete_tails import OFFSET, WEIGHT, DiscreteTails, level_table
from vae_core.errors import ModelFileError
from vae_core.model_files import write_file_list
from vae_core.persistence import MANIFEST_NAME

LEVELS, COUNTS = [0.0, 1.0, 2.0, 3.0, 4.0], [50.0, 20.0, 15.0, 10.0, 5.0]  # 100 rows


def expected_evidence(at_most: float, at_least: float, n: float = 100.0) -> float:
    """The module's rule, written out: Laplace-smoothed two-sided tail, beyond OFFSET."""
    p = 2.0 * (min(at_most, at_least) + 1.0) / (n + 2.0)
    return WEIGHT * max(0.0, -math.log(p) - OFFSET)


def test_only_columns_with_three_to_thirty_two_finite_levels_keep_a_table() -> None:
    assert level_table(np.array([0.0, 1.0, 1.0, 0.0])) is None  # a flag
    assert level_table(np.arange(33.0)) is None  # continuous enough
    assert level_table(np.array([0.0, 1.0, 2.0, np.inf])) is None
    table = level_table(np.repeat([0.0, 1.0, 2.0], [3, 2, 1]))
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


def test_the_evidence_adds_to_its_column_and_nothing_else(fitted) -> None:
    with_tails, without, frame = fitted
    state = with_tails.preprocessor_.to_dict()
    assert [c["name"] for c in state["numeric"] if "discrete_values" in c] == ["level"]
    assert not any("discrete_values" in c for c in without.preprocessor_.to_dict()["numeric"])
    rows = pd.DataFrame({"level": [2.0, 6.0, 9.0, np.nan], "amount": 0.0, "flag": 0.0})
    a, b = with_tails.score_frame(rows, top_k=0), without.score_frame(rows, top_k=0)
    # Training never sees the evidence: same seed, same networks, same KL.
    np.testing.assert_allclose(a["kl"], b["kl"], rtol=1e-6)
    added = (a["recon_error"] - b["recon_error"]).to_numpy()
    raw = rows[["level", "amount"]].to_numpy(np.float64)
    evidence = DiscreteTails(state["numeric"]).terms(raw)[:, 0]
    np.testing.assert_allclose(added, evidence, rtol=1e-5, atol=1e-5)
    assert added[0] == pytest.approx(0.0, abs=1e-6) and added[2] > added[1] > 0.0
    assert added[3] == pytest.approx(0.0, abs=1e-6)


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
    manifest = json.loads((model / MANIFEST_NAME).read_text())
    (column,) = [c for c in manifest["preprocessing"]["numeric"] if "discrete_values" in c]
    edit(column)
    (model / MANIFEST_NAME).write_text(json.dumps(manifest))
    write_file_list(model)  # as someone who also rewrote the checksums would
    with pytest.raises(ModelFileError, match=message) as raised:
        VAEAnomalyDetector.load(model)
    assert "preprocessing.numeric[" in str(raised.value)

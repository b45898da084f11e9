"""Deterministic batched scores, per-column contributions and the score frame."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from vae_core.features import EncodedData, FeatureLayout, Preprocessor
from vae_core.losses import Batch, kl_to_standard_normal, reconstruction_terms
from vae_core.model import TabularVAE, VAEArchitecture
from vae_core.schema import infer_schema
from vae_core.score_terms import student_t_terms
from vae_core.scoring import (
    CPU_CHUNK_CELLS,
    DEVICE_CHUNK_ROWS,
    MIN_CHUNK_ROWS,
    ScoreArrays,
    chunk_rows,
    level_rarity_terms,
    score_encoded,
    to_frame,
)


@pytest.fixture(scope="module")
def encoded_setup():
    rng = np.random.default_rng(0)
    n = 64
    frame = pd.DataFrame(
        {
            "a": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "b": rng.normal(size=n),
            "c": rng.choice(["x", "y", "z"], n),
            "d": pd.Series(np.where(rng.random(n) < 0.2, None, rng.choice(["p", "q"], n))),
        }
    )
    pre = Preprocessor.fit(frame, infer_schema(frame))
    layout = pre.layout
    arch = VAEArchitecture(
        input_dim=layout.input_dim,
        n_numeric=len(layout.numeric_columns),
        cardinalities=layout.cardinalities,
        n_missing=len(layout.missing_columns),
        hidden_sizes=(16, 8),
        latent_dim=2,
    )
    torch.manual_seed(0)
    models = [TabularVAE(arch), TabularVAE(arch)]
    return pre.transform(frame), layout, models


def test_feature_names_merge_missing_flags_into_their_column(encoded_setup):
    encoded, layout, models = encoded_setup
    assert layout.missing_columns == ("a", "d")
    scores = score_encoded(models[:1], encoded, layout, kl_weight=1.0)
    assert scores.feature_names == ("a", "b", "c", "d")
    assert scores.contributions.shape == (len(encoded), 4)


def test_scores_match_the_loss_terms(encoded_setup):
    encoded, layout, models = encoded_setup
    model = models[0]
    scores = score_encoded([model], encoded, layout, kl_weight=0.7)
    with torch.inference_mode():
        batch = Batch.from_encoded(encoded)
        out = model.eval()(batch.inputs)
        terms = reconstruction_terms(out, batch, layout.cardinalities, False).double().numpy()
        kl = kl_to_standard_normal(out.mu, out.logvar).double().numpy()
    rarity = level_rarity_terms(encoded, layout)
    # terms: a, b (numeric), c, d (categorical), a, d (missing flags); c and d also carry
    # the rarity of their level.
    per_column = np.stack(
        [
            terms[:, 0] + terms[:, 4],
            terms[:, 1],
            terms[:, 2] + rarity[:, 0],
            terms[:, 3] + terms[:, 5] + rarity[:, 1],
        ],
        axis=1,
    )
    np.testing.assert_allclose(scores.recon_error, per_column.sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(scores.kl, kl, rtol=1e-6)
    np.testing.assert_allclose(scores.score, scores.recon_error + 0.7 * scores.kl, rtol=1e-12)
    np.testing.assert_allclose(
        scores.contributions, per_column / per_column.sum(axis=1, keepdims=True), rtol=1e-5
    )
    assert (scores.recon_error >= 0).all()
    np.testing.assert_allclose(scores.contributions.sum(axis=1), 1.0, rtol=1e-9)


def test_level_rarity_terms_follow_the_layout(encoded_setup):
    encoded, layout, _ = encoded_setup
    rarity = level_rarity_terms(encoded, layout)
    assert rarity.shape == (len(encoded), 2)
    for j, levels in enumerate(layout.category_rarity):
        codes = encoded.categories[:, j]
        observed = codes >= 0
        np.testing.assert_allclose(rarity[observed, j], np.asarray(levels)[codes[observed]])
        assert (rarity[~observed, j] == 0).all()  # a missing value has no level to charge
    assert level_rarity_terms(encoded, dataclasses.replace(layout, category_rarity=())) is None


def test_student_t_terms_are_gaussian_near_the_mean_and_logarithmic_far_out():
    z = torch.tensor([0.0, 0.1, 1.0, 10.0, 100.0], dtype=torch.float64)
    gaussian = (0.5 * z**2)[:, None]
    other = torch.full_like(gaussian, 7.0)  # a categorical term: left as it is
    out = student_t_terms(torch.cat([gaussian, other], dim=1), n_numeric=1, dof=30.0)
    heavy = out[:, 0]
    expected = 15.5 * torch.log1p(z**2 / 30.0)
    torch.testing.assert_close(heavy, expected)
    torch.testing.assert_close(out[:, 1], other[:, 0])
    assert heavy[0] == 0 and (heavy.diff() > 0).all()  # order within the column is kept
    assert heavy[1] == pytest.approx(gaussian[1, 0].item(), rel=0.05)
    assert heavy[4] < 0.02 * gaussian[4, 0]  # 100 units out costs ~130 nats, not 5,000
    same = student_t_terms(gaussian, n_numeric=1, dof=None)
    assert same is gaussian


def test_numeric_dof_rescores_only_the_numeric_terms(encoded_setup):
    encoded, layout, models = encoded_setup
    gaussian = score_encoded(models[:1], encoded, layout, kl_weight=1.0)
    heavy = score_encoded(models[:1], encoded, layout, kl_weight=1.0, numeric_dof=5.0)
    with torch.inference_mode():
        batch = Batch.from_encoded(encoded)
        out = models[0].eval()(batch.inputs)
        terms = reconstruction_terms(out, batch, layout.cardinalities, False).double()
    numeric = terms[:, :2].numpy()
    student = 3.0 * np.log1p(2.0 * numeric / 5.0)
    gaussian_part = gaussian.contributions[:, :2] * gaussian.recon_error[:, None]
    heavy_part = heavy.contributions[:, :2] * heavy.recon_error[:, None]
    # Columns a, b: numeric term (replaced) plus a's missing flag (kept).
    np.testing.assert_allclose(heavy_part - gaussian_part, student - numeric, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        heavy.contributions[:, 2:] * heavy.recon_error[:, None],
        gaussian.contributions[:, 2:] * gaussian.recon_error[:, None],
        rtol=1e-6,
    )
    np.testing.assert_array_equal(heavy.kl, gaussian.kl)


def test_scores_are_deterministic_and_batch_size_independent(encoded_setup):
    encoded, layout, models = encoded_setup
    whole = score_encoded(models, encoded, layout, kl_weight=1.0)
    again = score_encoded(models, encoded, layout, kl_weight=1.0)
    np.testing.assert_array_equal(whole.score, again.score)
    chunked = score_encoded(models, encoded, layout, kl_weight=1.0, batch_size=5)
    np.testing.assert_allclose(chunked.score, whole.score, rtol=1e-5)
    np.testing.assert_allclose(chunked.contributions, whole.contributions, rtol=1e-4, atol=1e-7)


def test_cpu_chunks_are_sized_by_the_widest_layer(encoded_setup):
    _, layout, models = encoded_setup
    narrow = chunk_rows(models, layout, "cpu")  # widest: 16 hidden units
    assert narrow == CPU_CHUNK_CELLS // 16
    wide_arch = dataclasses.replace(models[0].arch, hidden_sizes=(4096, 8))
    assert chunk_rows([TabularVAE(wide_arch)], layout, "cpu") == MIN_CHUNK_ROWS
    assert chunk_rows(models, layout, "cuda") == DEVICE_CHUNK_ROWS
    with pytest.raises(ValueError, match="at least one model"):
        score_encoded([], encoded_setup[0], layout, kl_weight=1.0)
    # More rows than a chunk: scored in two, as they would be in one forward pass.
    encoded = encoded_setup[0]
    rows = np.arange(narrow + 100) % len(encoded)
    many = encoded.take(rows)
    chunked = score_encoded(models, many, layout, kl_weight=1.0)
    whole = score_encoded(models, many, layout, kl_weight=1.0, batch_size=len(rows))
    np.testing.assert_allclose(chunked.score, whole.score, rtol=1e-5)
    np.testing.assert_allclose(chunked.contributions, whole.contributions, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("dof", [None, 30.0])
def test_ensemble_scores_are_member_means(encoded_setup, dof):
    encoded, layout, models = encoded_setup
    first = score_encoded(models[:1], encoded, layout, kl_weight=1.0, numeric_dof=dof)
    second = score_encoded(models[1:], encoded, layout, kl_weight=1.0, numeric_dof=dof)
    both = score_encoded(models, encoded, layout, kl_weight=1.0, numeric_dof=dof)
    # The level rarity does not depend on the model: added once, it survives the mean.
    np.testing.assert_allclose(both.recon_error, (first.recon_error + second.recon_error) / 2)
    np.testing.assert_allclose(both.kl, (first.kl + second.kl) / 2)
    twice = score_encoded([models[0], models[0]], encoded, layout, kl_weight=1.0, numeric_dof=dof)
    np.testing.assert_array_equal(twice.score, first.score)


def test_scoring_leaves_models_in_eval_mode(encoded_setup):
    encoded, layout, models = encoded_setup
    models[0].train()
    score_encoded(models[:1], encoded, layout, kl_weight=1.0)
    assert not models[0].training


def hand_made_scores() -> ScoreArrays:
    contributions = np.array([[0.1, 0.6, 0.3, 0.0], [0.25, 0.25, 0.0, 0.5], [0, 0, 0, 0]])
    recon = np.array([1.0, 4.0, 0.0])
    kl = np.array([0.5, 0.5, 0.0])
    return ScoreArrays(recon, kl, recon + 2 * kl, contributions, ("p", "q", "r", "s"))


def test_to_frame_ranks_features_by_share():
    index = pd.Index(["r1", "r2", "r3"], name="key")
    frame = to_frame(hand_made_scores(), threshold=2.0, index=index)
    assert frame.index.equals(index)
    assert list(frame["score"]) == [2.0, 5.0, 0.0]
    assert list(frame["is_anomaly"]) == [False, True, False]  # strictly above the threshold
    assert list(frame.loc["r1", ["top_feature_1", "top_feature_2", "top_feature_3"]]) == [
        "q",
        "r",
        "p",
    ]
    assert frame.loc["r1", "top_feature_1_share"] == 0.6
    # ties keep column order
    assert list(frame.loc["r2", ["top_feature_1", "top_feature_2", "top_feature_3"]]) == [
        "s",
        "p",
        "q",
    ]


@pytest.mark.parametrize(("top_k", "expected"), [(0, 0), (2, 2), (10, 4)])
def test_to_frame_top_k_is_capped_by_the_number_of_features(top_k, expected):
    frame = to_frame(hand_made_scores(), threshold=1.0, index=pd.RangeIndex(3), top_k=top_k)
    assert sum(c.startswith("top_feature_") and not c.endswith("_share") for c in frame) == (
        expected
    )
    assert list(frame.columns[:4]) == ["recon_error", "kl", "score", "is_anomaly"]


def test_top_k_columns_matches_a_stable_sort_including_ties() -> None:
    from vae_core.scoring import top_k_columns

    rng = np.random.default_rng(0)
    values = rng.integers(0, 4, size=(500, 9)).astype(float)  # many ties
    values[3] = 0.0
    values[7, 2] = np.nan  # never ranked above a number
    expected = np.argsort(-np.nan_to_num(values, nan=-np.inf), axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(top_k_columns(values, 3), expected)
    # Without any NaN (the common case, which skips the NaN mapping), and with infinities.
    values[7, 2] = 1.0
    values[11, [1, 4]] = np.inf
    values[12, 5] = -np.inf
    expected = np.argsort(-values, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(top_k_columns(values, 3), expected)
    assert top_k_columns(values, 3)[11, :2].tolist() == [1, 4]


def test_an_unseen_category_costs_at_least_a_laplace_floor(encoded_setup):
    """An untrained decoder gives every level about the same probability; a level never
    seen in 64 training rows must still cost at least log(64 + 2) nats, seen ones less."""
    encoded, layout, models = encoded_setup
    pre_levels = layout.cardinalities[0]  # column 'c': x, y, z, __unseen__
    unseen = encoded.categories.copy()
    unseen[:, 0] = pre_levels - 1
    changed = type(encoded)(
        encoded.inputs, encoded.numeric, encoded.numeric_mask, unseen, encoded.missing
    )
    seen = score_encoded(models[:1], encoded, layout, kl_weight=1.0)
    scored = score_encoded(models[:1], changed, layout, kl_weight=1.0)
    column = scored.feature_names.index("c")
    nll_seen = seen.contributions[:, column] * seen.recon_error
    nll_unseen = scored.contributions[:, column] * scored.recon_error
    assert np.all(nll_seen < np.log(66))
    # The floor bounds the reconstruction part; the level's rarity in training comes on top.
    unseen_rarity = layout.category_rarity[0][-1]
    assert unseen_rarity > 0
    np.testing.assert_allclose(nll_unseen, np.log(66) + unseen_rarity, rtol=1e-5)


def test_level_rarity_terms_look_up_each_columns_own_rarities():
    """One flat lookup for every column: each code finds its own column's rarity, and a
    missing level (code -1) costs nothing."""
    layout = FeatureLayout(
        numeric_columns=(),
        categorical_columns=("a", "b", "c"),
        cardinalities=(3, 2, 4),
        missing_columns=(),
        category_rarity=((0.0, 1.5, 4.0), (0.0, 0.0), (0.0, 0.5, 2.0, 7.0)),
    )
    codes = np.array([[0, 1, 3], [2, -1, 1], [-1, 0, 2], [1, 1, -1]], dtype=np.int64)
    empty = np.zeros((4, 0), dtype=np.float32)
    data = EncodedData(empty, empty, empty, codes, empty)
    expected = [[0.0, 0.0, 7.0], [4.0, 0.0, 0.5], [0.0, 0.0, 2.0], [1.5, 0.0, 0.0]]
    np.testing.assert_array_equal(level_rarity_terms(data, layout), expected)

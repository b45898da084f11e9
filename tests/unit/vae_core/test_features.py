"""Preprocessing: robust scaling, tail compression, categories, missing values, JSON state."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from vae_core.errors import EmptyInputError
from vae_core.features import (
    DEFAULT_SOFT_CLIP,
    RARE_LEVEL,
    UNSEEN_LEVEL,
    ConstantColumnWarning,
    EncodedData,
    Preprocessor,
    compress_tail,
    level_rarity,
)
from vae_core.schema import infer_schema


def fit(frame: pd.DataFrame, **kwargs) -> Preprocessor:
    return Preprocessor.fit(frame, infer_schema(frame), **kwargs)


def assert_encoded_equal(a: EncodedData, b: EncodedData) -> None:
    for name in ("inputs", "numeric", "numeric_mask", "categories", "missing"):
        left, right = getattr(a, name), getattr(b, name)
        assert left.dtype == right.dtype, name
        np.testing.assert_array_equal(left, right, err_msg=name)


# -- numeric scaling ---------------------------------------------------------------------


def test_robust_scaling_survives_an_extreme_training_value():
    rng = np.random.default_rng(0)
    values = rng.normal(loc=50.0, scale=2.0, size=999)
    frame = pd.DataFrame({"v": np.append(values, 1e9)})
    pre = fit(frame)
    scaled = pre.transform(frame).numeric[:, 0]
    inliers, outlier = scaled[:-1], scaled[-1]
    # median/IQR scaling: the inliers keep a spread of about one unit around 0, where
    # min-max scaling would squeeze them all into ~1e-9 of the range.
    assert abs(np.median(inliers)) < 0.2
    assert 0.8 < inliers.std() < 1.25
    assert np.isfinite(outlier)
    assert outlier > inliers.max() + 10


def test_sparse_column_with_zero_iqr_keeps_its_information():
    values = np.zeros(200)
    values[::10] = np.arange(1, 21)  # 10% non-zero counts, IQR is 0
    frame = pd.DataFrame({"v": values})
    scaled = fit(frame).transform(frame).numeric[:, 0]
    assert np.isfinite(scaled).all()
    assert np.unique(scaled).size == 21
    assert (np.diff(scaled[::10]) > 0).all()  # larger counts stay larger


def test_compress_tail_is_linear_inside_soft_clip():
    z = np.linspace(-DEFAULT_SOFT_CLIP, DEFAULT_SOFT_CLIP, 101)
    np.testing.assert_array_equal(compress_tail(z, DEFAULT_SOFT_CLIP), z)


def test_compress_tail_keeps_order_and_is_continuous():
    z = np.concatenate([-np.logspace(12, -3, 300), [0.0], np.logspace(-3, 12, 300)])
    out = compress_tail(z, DEFAULT_SOFT_CLIP)
    assert np.isfinite(out).all()
    assert (np.diff(out) > 0).all()  # strictly increasing up to 1e12 scale units
    just_out = compress_tail(np.array([DEFAULT_SOFT_CLIP + 1e-9]), DEFAULT_SOFT_CLIP)
    assert just_out[0] == pytest.approx(DEFAULT_SOFT_CLIP, abs=1e-6)
    # far values are compressed: 1000 units out is much less than 1000
    assert compress_tail(np.array([1000.0]), DEFAULT_SOFT_CLIP)[0] < DEFAULT_SOFT_CLIP + 10


def test_compress_tail_compresses_far_values_beside_nan_and_accepts_no_rows():
    z = np.array([[np.nan, 1000.0], [-1000.0, 1.0]])
    out = compress_tail(z, DEFAULT_SOFT_CLIP)
    assert np.isnan(out[0, 0]) and out[1, 1] == 1.0
    assert DEFAULT_SOFT_CLIP < out[0, 1] == -out[1, 0] < DEFAULT_SOFT_CLIP + 10
    assert compress_tail(np.zeros((0, 3)), DEFAULT_SOFT_CLIP).shape == (0, 3)


def test_compress_tail_maps_infinities_and_huge_values_to_finite_caps():
    z = np.array([-np.inf, -1e308, -1e6, 0.0, 1e6, 1e308, np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning leaks out
        out = compress_tail(z, DEFAULT_SOFT_CLIP)
    assert np.isfinite(out).all()
    assert (np.diff(out) >= 0).all()
    assert out[0] == -out[-1] and out[-1] > out[4] > 0
    assert out[1] == out[0]


def test_transform_bounds_extreme_values_at_scoring_time():
    rng = np.random.default_rng(1)
    pre = fit(pd.DataFrame({"v": rng.normal(size=100)}))
    scoring = pd.DataFrame({"v": [-np.inf, -1e308, -10.0, 0.0, 10.0, 1e308, np.inf]})
    encoded = pre.transform(scoring)
    assert np.isfinite(encoded.inputs).all()
    assert (np.diff(encoded.numeric[:, 0]) >= 0).all()
    np.testing.assert_array_equal(encoded.numeric_mask[:, 0], np.ones(7))


# -- categories --------------------------------------------------------------------------


def test_rare_levels_are_merged_and_unseen_levels_have_a_bucket():
    frame = pd.DataFrame({"c": ["a"] * 300 + ["b"] * 200 + ["c"] * 2 + [None] * 3})
    pre = fit(frame)
    column = pre.state["categorical"][0]
    assert column["levels"] == ["a", "b", RARE_LEVEL, UNSEEN_LEVEL]
    assert column["rare"] == ["c"]
    assert pre.layout.cardinalities == (4,)

    scoring = pd.DataFrame({"c": ["a", "b", "c", "never-seen", None]})
    encoded = pre.transform(scoring)
    np.testing.assert_array_equal(encoded.categories[:, 0], [0, 1, 2, 3, -1])
    one_hot = encoded.inputs[:, :4]
    np.testing.assert_array_equal(one_hot[:4], np.eye(4, dtype=np.float32))
    np.testing.assert_array_equal(one_hot[4], np.zeros(4))  # missing: no level active


def test_rare_min_count_is_respected():
    frame = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 5 + ["c"] * 5})
    assert fit(frame).state["categorical"][0]["rare"] == []
    assert sorted(fit(frame, rare_min_count=6).state["categorical"][0]["rare"]) == ["b", "c"]


def test_unseen_bucket_exists_without_rare_levels():
    frame = pd.DataFrame({"c": ["x", "y"] * 20})
    pre = fit(frame)
    assert pre.state["categorical"][0]["levels"] == ["x", "y", UNSEEN_LEVEL]
    codes = pre.transform(pd.DataFrame({"c": ["z", "x"]})).categories[:, 0]
    np.testing.assert_array_equal(codes, [2, 0])


def test_level_rarity_is_the_surprise_relative_to_the_most_common_level():
    rarity = level_rarity([99.0, 9.0, 0.0])
    assert rarity[0] == 0.0
    assert rarity[1] == pytest.approx(math.log(100 / 10))
    assert rarity[2] == pytest.approx(math.log(100))  # never seen: finite, the largest
    assert level_rarity([]) == []


def test_level_counts_give_each_categorical_level_its_rarity():
    frame = pd.DataFrame(
        {
            "c": ["a"] * 300 + ["b"] * 30 + ["r1"] * 2 + ["r2"] * 1,
            "flag": [0.0] * 320 + [1.0] * 13,
        }
    )
    pre = fit(frame)
    column = pre.state["categorical"][0]
    assert column["levels"] == ["a", "b", RARE_LEVEL, UNSEEN_LEVEL]
    # The merged bucket is as rare as its levels on average (1.5), not as their total (3).
    assert column["counts"] == [300.0, 30.0, 1.5, 0.0]
    rarity = pre.layout.category_rarity
    np.testing.assert_allclose(rarity[0], level_rarity([300.0, 30.0, 1.5, 0.0]))
    assert rarity[0][0] == 0.0 and rarity[0][1] < rarity[0][2] < rarity[0][3]
    # Two-valued numeric columns keep no counts: no rarity.
    assert "counts" not in pre.state["categorical"][1]
    assert rarity[1] == (0.0, 0.0, 0.0)


def test_state_without_level_counts_has_no_rarity():
    frame = pd.DataFrame({"c": ["x"] * 30 + ["y"] * 10})
    state = json.loads(json.dumps(fit(frame).to_dict()))
    for column in state["categorical"]:
        del column["counts"]
    assert Preprocessor.from_dict(state).layout.category_rarity == ()


def test_pandas_categoricals_are_one_hot_encoded_and_booleans_are_flags():
    frame = pd.DataFrame(
        {
            "flag": [True, False] * 10,
            "size": pd.Categorical(["S", "M", "L", "M"] * 5),
            "amount": np.arange(20.0),
        }
    )
    pre = fit(frame)
    assert pre.layout.categorical_columns == ("flag", "size")
    flag = pre.state["categorical"][0]
    assert flag["numeric_values"] == [0.0, 1.0] and "counts" not in flag  # no level rarity
    encoded = pre.transform(frame)
    np.testing.assert_array_equal(encoded.categories[:, 0], frame["flag"].astype(int))
    assert (encoded.categories >= 0).all()
    np.testing.assert_array_equal(encoded.inputs[:, 1:].sum(axis=1), np.full(20, 2.0))


@pytest.mark.parametrize("share", [0.5, 0.1], ids=["common", "rare"])
def test_a_boolean_column_is_encoded_as_the_same_flag_as_zeros_and_ones(share) -> None:
    """On mixed data and on data of mostly flags (where a common flag is a number)."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=200)
    numbers = pd.DataFrame(
        {f"f{j}": (z + rng.normal(size=200) > np.quantile(z, 1 - share)).astype(float)
         for j in range(3)}
    ).assign(amount=z)  # fmt: skip
    booleans = numbers.astype({f"f{j}": bool for j in range(3)})
    as_numbers, as_booleans = fit(numbers), fit(booleans)
    assert as_booleans.state == as_numbers.state
    a, b = as_numbers.transform(numbers), as_booleans.transform(booleans)
    for name in ("inputs", "numeric", "categories", "tails"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name))


def test_a_missing_boolean_is_missing_and_a_value_that_is_no_boolean_is_unseen() -> None:
    frame = pd.DataFrame(
        {"ok": pd.array([True, False, None, True] * 10, dtype="boolean"), "amount": 0.0,
         "text": ["a", "b"] * 20}
    )  # fmt: skip
    frame["amount"] = np.arange(40.0)
    pre = fit(frame)
    assert pre.layout.categorical_columns == ("ok", "text") and "ok" in pre.layout.missing_columns
    rows = pd.DataFrame(
        {"ok": pd.Series([True, None, "yes"], dtype=object), "amount": 1.0, "text": "a"}
    )
    assert pre.transform(rows).categories[:, 0].tolist() == [1, -1, 2]


def test_a_boolean_fitted_as_levels_before_it_was_a_flag_still_encodes_by_its_levels():
    """A saved state from before booleans were flags says so: levels and their counts."""
    frame = pd.DataFrame({"flag": [True, False, True] * 10, "amount": np.arange(30.0)})
    frame["more"] = frame["amount"] ** 2  # not data of mostly flags: the flag is categorical
    state = fit(frame).to_dict()
    state["categorical"][0] = {
        "name": "flag",
        "levels": ["True", "False", UNSEEN_LEVEL],
        "rare": [],
        "counts": [20.0, 10.0, 0.0],
    }
    state.pop("flag_tail_median")
    old = Preprocessor.from_dict(state)
    assert "flag" not in old.layout.tail_columns and old.layout.category_rarity[0][1] > 0.0
    rows = pd.DataFrame({"flag": [True, False, None], "amount": 1.0, "more": 1.0})
    assert old.transform(rows).categories[:, 0].tolist() == [0, 1, -1]


# -- missing values and dropped columns --------------------------------------------------


def test_missing_indicators_only_for_columns_with_missing_values():
    frame = pd.DataFrame(
        {
            "a": [1.0, np.nan, 3.0, 4.0, 5.0],
            "b": [1.0, 2.0, 3.0, 4.0, 6.0],
            "s": ["x", "y", None, "x", "y"],
            "t": ["x", "y", "y", "x", "y"],
        }
    )
    pre = fit(frame, rare_min_count=1)
    assert pre.layout.missing_columns == ("a", "s")
    encoded = pre.transform(frame)
    np.testing.assert_array_equal(encoded.missing, frame[["a", "s"]].isna().to_numpy())
    # the missing numeric entry is masked out and zero-filled
    np.testing.assert_array_equal(encoded.numeric_mask[:, 0], [1, 0, 1, 1, 1])
    assert encoded.numeric[1, 0] == 0.0
    assert encoded.inputs.shape == (5, pre.layout.input_dim)
    assert pre.layout.input_dim == 2 + 3 + 3 + 2


def test_constant_and_empty_columns_are_dropped_with_a_warning():
    frame = pd.DataFrame(
        {
            "varies": np.arange(10.0),
            "constant_number": np.full(10, 3.0),
            "constant_text": ["same"] * 10,
            "all_missing": [np.nan] * 10,
        }
    )
    with pytest.warns(ConstantColumnWarning) as record:
        pre = fit(frame)
    message = " ".join(str(w.message) for w in record)
    for name in ("constant_number", "constant_text", "all_missing"):
        assert name in message
    assert pre.layout.numeric_columns == ("varies",)
    assert pre.layout.categorical_columns == ()
    assert pre.layout.missing_columns == ()
    assert pre.transform(frame).inputs.shape == (10, 1)


def test_no_warning_when_every_column_varies():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "x"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantColumnWarning)
        fit(frame)


def test_all_constant_columns_raise():
    frame = pd.DataFrame({"a": np.ones(10), "b": ["k"] * 10})
    with pytest.warns(ConstantColumnWarning):
        with pytest.raises(EmptyInputError) as info:
            fit(frame)
    assert "'a'" in str(info.value) or "a (" in str(info.value)


# -- state -------------------------------------------------------------------------------


def test_state_json_round_trip_gives_identical_transform():
    rng = np.random.default_rng(2)
    n = 300
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "y": np.where(rng.random(n) < 0.1, np.nan, rng.exponential(size=n)),
            "c": pd.Series(rng.choice(["a", "b", "c"], n, p=[0.6, 0.395, 0.005]), dtype="str"),
            "g": pd.Categorical(rng.choice(["lo", "hi"], n)),
            "f": rng.random(n) > 0.5,
        }
    )
    pre = fit(frame)
    text = json.dumps(pre.to_dict())
    restored = Preprocessor.from_dict(json.loads(text))
    assert restored.layout == pre.layout
    assert_encoded_equal(restored.transform(frame), pre.transform(frame))
    scoring = frame.iloc[:20].copy()
    scoring.loc[scoring.index[0], "c"] = "brand new"
    scoring.loc[scoring.index[1], "x"] = np.inf
    scoring.loc[scoring.index[2], "g"] = None
    assert_encoded_equal(restored.transform(scoring), pre.transform(scoring))


def test_encoded_dtypes():
    frame = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0], "c": ["a", "b", "a", None]})
    encoded = fit(frame).transform(frame)
    assert encoded.inputs.dtype == np.float32
    assert encoded.numeric.dtype == np.float32
    assert encoded.numeric_mask.dtype == np.float32
    assert encoded.missing.dtype == np.float32
    assert encoded.categories.dtype == np.int64
    assert len(encoded) == 4
    assert math.isfinite(float(encoded.inputs.sum()))


@pytest.mark.parametrize("with_missing", [False, True])
def test_encoded_numeric_arrays_are_row_major_with_the_right_mask(with_missing):
    """pandas hands over column-major blocks; the model wants row-major arrays, made here
    once rather than copied on every scoring pass."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 3)) * [1, 10, 100], columns=["a", "b", "c"])
    frame.iloc[0, 1] = 1e9  # far out: soft-clipped
    pre = fit(frame)
    if with_missing:
        frame.iloc[[3, 7], 2] = np.nan
    encoded = pre.transform(frame)
    for name in ("inputs", "numeric", "numeric_mask"):
        assert getattr(encoded, name).flags.c_contiguous, name
    expected_mask = frame.notna().to_numpy().astype(np.float32)
    np.testing.assert_array_equal(encoded.numeric_mask, expected_mask)
    assert (encoded.numeric[expected_mask == 0] == 0).all()
    assert encoded.numeric[0, 1] < DEFAULT_SOFT_CLIP + 30  # compressed, in place


def test_skewed_non_negative_columns_are_modelled_on_a_log_scale() -> None:
    from vae_core.features import Preprocessor
    from vae_core.schema import infer_schema

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "bytes": rng.lognormal(3, 2.5, 2000),  # spans orders of magnitude
            "ratio": rng.uniform(0, 1, 2000),  # bounded: stays linear
            "signed": rng.normal(0, 1, 2000),
        }
    )
    prep = Preprocessor.fit(frame, infer_schema(frame))
    flags = {c["name"]: c["log1p"] for c in prep.state["numeric"]}
    assert flags == {"bytes": True, "ratio": False, "signed": False}
    encoded = prep.transform(pd.DataFrame({"bytes": [100.0, 1e6, -5.0], "ratio": 0.5, "signed": 0}))
    column = encoded.numeric[:, 0]
    assert np.isfinite(column).all()
    assert column[1] > column[0] > 0 > column[2]  # order kept; impossible negatives far out

"""Flags on data of mostly flags: those whose two values are both common are numbers.

All-binary attribute vectors are where the Bernoulli term ranked anomalies worst; there a
flag set in a quarter of the rows or more is modelled on the robust scale like any number,
and keeps its part of the flags' tail evidence (``vae_core.discrete_tails.FlagTails``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import edit_manifest
from vae_core import VAEAnomalyDetector
from vae_core.discrete_tails import FlagTails
from vae_core.errors import ModelFileError
from vae_core.features import BERNOULLI_FLAGS_FROM, Preprocessor
from vae_core.schema import infer_schema

PARAMS = {"max_epochs": 8, "hidden_sizes": (16, 8), "latent_dim": 2, "random_state": 0}
COMMON = tuple(f"c{j}" for j in range(6))


def binary_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Six flags that follow a latent sign (each set in about half the rows), one set in
    about one row in twelve, and one measurement: seven of eight columns are flags."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    frame = pd.DataFrame(
        {name: (z + 0.7 * rng.normal(size=n) > 0).astype(np.float64) for name in COMMON}
    )
    frame["rare"] = (z > 1.4).astype(np.int64)
    frame["amount"] = z + 0.3 * rng.normal(size=n)
    return frame


def fit(frame: pd.DataFrame) -> Preprocessor:
    return Preprocessor.fit(frame, infer_schema(frame))


@pytest.fixture(scope="module")
def detector() -> VAEAnomalyDetector:
    return VAEAnomalyDetector(**PARAMS).fit(binary_frame())


def test_common_flags_are_numbers_on_data_of_mostly_flags() -> None:
    frame = binary_frame()
    pre = fit(frame)
    assert pre.layout.numeric_columns == ("amount", *COMMON)
    assert pre.layout.categorical_columns == ("rare",)  # set in 8% of rows: Bernoulli
    column = pre.state["numeric"][1]
    assert column["numeric_values"] == [0.0, 1.0] and not column["log1p"]
    assert column["flag_counts"] == [float((frame.c0 == 0).sum()), float(frame.c0.sum())]
    # Its IQR is the step from one value to the other: the rarer value is 1.35 units out.
    assert column["scale"] == pytest.approx(1 / 1.349)
    encoded = pre.transform(frame)
    np.testing.assert_allclose(encoded.numeric[:, 1], (frame.c0 - column["centre"]) * 1.349)


def test_among_measurements_a_common_flag_stays_bernoulli() -> None:
    frame = binary_frame()[["c0", "rare", "amount"]]
    frame = frame.assign(more=frame.amount**2, other=-frame.amount)
    pre = fit(frame)
    assert pre.layout.categorical_columns == ("c0", "rare")
    assert pre.layout.numeric_columns == ("amount", "more", "other")


def test_every_flag_keeps_its_part_of_the_one_side_sum() -> None:
    """One side sum over the Bernoulli flag and the numeric ones, each flag's share in its
    own term; a value neither of a flag's two, or a missing one, costs nothing here."""
    frame = binary_frame()
    pre = fit(frame)
    assert pre.layout.tail_columns == ("rare", *COMMON)
    rows = pd.DataFrame(
        {
            **{name: [1.0, 0.0, 7.0, np.nan] for name in COMMON},
            "rare": [1, 0, 1, 1],
            "amount": 0.0,
        }
    )
    tails = pre.transform(rows).tails
    columns = [pre.state["categorical"][0], *pre.state["numeric"][1:]]
    flags = FlagTails(columns, pre.state["flag_tail_median"])
    values = rows[["rare", *COMMON]].to_numpy(np.float64)
    codes = np.where(values == 0, 0, np.where(values == 1, 1, 2))
    codes[np.isnan(values)] = -1
    np.testing.assert_allclose(tails, flags.terms(codes), rtol=1e-6)
    assert tails[0].sum() > 0.0  # every flag on the side where the rare one is set
    assert (tails[2:, 1:] == 0.0).all()  # 7.0 and missing: no cost


def test_a_value_neither_of_a_numeric_flags_two_scores_far_out(detector) -> None:
    rows = binary_frame(30, seed=1)
    seen = detector.score_arrays(detector.encode(rows))
    unseen = detector.score_arrays(detector.encode(rows.assign(c0=7.0)))
    column = seen.feature_names.index("c0")
    assert (
        unseen.contributions[:, column] * unseen.recon_error
        > 10 * seen.contributions[:, column] * seen.recon_error
    ).all()
    assert (unseen.score > seen.score).all()


def test_a_saved_model_with_numeric_flags_loads_and_scores_the_same(detector, tmp_path) -> None:
    rows = binary_frame(50, seed=2)
    detector.save(tmp_path / "m")
    loaded = VAEAnomalyDetector.load(tmp_path / "m")
    assert loaded.preprocessor_.layout.numeric_columns == ("amount", *COMMON)
    np.testing.assert_array_equal(loaded.score_samples(rows), detector.score_samples(rows))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["numeric_values"].append(2.0), r"numeric\[1\].numeric_values"),
        (lambda c: c["numeric_values"].__setitem__(0, "no"), "must be a number"),
        (lambda c: c["flag_counts"].pop(), r"numeric\[1\].flag_counts"),
        (lambda c: c.pop("numeric_values"), "must hold the counts of a flag's two values"),
    ],
    ids=["three_values", "text_value", "one_count", "counts_without_values"],
)
def test_an_edited_numeric_flag_is_refused_naming_the_field(
    detector, tmp_path, edit, message
) -> None:
    model = tmp_path / "m"
    detector.save(model)
    edit_manifest(model, lambda m: edit(m["preprocessing"]["numeric"][1]))
    with pytest.raises(ModelFileError, match=message):
        VAEAnomalyDetector.load(model)


def test_the_rare_flags_of_wide_data_still_get_one_logit_each() -> None:
    """Wide data count every flag, numeric ones included, towards one logit per flag."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(300, 1))
    common = (z + rng.normal(size=(300, BERNOULLI_FLAGS_FROM)) > 0).astype(np.float64)
    rare = (z + rng.normal(size=(300, 8)) > 2.0).astype(np.float64)
    frame = pd.DataFrame(np.hstack([common, rare]), columns=[f"f{j}" for j in range(264)])
    pre = fit(frame)
    assert len(pre.layout.categorical_columns) == 8 and pre.state["bernoulli_flags"]
    assert pre.layout.category_widths == (1,) * 8

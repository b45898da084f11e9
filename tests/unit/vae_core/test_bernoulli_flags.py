"""Two-valued numeric columns (flags): one input cell and one Bernoulli logit each."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import edit_manifest
from vae_core import VAEAnomalyDetector
from vae_core.errors import ModelFileError
from vae_core.features import BERNOULLI_FLAGS_FROM, Preprocessor
from vae_core.losses import categorical_nll
from vae_core.model import TabularVAE, VAEArchitecture
from vae_core.schema import infer_schema

PARAMS = {"max_epochs": 8, "hidden_sizes": (16, 8), "latent_dim": 2, "random_state": 0}


def flags_frame(n: int = 400, seed: int = 0, more_flags: int = 0) -> pd.DataFrame:
    """Two flags set where a latent value is high (in about one row in six), one text
    column and one measurement, then ``more_flags`` noisy copies of the first flag. Rare
    flags: on data of mostly flags, common ones are numbers (``test_common_flags``)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "amount": z + 0.1 * rng.normal(size=n),
            "is_big": (z > 1).astype(np.int64),
            "kind": np.where(z > 0.5, "a", np.where(z < -0.5, "b", "c")),
            "is_new": np.where(z + 0.3 * rng.normal(size=n) > 1, 5.0, -1.0),
        }
    )
    noisy = (z[:, None] + rng.normal(size=(n, more_flags)) > 1.5).astype(np.float64)
    return frame.join(pd.DataFrame(noisy, columns=[f"f{j}" for j in range(more_flags)]))


#: Every flag position of the wide frame: two named flags around the text column, then
#: the copies.
WIDE_FLAGS = (0, *range(2, 3 + BERNOULLI_FLAGS_FROM))


@pytest.fixture(scope="module")
def detector() -> VAEAnomalyDetector:
    """Fitted on enough flags for one logit each."""
    return VAEAnomalyDetector(**PARAMS).fit(flags_frame(more_flags=BERNOULLI_FLAGS_FROM))


def test_flags_have_one_logit_from_a_number_of_them_on() -> None:
    narrow = flags_frame()
    assert Preprocessor.fit(narrow, infer_schema(narrow)).layout.bernoulli_columns == ()
    wide = flags_frame(more_flags=BERNOULLI_FLAGS_FROM)
    assert Preprocessor.fit(wide, infer_schema(wide)).layout.bernoulli_columns == WIDE_FLAGS


def test_a_flag_has_one_input_cell_signed_by_its_value() -> None:
    frame = flags_frame()
    pre = Preprocessor.fit(frame, infer_schema(frame), bernoulli_flags=True)
    layout = pre.layout
    assert layout.categorical_columns == ("is_big", "kind", "is_new")
    assert layout.cardinalities == (3, 4, 3)
    assert layout.bernoulli_columns == (0, 2)
    assert layout.category_widths == (1, 4, 1)
    assert layout.input_dim == 1 + 1 + 4 + 1
    rows = pd.DataFrame(
        {"amount": [0.0] * 4, "is_big": [0, 1, 7, None], "kind": ["a"] * 4,
         "is_new": [-1.0, 5.0, 5.0, 2.0]}
    )  # fmt: skip
    encoded = pre.transform(rows)
    assert encoded.categories[:, 0].tolist() == [0, 1, 2, -1]  # 7: unseen; None: missing
    assert encoded.inputs[:, 1].tolist() == [-1.0, 1.0, 0.0, 0.0]
    assert encoded.inputs[:, 6].tolist() == [-1.0, 1.0, 1.0, 0.0]  # 2.0: unseen
    assert (encoded.inputs[:, 2:6].sum(axis=1) == 1).all()  # the text column stays one-hot


@pytest.mark.parametrize("widths", [(1,), (1, 1, 1), (1, 3, 1, 4, 1), (5, 1, 1, 3)])
def test_a_flags_nll_is_the_binary_cross_entropy_of_its_second_value(widths) -> None:
    """Flags grouped with other columns (contiguous or interleaved) get the binary
    cross-entropy of code 1 against the rest, others their cross-entropy, in order."""
    g = torch.Generator().manual_seed(len(widths))
    n = 29
    logits = (3 * torch.randn(n, sum(widths), generator=g)).requires_grad_()
    levels = [3 if w == 1 else w for w in widths]
    codes = torch.stack([torch.randint(-1, c, (n,), generator=g) for c in levels], dim=1)
    grouped = categorical_nll(logits, codes, widths)
    columns, start = [], 0
    for j, width in enumerate(widths):
        block, code = logits[:, start : start + width], codes[:, j]
        if width == 1:
            p = torch.sigmoid(block[:, 0])
            nll = -torch.where(code == 1, p.log(), (1 - p).log())
        else:
            nll = -torch.log_softmax(block, dim=1).gather(1, code.clamp(min=0)[:, None])[:, 0]
        columns.append(nll * (code >= 0))
        start += width
    reference = torch.stack(columns, dim=1)
    torch.testing.assert_close(grouped, reference, rtol=1e-5, atol=1e-5)
    (grad, ref_grad) = (torch.autograd.grad(t.sum(), logits)[0] for t in (grouped, reference))
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)


def test_the_network_has_one_logit_per_flag(detector) -> None:
    model = detector.models_[0]
    assert model.arch.bernoulli_columns == WIDE_FLAGS
    assert model.arch.input_dim == 1 + len(WIDE_FLAGS) + 4
    assert model.head_sizes == (1, len(WIDE_FLAGS) + 4, 0)


def test_an_unseen_flag_value_costs_at_least_an_unseen_level(detector) -> None:
    """A value neither of a flag's two: its term is at least Laplace's floor for a level
    absent from the training rows, log(n + 2), where the seen values cost less."""
    rows = flags_frame(20, seed=1, more_flags=BERNOULLI_FLAGS_FROM)
    seen = detector.score_arrays(detector.encode(rows))
    rows["is_new"] = 3.0  # neither -1 nor 5
    unseen = detector.score_arrays(detector.encode(rows))
    column = seen.feature_names.index("is_new")
    floor = math.log(detector.preprocessor_.state["n_rows"] + 2)
    nll_seen = seen.contributions[:, column] * seen.recon_error
    nll_unseen = unseen.contributions[:, column] * unseen.recon_error
    assert (nll_seen < floor).all()
    assert (nll_unseen >= floor - 1e-4).all()


def test_a_saved_model_with_flags_loads_and_scores_the_same(detector, tmp_path) -> None:
    rows = flags_frame(50, seed=2, more_flags=BERNOULLI_FLAGS_FROM)
    detector.save(tmp_path / "m")
    loaded = VAEAnomalyDetector.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.score_samples(rows), detector.score_samples(rows))


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["architecture"].update(bernoulli_columns=[0]),
        lambda m: m["architecture"].pop("bernoulli_columns"),
        lambda m: m["architecture"]["bernoulli_columns"].__setitem__(0, "0"),
    ],
)
def test_edited_flag_logits_are_refused_naming_the_field(detector, tmp_path, edit) -> None:
    path = tmp_path / "m"
    detector.save(path)
    edit_manifest(path, edit)
    with pytest.raises(ModelFileError, match="architecture.bernoulli_columns"):
        VAEAnomalyDetector.load(path)


def test_a_model_saved_with_three_levels_per_flag_still_loads_and_scores(
    detector, tmp_path
) -> None:
    """Files written before flags could have one logit carry neither ``bernoulli_flags``
    nor ``bernoulli_columns`` (as models of data with few flags do): their flags keep a
    one-hot block and a softmax of three."""
    old = VAEAnomalyDetector.load(_saved(detector, tmp_path / "new"))
    state = dict(old.preprocessor_.state)
    state.pop("bernoulli_flags")
    old.preprocessor_ = Preprocessor.from_dict(state)
    arch = old.models_[0].arch
    three_each = 1 + sum(old.preprocessor_.layout.cardinalities)
    arch = VAEArchitecture.from_dict(
        {**arch.to_dict(), "input_dim": three_each, "bernoulli_columns": ()}
    )
    torch.manual_seed(0)
    old.architecture_, old.models_ = arch, [TabularVAE(arch).eval()]
    rows = flags_frame(50, seed=3, more_flags=BERNOULLI_FLAGS_FROM)
    expected = old.score_samples(rows)
    path = tmp_path / "old"
    old.save(path)
    edit_manifest(path, lambda m: m["architecture"].pop("bernoulli_columns"))
    loaded = VAEAnomalyDetector.load(path)
    assert loaded.models_[0].arch.category_widths == (3, 4, *(3,) * (len(WIDE_FLAGS) - 1))
    assert loaded.preprocessor_.transform(rows).inputs.shape[1] == three_each
    np.testing.assert_array_equal(loaded.score_samples(rows), expected)


def _saved(detector: VAEAnomalyDetector, path):
    detector.save(path)
    return path

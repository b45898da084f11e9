"""Reconstruction NLL per term, KL to N(0, I) and the ELBO."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vae_core.features import EncodedData
from vae_core.losses import (
    Batch,
    categorical_nll,
    kl_to_standard_normal,
    negative_elbo,
    reconstruction_terms,
)
from vae_core.model import VAEOutput

CARDINALITIES = (3, 2)


def make_batch(n: int = 4, mask: torch.Tensor | None = None) -> Batch:
    g = torch.Generator().manual_seed(0)
    numeric = torch.randn(n, 2, generator=g)
    return Batch(
        inputs=torch.randn(n, 2 + 5 + 1, generator=g),
        numeric=numeric,
        numeric_mask=torch.ones(n, 2) if mask is None else mask,
        categories=torch.tensor([[0, 1], [2, 0], [1, -1], [0, 1]])[:n],
        missing=torch.tensor([[0.0], [1.0], [0.0], [1.0]])[:n],
    )


def make_output(n: int = 4, seed: int = 1, numeric_logvar: torch.Tensor | None = None):
    g = torch.Generator().manual_seed(seed)
    return VAEOutput(
        mu=torch.randn(n, 2, generator=g),
        logvar=torch.randn(n, 2, generator=g),
        z=torch.randn(n, 2, generator=g),
        numeric_mean=torch.randn(n, 2, generator=g),
        numeric_logvar=(torch.randn(2, generator=g) if numeric_logvar is None else numeric_logvar),
        category_logits=torch.randn(n, sum(CARDINALITIES), generator=g),
        missing_logits=torch.randn(n, 1, generator=g),
    )


# -- KL ----------------------------------------------------------------------------------


def test_kl_is_zero_for_the_prior():
    kl = kl_to_standard_normal(torch.zeros(5, 3), torch.zeros(5, 3))
    assert kl.shape == (5,)
    assert torch.equal(kl, torch.zeros(5))


def test_kl_is_positive_away_from_the_prior():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(100, 3, generator=g), torch.randn(100, 3, generator=g)
    assert (kl_to_standard_normal(mu, logvar) > 0).all()
    assert (kl_to_standard_normal(torch.zeros(1, 3), torch.full((1, 3), 0.5)) > 0).all()


def test_kl_closed_form_value():
    # KL(N(1, 1) || N(0, 1)) = 0.5 per dimension; KL(N(0, e) || N(0, 1)) = 0.5 (e - 2)
    assert kl_to_standard_normal(torch.ones(1, 4), torch.zeros(1, 4)).item() == pytest.approx(2.0)
    value = kl_to_standard_normal(torch.zeros(1, 1), torch.ones(1, 1)).item()
    assert value == pytest.approx(0.5 * (math.e - 2.0), rel=1e-6)


def test_kl_keeps_its_digits_near_the_prior_in_float32():
    """0.5 (e^v - 1 - v) for small v: written as exp(v) - 1 - v in float32 it loses its
    digits to cancellation (1% off for these values), so the KL of near-prior rows
    depended on the batch they were computed in."""
    logvar = torch.tensor([[1e-3, -2e-3, 5e-4]], dtype=torch.float32)
    exact = 0.5 * sum(math.expm1(v) - v for v in logvar[0].double().tolist())
    value = kl_to_standard_normal(torch.zeros(1, 3), logvar).item()
    assert value == pytest.approx(exact, rel=1e-3)


# -- reconstruction ----------------------------------------------------------------------


def test_terms_shape_and_order():
    terms = reconstruction_terms(make_output(), make_batch(), CARDINALITIES, with_constants=False)
    assert terms.shape == (4, 2 + 2 + 1)  # numeric columns, categorical columns, missing flags


def test_terms_without_constants_are_non_negative():
    batch = make_batch()
    for seed in range(20):
        out = make_output(seed=seed)
        terms = reconstruction_terms(out, batch, CARDINALITIES, with_constants=False)
        assert (terms >= 0).all()


def test_constants_can_make_terms_negative_and_differ_by_the_normaliser():
    batch = make_batch()
    out = make_output(numeric_logvar=torch.tensor([-4.0, 1.0]))
    plain = reconstruction_terms(out, batch, CARDINALITIES, with_constants=False)
    full = reconstruction_terms(out, batch, CARDINALITIES, with_constants=True)
    normaliser = 0.5 * (torch.tensor([-4.0, 1.0]) + math.log(2 * math.pi))
    torch.testing.assert_close(full[:, :2] - plain[:, :2], normaliser.expand(4, 2))
    torch.testing.assert_close(full[:, 2:], plain[:, 2:])


def test_gaussian_term_value():
    batch = make_batch()
    out = make_output(numeric_logvar=torch.zeros(2))
    terms = reconstruction_terms(out, batch, CARDINALITIES, with_constants=False)
    expected = 0.5 * (batch.numeric - out.numeric_mean) ** 2
    torch.testing.assert_close(terms[:, :2], expected)


def test_masked_numeric_entries_contribute_zero():
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    batch = make_batch(mask=mask)
    out = make_output()
    out = out._replace(numeric_mean=out.numeric_mean + 1e3)  # huge residuals everywhere
    for with_constants in (False, True):
        terms = reconstruction_terms(out, batch, CARDINALITIES, with_constants)
        assert torch.equal(terms[:, :2][mask == 0], torch.zeros(int((mask == 0).sum())))
        assert (terms[:, :2][mask == 1] > 1e4).all()


def test_missing_category_contributes_zero_and_others_are_cross_entropy():
    batch = make_batch()
    out = make_output()._replace(category_logits=torch.zeros(4, 5))  # uniform over levels
    terms = reconstruction_terms(out, batch, CARDINALITIES, with_constants=False)
    torch.testing.assert_close(terms[:, 2], torch.full((4,), math.log(3)))
    assert terms[2, 3].item() == 0.0  # code -1: missing
    torch.testing.assert_close(terms[[0, 1, 3], 3], torch.full((3,), math.log(2)))


def test_missing_flag_term_is_binary_cross_entropy():
    batch = make_batch()
    out = make_output()._replace(missing_logits=torch.zeros(4, 1))
    terms = reconstruction_terms(out, batch, CARDINALITIES, with_constants=False)
    torch.testing.assert_close(terms[:, 4], torch.full((4,), math.log(2)))


def test_negative_elbo_is_summed_nll_plus_beta_kl():
    batch, out = make_batch(), make_output()
    full = reconstruction_terms(out, batch, CARDINALITIES, with_constants=True).sum(dim=1)
    kl = kl_to_standard_normal(out.mu, out.logvar)
    for beta in (0.0, 0.5, 2.0):
        torch.testing.assert_close(negative_elbo(out, batch, CARDINALITIES, beta), full + beta * kl)


# -- Batch -------------------------------------------------------------------------------


def test_batch_from_encoded_select_and_len():
    encoded = EncodedData(
        inputs=np.arange(12, dtype=np.float32).reshape(4, 3),
        numeric=np.zeros((4, 1), dtype=np.float32),
        numeric_mask=np.ones((4, 1), dtype=np.float32),
        categories=np.array([[0], [1], [-1], [0]], dtype=np.int64),
        missing=np.zeros((4, 0), dtype=np.float32),
    )
    batch = Batch.from_encoded(encoded)
    assert len(batch) == 4
    assert batch.categories.dtype == torch.int64
    picked = batch.select(torch.tensor([2, 0]))
    assert len(picked) == 2
    assert torch.equal(picked.inputs, torch.tensor([[6.0, 7.0, 8.0], [0.0, 1.0, 2.0]]))
    assert torch.equal(picked.categories, torch.tensor([[-1], [0]]))


def _per_column_cross_entropy(logits, codes, cardinalities):
    """The reference: one cross_entropy call per column, as the loss once was computed."""
    columns, start = [], 0
    for j, cardinality in enumerate(cardinalities):
        column = codes[:, j]
        nll = torch.nn.functional.cross_entropy(
            logits[:, start : start + cardinality], column.clamp(min=0), reduction="none"
        )
        columns.append(nll * (column >= 0))
        start += cardinality
    return torch.stack(columns, dim=1)


@pytest.mark.parametrize(
    "cardinalities",
    [(3,), (3, 3, 3, 3), (3, 5, 3, 2, 5, 3), (70, 3, 3, 11, 3), (2, 2, 4, 2, 9, 4, 4)],
)
def test_grouped_cross_entropy_equals_one_call_per_column(cardinalities):
    """Columns grouped by cardinality (contiguous or interleaved) give each column's own
    cross-entropy, in column order, and the same gradient."""
    g = torch.Generator().manual_seed(len(cardinalities))
    n = 37
    logits = (3 * torch.randn(n, sum(cardinalities), generator=g)).requires_grad_()
    codes = torch.stack([torch.randint(-1, c, (n,), generator=g) for c in cardinalities], dim=1)
    grouped = categorical_nll(logits, codes, cardinalities)
    (grad_grouped,) = torch.autograd.grad(grouped.square().sum(), logits)
    reference = _per_column_cross_entropy(logits, codes, cardinalities)
    (grad_reference,) = torch.autograd.grad(reference.square().sum(), logits)
    torch.testing.assert_close(grouped, reference, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad_grouped, grad_reference, rtol=1e-5, atol=1e-6)
    assert (grouped[codes < 0] == 0).all()

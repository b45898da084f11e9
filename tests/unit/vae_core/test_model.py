"""The torch module: named outputs, shapes, deterministic evaluation, stochastic sampling."""

from __future__ import annotations

import json

import pytest
import torch

from vae_core.model import TabularVAE, VAEArchitecture, VAEOutput

ARCH = VAEArchitecture(
    input_dim=3 + 3 + 4 + 2,
    n_numeric=3,
    cardinalities=(3, 4),
    n_missing=2,
    hidden_sizes=(16, 8),
    latent_dim=2,
)


@pytest.fixture
def model() -> TabularVAE:
    torch.manual_seed(0)
    return TabularVAE(ARCH)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(5, ARCH.input_dim, generator=torch.Generator().manual_seed(1))


def test_output_is_a_named_tuple_with_the_right_shapes(model, x):
    out = model.eval()(x)
    assert isinstance(out, VAEOutput)
    assert out._fields == (
        "mu",
        "logvar",
        "z",
        "numeric_mean",
        "numeric_logvar",
        "category_logits",
        "missing_logits",
    )
    assert out.mu.shape == (5, 2)
    assert out.logvar.shape == (5, 2)
    assert out.z.shape == (5, 2)
    assert out.numeric_mean.shape == (5, 3)
    assert out.numeric_logvar.shape == (3,)
    assert out.category_logits.shape == (5, 7)
    assert out.missing_logits.shape == (5, 2)


def test_eval_mode_is_deterministic_and_decodes_the_mean(model, x):
    model.eval()
    first, second = model(x), model(x)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(first.z, first.mu)


def test_sampling_is_stochastic(model, x):
    model.eval()
    first, second = model(x, sample=True), model(x, sample=True)
    assert torch.equal(first.mu, second.mu)
    assert not torch.equal(first.z, second.z)
    assert not torch.equal(first.z, first.mu)
    assert not torch.equal(first.numeric_mean, second.numeric_mean)


def test_training_mode_samples_by_default_but_can_be_told_not_to(model, x):
    model.train()
    assert not torch.equal(model(x).z, model(x).z)
    out = model(x, sample=False)
    assert torch.equal(out.z, out.mu)


def test_variances_are_bounded(model):
    huge = torch.full((2, ARCH.input_dim), 1e6)
    _, logvar = model.encode(huge)
    assert (logvar >= -12).all() and (logvar <= 8).all()
    with torch.no_grad():
        model.numeric_log_var.fill_(-100.0)
    out = model.eval()(huge)
    assert torch.allclose(out.numeric_logvar, torch.full((3,), ARCH.min_log_var))
    assert torch.isfinite(out.numeric_mean).all()


def test_architecture_json_round_trip():
    restored = VAEArchitecture.from_dict(json.loads(json.dumps(ARCH.to_dict())))
    assert restored == ARCH


def test_state_dict_rebuilds_the_same_function(model, x):
    clone = TabularVAE(VAEArchitecture.from_dict(ARCH.to_dict()))
    clone.load_state_dict(model.state_dict())
    for a, b in zip(model.eval()(x), clone.eval()(x), strict=True):
        assert torch.equal(a, b)


def test_gradients_reach_every_parameter(model, x):
    model.train()
    out = model(x)
    total = sum(t.sum() for t in out)
    total.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name


def test_models_saved_with_separate_latent_layers_still_load(model, x):
    """Weights saved when mean and log-variance had a layer each load into ``to_latent``."""
    state = dict(model.state_dict())
    weight, bias = state.pop("to_latent.weight"), state.pop("to_latent.bias")
    latent = ARCH.latent_dim
    state |= {
        "to_mu.weight": weight[:latent],
        "to_mu.bias": bias[:latent],
        "to_logvar.weight": weight[latent:],
        "to_logvar.bias": bias[latent:],
    }
    legacy = TabularVAE(ARCH)
    legacy.load_state_dict(state)  # strict: no key missing, none left over
    for a, b in zip(model.eval()(x), legacy.eval()(x), strict=True):
        assert torch.equal(a, b)

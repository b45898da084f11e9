"""The model-agnostic fit loop, exercised with tiny models whose optimum is known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vae_core.errors import NonFiniteLossError
from vae_core.losses import Batch
from vae_core.training import (
    EpochRecord,
    TrainingConfig,
    evaluate,
    fit,
    resolve_device,
    trimmed_mean,
)


def regression_batch(x: torch.Tensor, target: torch.Tensor) -> Batch:
    """A Batch whose ``inputs`` are features and ``numeric`` the regression target."""
    n = len(x)
    return Batch(
        inputs=x,
        numeric=target,
        numeric_mask=torch.ones(n, 1),
        categories=torch.zeros(n, 0, dtype=torch.long),
        missing=torch.zeros(n, 0),
    )


def squared_error(model: nn.Module, batch: Batch) -> torch.Tensor:
    return ((model(batch.inputs) - batch.numeric) ** 2).sum(dim=1)


def slope_model() -> nn.Linear:
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    return model


def xs(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, generator=torch.Generator().manual_seed(seed))


# -- helpers -----------------------------------------------------------------------------


def test_trimmed_mean_drops_the_largest_values():
    losses = torch.tensor([3.0, 100.0, 1.0, 2.0])
    assert trimmed_mean(losses, 0.25).item() == pytest.approx(2.0)
    assert trimmed_mean(losses, 0.5).item() == pytest.approx(1.5)
    assert trimmed_mean(losses, 0.0).item() == pytest.approx(26.5)


def test_trimmed_mean_keeps_everything_when_the_cut_rounds_to_zero_and_one_at_least():
    losses = torch.tensor([1.0, 2.0, 3.0])
    assert trimmed_mean(losses, 0.2).item() == pytest.approx(2.0)
    assert trimmed_mean(torch.tensor([5.0, 1.0]), 0.99).item() == pytest.approx(1.0)


def test_trimmed_mean_passes_gradients_to_kept_rows_only():
    losses = torch.tensor([1.0, 50.0, 2.0, 3.0], requires_grad=True)
    trimmed_mean(losses, 0.25).backward()
    assert losses.grad.tolist() == pytest.approx([1 / 3, 0.0, 1 / 3, 1 / 3])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_resolve_device_auto_falls_back_to_cpu():
    assert resolve_device("auto") == torch.device("cpu")


def test_resolve_device_auto_matches_availability_and_passes_names_through():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_evaluate_is_batched_deterministic_and_restores_the_mode():
    model = nn.Sequential(nn.Linear(1, 4), nn.Dropout(0.5), nn.Linear(4, 1))
    data = regression_batch(xs(50), xs(50, seed=1))
    model.train()
    whole = evaluate(model, squared_error, data, batch_size=50)
    chunked = evaluate(model, squared_error, data, batch_size=7)
    assert model.training
    assert whole.shape == (50,)
    torch.testing.assert_close(whole, chunked)  # dropout off: deterministic


# -- the loop ----------------------------------------------------------------------------


def test_fit_learns_and_reports_every_epoch():
    x = xs(256)
    train = regression_batch(x, 3.0 * x)
    validation = regression_batch(xs(64, seed=2), 3.0 * xs(64, seed=2))
    model = slope_model()
    records: list[EpochRecord] = []
    config = TrainingConfig(max_epochs=30, batch_size=32, learning_rate=0.1, trim_fraction=0.0)
    result = fit(model, squared_error, train, validation, config, [records.append], member=4)
    assert model.weight.item() == pytest.approx(3.0, abs=0.05)
    assert records == result.history
    assert [r.epoch for r in records] == list(range(len(records)))
    assert all(r.member == 4 for r in records)
    assert all(math.isfinite(r.train_loss) and math.isfinite(r.val_loss) for r in records)
    assert records[-1].val_loss < records[0].val_loss
    assert result.best_val_loss == min(r.val_loss for r in records)
    assert not model.training  # handed back in evaluation mode


def test_early_stopping_stops_and_restores_the_best_weights():
    """Validation targets have the opposite sign: every step after the first makes it worse."""
    x = xs(200)
    train = regression_batch(x, x)
    validation = regression_batch(x[:50], -x[:50])
    model = slope_model()
    weights: list[float] = []
    config = TrainingConfig(
        max_epochs=100, batch_size=32, learning_rate=0.05, patience=2, trim_fraction=0.0
    )
    result = fit(
        model,
        squared_error,
        train,
        validation,
        config,
        [lambda record: weights.append(model.weight.item())],
    )
    assert result.stopped_early
    assert result.best_epoch == 0
    assert len(result.history) == config.patience + 1 < config.max_epochs
    assert weights[-1] > weights[0] > 0  # training did move on after the best epoch ...
    assert model.weight.item() == weights[0]  # ... and the best weights were restored
    restored_loss = trimmed_mean(evaluate(model, squared_error, validation, 64), 0.0)
    assert restored_loss.item() == pytest.approx(result.best_val_loss)


def test_patience_is_not_hit_when_validation_keeps_improving():
    x = xs(200)
    train = regression_batch(x, 2.0 * x)
    model = slope_model()
    config = TrainingConfig(
        max_epochs=5, batch_size=200, learning_rate=0.01, patience=2, trim_fraction=0.0
    )
    result = fit(model, squared_error, train, train, config)
    assert not result.stopped_early
    assert len(result.history) == 5
    assert result.best_epoch == 4


def test_trimming_keeps_outlying_rows_out_of_the_fit():
    """10% of rows follow a wildly different slope; trimming 20% ignores them."""
    x = xs(500)
    target = 2.0 * x
    target[::10] = -20.0 * x[::10]
    train = regression_batch(x, target)
    validation = regression_batch(xs(100, seed=3), 2.0 * xs(100, seed=3))

    def slope(trim: float) -> float:
        model = slope_model()
        config = TrainingConfig(
            max_epochs=40,
            batch_size=50,
            learning_rate=0.05,
            trim_fraction=trim,
            warmup_epochs=0,
            patience=100,
        )
        fit(model, squared_error, train, validation, config)
        return model.weight.item()

    assert slope(0.2) == pytest.approx(2.0, abs=0.1)
    assert abs(slope(0.0) - 2.0) > 1.0  # least squares on all rows is pulled far away


def test_same_seed_same_weights():
    x = xs(100)
    train = regression_batch(x, torch.sin(3 * x))

    def run(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
        config = TrainingConfig(max_epochs=5, batch_size=16, seed=seed, trim_fraction=0.0)
        fit(model, squared_error, train, train, config)
        return [p.detach().clone() for p in model.parameters()]

    first, second, other = run(0), run(0), run(1)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_non_finite_validation_loss_raises():
    x = xs(40)
    data = regression_batch(x, x)

    def nan_when_evaluating(model: nn.Module, batch: Batch) -> torch.Tensor:
        loss = squared_error(model, batch)
        return loss if model.training else loss * float("nan")

    config = TrainingConfig(max_epochs=3, batch_size=8)
    with pytest.raises(NonFiniteLossError) as info:
        fit(slope_model(), nan_when_evaluating, data, data, config)
    assert "validation" in str(info.value)
    assert "epoch 0" in str(info.value)

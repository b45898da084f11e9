"""Size-aware defaults derived from the number of rows and the encoded width."""

from __future__ import annotations

import pytest

from vae_core.sizing import MAX_STEPS, MIN_STEPS, Sizes, auto_sizes, step_budget

WIDTHS = [1, 2, 5, 10, 20, 50, 100, 300, 1000, 5000, 100_000]
ROWS = [10, 50, 200, 1000, 10_000, 100_000, 10_000_000]


def test_auto_sizes_grow_with_input_width():
    sizes = [auto_sizes(n_rows=5000, input_dim=width) for width in WIDTHS]
    firsts = [s.hidden_sizes[0] for s in sizes]
    latents = [s.latent_dim for s in sizes]
    assert firsts == sorted(firsts)
    assert latents == sorted(latents)
    narrow, wide = auto_sizes(5000, 4), auto_sizes(5000, 1000)
    assert wide.hidden_sizes[0] > narrow.hidden_sizes[0]
    assert wide.latent_dim > narrow.latent_dim


def test_auto_sizes_are_bounded():
    huge = auto_sizes(n_rows=10_000_000, input_dim=1_000_000)
    assert huge == auto_sizes(n_rows=100_000_000, input_dim=10_000_000)  # saturated
    for width in WIDTHS:
        for rows in ROWS:
            sizes = auto_sizes(n_rows=rows, input_dim=width)
            assert 1 <= sizes.latent_dim <= 64
            assert all(1 <= h <= 4096 for h in sizes.hidden_sizes)
            assert sizes.hidden_sizes[-1] >= sizes.latent_dim  # encoder narrows to the code
            assert 2 <= sizes.batch_size <= 4096
            assert 1 <= sizes.max_epochs <= 10_000


def test_step_budget_grows_with_rows_within_its_bounds():
    budgets = [step_budget(rows) for rows in ROWS]
    assert budgets == sorted(budgets)
    assert budgets[0] == MIN_STEPS and budgets[-1] == MAX_STEPS
    assert MIN_STEPS < step_budget(1000) < MAX_STEPS


@pytest.mark.parametrize("rows", [200, 1000, 2000, 5000])
def test_epoch_bound_spends_the_step_budget(rows):
    sizes = auto_sizes(n_rows=rows, input_dim=20)
    steps_per_epoch = -(-rows // sizes.batch_size)
    steps = sizes.max_epochs * steps_per_epoch
    assert step_budget(rows) <= steps < step_budget(rows) + steps_per_epoch


def test_min_steps_raises_the_floor_of_the_budget():
    assert step_budget(200, min_steps=MAX_STEPS) == MAX_STEPS
    few_rows = auto_sizes(n_rows=200, input_dim=20)
    full = auto_sizes(n_rows=200, input_dim=20, min_steps=MAX_STEPS)
    assert full.max_epochs > few_rows.max_epochs
    assert auto_sizes(n_rows=200, input_dim=20, max_epochs=7, min_steps=MAX_STEPS).max_epochs == 7


def test_auto_hidden_layers_narrow_towards_the_latent():
    for width in WIDTHS:
        hidden = auto_sizes(1000, width).hidden_sizes
        assert list(hidden) == sorted(hidden, reverse=True)


def test_explicit_values_pass_through():
    sizes = auto_sizes(
        n_rows=100, input_dim=10, latent_dim=3, hidden_sizes=[7, 5], max_epochs=11, batch_size=9
    )
    assert sizes == Sizes(hidden_sizes=(7, 5), latent_dim=3, batch_size=9, max_epochs=11)


def test_explicit_and_auto_values_mix():
    auto = auto_sizes(n_rows=2000, input_dim=30)
    mixed = auto_sizes(n_rows=2000, input_dim=30, latent_dim=5)
    assert mixed.latent_dim == 5
    assert mixed.hidden_sizes == auto.hidden_sizes
    assert mixed.batch_size == auto.batch_size
    assert mixed.max_epochs == auto.max_epochs


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("latent_dim", 0),
        ("latent_dim", -2),
        ("hidden_sizes", ()),
        ("hidden_sizes", (16, 0)),
        ("batch_size", 1),
        ("max_epochs", 0),
        ("batch_size", "big"),
        ("min_steps", 0),
    ],
)
def test_invalid_values_raise(name, value):
    with pytest.raises(ValueError) as info:
        auto_sizes(n_rows=100, input_dim=10, **{name: value})
    if not isinstance(value, str):
        assert name in str(info.value)


def test_invalid_min_steps_raises_even_with_explicit_epochs():
    with pytest.raises(ValueError, match="min_steps=0"):
        auto_sizes(n_rows=100, input_dim=10, max_epochs=5, min_steps=0)

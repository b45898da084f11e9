"""Size-aware defaults: network width, latent size, batch size and epochs from data shape.

A fixed architecture that suits ten thousand rows of twenty features over-fits two hundred
rows and under-fits fifteen hundred features, so every "auto" value is derived from the
number of training rows and the encoded input width. Early stopping on the validation split
does the rest: ``max_epochs`` is an upper bound sized so that small sets still get enough
gradient steps and large sets do not spend minutes on epochs that no longer help.

The step budget grows with the rows, from ``MIN_STEPS`` to ``MAX_STEPS``: a few hundred
rows are learnt in a few hundred steps and more steps only cost time, while sets of
thousands of rows still gain from the full budget (``benchmarks/README.md`` has the
measurements).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Gradient steps the epoch bound aims for: STEPS_PER_ROW per training row, within
#: [MIN_STEPS, MAX_STEPS] (``min_steps`` raises the floor). Early stopping often ends
#: training sooner.
MIN_STEPS = 500
MAX_STEPS = 2000
STEPS_PER_ROW = 0.75


@dataclass(frozen=True)
class Sizes:
    hidden_sizes: tuple[int, ...]
    latent_dim: int
    batch_size: int
    max_epochs: int


def _round_to_power_of_two(value: float) -> int:
    return int(2 ** round(math.log2(max(value, 1.0))))


def step_budget(n_rows: int, min_steps: int = MIN_STEPS) -> int:
    """Gradient steps the automatic epoch bound aims for, for ``n_rows`` training rows."""
    return int(max(min_steps, min(MAX_STEPS, STEPS_PER_ROW * n_rows)))


def auto_sizes(
    n_rows: int,
    input_dim: int,
    latent_dim: int | str = "auto",
    hidden_sizes: Sequence[int] | str = "auto",
    max_epochs: int | str = "auto",
    batch_size: int | str = "auto",
    min_steps: int = MIN_STEPS,
) -> Sizes:
    """Resolve every "auto" setting for ``n_rows`` training rows of ``input_dim`` inputs."""
    # Checked even when max_epochs is explicit, so a bad setting fails where it is given
    # rather than on the first run that leaves max_epochs on "auto".
    if min_steps < 1:
        raise ValueError(f"min_steps={min_steps!r} must be at least 1.")
    hidden: tuple[int, ...]
    if hidden_sizes == "auto":
        first = min(256, max(32, _round_to_power_of_two(2 * input_dim)))
        hidden = (first, max(16, first // 2))
    else:
        hidden = tuple(int(h) for h in hidden_sizes)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden_sizes={hidden_sizes!r} must be positive integers.")
    if latent_dim == "auto":
        latent = int(min(16, max(2, round(1.5 * math.sqrt(input_dim)))))
    else:
        latent = int(latent_dim)
        if latent < 1:
            raise ValueError(f"latent_dim={latent_dim!r} must be at least 1.")
    if batch_size == "auto":
        batch = int(min(256, max(16, _round_to_power_of_two(n_rows / 16))))
    else:
        batch = int(batch_size)
        if batch < 2:
            raise ValueError(f"batch_size={batch_size!r} must be at least 2.")
    if max_epochs == "auto":
        steps_per_epoch = max(1, math.ceil(n_rows / batch))
        budget = step_budget(n_rows, min_steps)
        epochs = int(min(400, max(20, math.ceil(budget / steps_per_epoch))))
    else:
        epochs = int(max_epochs)
        if epochs < 1:
            raise ValueError(f"max_epochs={max_epochs!r} must be at least 1.")
    return Sizes(hidden, latent, batch, epochs)

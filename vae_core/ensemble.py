"""Fitting the tabular VAE ensemble: the validation split, the architecture and the members.

Kept apart from ``VAEAnomalyDetector`` so the estimator holds its parameters and its
scikit-learn surface, and this module the order of random draws that makes a fit
reproducible: the split permutation from ``seed``, then each member's weights from
``seed + 7919 * member``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import numpy as np
import torch

from vae_core.features import EncodedData, FeatureLayout
from vae_core.losses import Batch, negative_elbo
from vae_core.model import TabularVAE, VAEArchitecture
from vae_core.sizing import Sizes, auto_sizes
from vae_core.training import EpochCallback, TrainingConfig, TrainingResult, fit

#: Seeds of consecutive members differ by a prime, so no two members share a stream.
MEMBER_SEED_STRIDE = 7919


def split_rows(
    encoded: EncodedData, fraction: float, seed: int, device: torch.device
) -> tuple[np.ndarray, Batch, Batch]:
    """The validation rows (positions, sorted) and the training and validation rows on
    ``device``; at least two rows are held out."""
    n_rows = len(encoded.inputs)
    order = np.random.default_rng(seed).permutation(n_rows)
    n_val = max(2, int(round(fraction * n_rows)))
    val_index, train_index = np.sort(order[:n_val]), np.sort(order[n_val:])
    all_rows = Batch.from_encoded(encoded, device)
    train = all_rows.select(torch.as_tensor(train_index, device=device))
    validation = all_rows.select(torch.as_tensor(val_index, device=device))
    return val_index, train, validation


def architecture_for(
    layout: FeatureLayout,
    n_train: int,
    latent_dim: int | str,
    hidden_sizes: Sequence[int] | str,
    max_epochs: int | str,
    batch_size: int | str,
    min_steps: int,
) -> tuple[VAEArchitecture, Sizes]:
    """The network for ``layout`` and the sizes (``auto`` resolved from the data)."""
    sizes = auto_sizes(
        n_rows=n_train,
        input_dim=layout.input_dim,
        latent_dim=latent_dim,
        hidden_sizes=hidden_sizes,
        max_epochs=max_epochs,
        batch_size=batch_size,
        min_steps=min_steps,
    )
    arch = VAEArchitecture(
        input_dim=layout.input_dim,
        n_numeric=len(layout.numeric_columns),
        cardinalities=layout.cardinalities,
        n_missing=len(layout.missing_columns),
        hidden_sizes=sizes.hidden_sizes,
        latent_dim=sizes.latent_dim,
        bernoulli_columns=layout.bernoulli_columns,
    )
    return arch, sizes


def train_members(
    arch: VAEArchitecture,
    data: tuple[Batch, Batch],
    n_models: int,
    beta: float,
    config: TrainingConfig,
    callbacks: list[EpochCallback],
) -> tuple[list[TabularVAE], list[TrainingResult]]:
    """Train the ensemble members one after another, each from its own seed
    (``config.seed`` + a stride per member)."""
    train, validation = data
    loss_fn = partial(_row_loss, widths=arch.category_widths, beta=beta)
    models, results = [], []
    for member in range(n_models):
        member_config = replace(config, seed=config.seed + MEMBER_SEED_STRIDE * member)
        torch.manual_seed(member_config.seed)
        model = TabularVAE(arch).to(torch.device(config.device))
        results.append(fit(model, loss_fn, train, validation, member_config, callbacks, member))
        models.append(model)
    return models, results


def _row_loss(
    model: TabularVAE, batch: Batch, widths: tuple[int, ...], beta: float
) -> torch.Tensor:
    return negative_elbo(model(batch.inputs), batch, widths, beta)

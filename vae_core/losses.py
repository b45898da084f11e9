"""Reconstruction negative log-likelihood per feature, KL to N(0, I), and the ELBO.

Every function returns per-row (or per-row, per-term) values so that training can drop
the highest-loss rows of a batch and scoring can attribute a score to columns.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from vae_core.features import EncodedData
from vae_core.model import VAEOutput

_LOG_2PI = math.log(2 * math.pi)


class Batch(NamedTuple):
    """Tensors of ``EncodedData`` on one device."""

    inputs: torch.Tensor
    numeric: torch.Tensor
    numeric_mask: torch.Tensor
    categories: torch.Tensor
    missing: torch.Tensor

    @classmethod
    def from_encoded(cls, data: EncodedData, device: torch.device | str = "cpu") -> Batch:
        return cls(
            *(
                torch.from_numpy(np.ascontiguousarray(a)).to(device)
                for a in (
                    data.inputs,
                    data.numeric,
                    data.numeric_mask,
                    data.categories,
                    data.missing,
                )
            )
        )

    def select(self, index: torch.Tensor) -> Batch:
        # index_select: half the time of advanced indexing for a 1-d row index.
        return Batch(*(t.index_select(0, index) for t in self))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self))

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


def reconstruction_terms(
    out: VAEOutput, batch: Batch, cardinalities: tuple[int, ...], with_constants: bool
) -> torch.Tensor:
    """Per-row, per-term reconstruction NLL: numeric columns, categoricals, missing flags.

    With ``with_constants=False`` the Gaussian normaliser (0.5 * log(2 pi sigma^2), the
    same for every row because sigma is per column) is left out, so each term is >= 0 and
    a term's share of the row total is meaningful. Training needs it to learn sigma.
    Missing entries contribute 0.
    """
    numeric_logvar = out.numeric_logvar.float()
    residual = batch.numeric - out.numeric_mean.float()
    # The per-column factor is formed on the (n_numeric,) vector, not on the batch.
    numeric_nll = residual.square() * (0.5 * torch.exp(-numeric_logvar))
    if with_constants:
        numeric_nll = numeric_nll + 0.5 * (numeric_logvar + _LOG_2PI)
    numeric_nll = numeric_nll * batch.numeric_mask

    category_nll = []
    start = 0
    logits = out.category_logits.float()
    for j, cardinality in enumerate(cardinalities):
        codes = batch.categories[:, j]
        observed = codes >= 0
        column_logits = logits[:, start : start + cardinality]
        nll = F.cross_entropy(column_logits, codes.clamp(min=0), reduction="none")
        category_nll.append(nll * observed)
        start += cardinality
    parts = [numeric_nll]
    if category_nll:
        parts.append(torch.stack(category_nll, dim=1))
    if batch.missing.shape[1]:  # skipped when no column had missing values in training
        parts.append(
            F.binary_cross_entropy_with_logits(
                out.missing_logits.float(), batch.missing, reduction="none"
            )
        )
    return torch.cat(parts, dim=1) if len(parts) > 1 else numeric_nll


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per row, in closed form."""
    mu, logvar = mu.float(), logvar.float()
    # expm1(v) - v, not exp(v) - 1 - v: the same value, without losing the digits of a
    # near-prior posterior (v ~ 0) to cancellation.
    return 0.5 * (torch.expm1(logvar) - logvar).addcmul_(mu, mu).sum(dim=1)


def negative_elbo(
    out: VAEOutput, batch: Batch, cardinalities: tuple[int, ...], beta: float
) -> torch.Tensor:
    """Per-row training loss: summed reconstruction NLL + beta * KL."""
    recon = reconstruction_terms(out, batch, cardinalities, with_constants=True).sum(dim=1)
    return recon + beta * kl_to_standard_normal(out.mu, out.logvar)

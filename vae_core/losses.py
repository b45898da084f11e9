"""Reconstruction negative log-likelihood per feature, KL to N(0, I), and the ELBO.

Every function returns per-row (or per-row, per-term) values so that training can drop
the highest-loss rows of a batch and scoring can attribute a score to columns.
"""

from __future__ import annotations

import math
from functools import lru_cache
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
    out: VAEOutput, batch: Batch, widths: tuple[int, ...], with_constants: bool
) -> torch.Tensor:
    """Per-row, per-term reconstruction NLL: numeric columns, categoricals, missing flags.

    ``widths`` are the logits of each categorical column (``FeatureLayout.category_widths``).

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

    parts = [numeric_nll]
    if widths:
        parts.append(categorical_nll(out.category_logits.float(), batch.categories, widths))
    if batch.missing.shape[1]:  # skipped when no column had missing values in training
        parts.append(
            F.binary_cross_entropy_with_logits(
                out.missing_logits.float(), batch.missing, reduction="none"
            )
        )
    return torch.cat(parts, dim=1) if len(parts) > 1 else numeric_nll


class _LevelGroup(NamedTuple):
    """Categorical columns of one logit width and where their logits lie."""

    width: int
    #: Positions of the group's logits; None when they are one contiguous block (the
    #: common case of a wide set of flags), which is then sliced, a view.
    logit_index: torch.Tensor | None
    #: Positions of the group's columns; None when the group is every column, in order.
    column_index: torch.Tensor | None
    start: int  # first logit of the group
    n_columns: int


@lru_cache(maxsize=32)
def _level_groups(widths: tuple[int, ...], device: torch.device) -> tuple[_LevelGroup, ...]:
    """Categorical columns grouped by logit width, for one loss call per group."""
    offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
    groups = []
    by_size: dict[int, list[int]] = {}
    for column, width in enumerate(widths):
        by_size.setdefault(width, []).append(column)
    for width, columns in by_size.items():
        cols = np.asarray(columns, dtype=np.int64)
        logit_index = (offsets[cols, None] + np.arange(width)).reshape(-1)
        contiguous = bool(np.all(np.diff(logit_index) == 1))
        every_column = len(by_size) == 1
        groups.append(
            _LevelGroup(
                width,
                None if contiguous else torch.from_numpy(logit_index).to(device),
                None if every_column else torch.from_numpy(cols).to(device),
                int(logit_index[0]),
                len(columns),
            )
        )
    return tuple(groups)


def categorical_nll(
    logits: torch.Tensor, codes: torch.Tensor, widths: tuple[int, ...]
) -> torch.Tensor:
    """Per-row, per-column NLL of the observed levels; 0 where missing (code -1).

    A column of width 1 is a Bernoulli flag: its logit is that of its second value (code
    1), and any other code (the first value, or one never seen) is the first value's NLL,
    which scoring's unseen-level floor raises for an unseen value. Columns of one width
    are one loss call, a ``(rows x columns, levels)`` cross-entropy or one binary one: a
    loop of one call per column cost 1,500 calls per step (forward and backward) on a
    wide set of flags. Same values as the per-column calls.
    """
    n_rows = logits.shape[0]
    observed = codes >= 0
    pieces, positions = [], []
    for group in _level_groups(tuple(widths), logits.device):
        if group.logit_index is None:
            block = logits[:, group.start : group.start + group.n_columns * group.width]
        else:
            block = logits.index_select(1, group.logit_index)
        index = group.column_index
        group_codes = codes if index is None else codes.index_select(1, index)
        pieces.append(_group_nll(block, group_codes, group.width).view(n_rows, group.n_columns))
        positions.append(index)
    if len(pieces) == 1:
        return pieces[0] * observed
    order = torch.cat([p for p in positions if p is not None])
    grouped = torch.cat(pieces, dim=1)
    # Back to column order: scatter each group's columns to their positions.
    return grouped.index_select(1, torch.argsort(order)) * observed


def _group_nll(block: torch.Tensor, codes: torch.Tensor, width: int) -> torch.Tensor:
    """NLL of each code of a group's columns, flat (rows x columns)."""
    if width == 1:
        target = (codes == 1).to(block.dtype)
        return F.binary_cross_entropy_with_logits(block, target, reduction="none").reshape(-1)
    return F.cross_entropy(
        block.reshape(-1, width), codes.clamp(min=0).reshape(-1), reduction="none"
    )


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per row, in closed form."""
    mu, logvar = mu.float(), logvar.float()
    # expm1(v) - v, not exp(v) - 1 - v: the same value, without losing the digits of a
    # near-prior posterior (v ~ 0) to cancellation.
    return 0.5 * (torch.expm1(logvar) - logvar).addcmul_(mu, mu).sum(dim=1)


def negative_elbo(
    out: VAEOutput, batch: Batch, widths: tuple[int, ...], beta: float
) -> torch.Tensor:
    """Per-row training loss: summed reconstruction NLL + beta * KL."""
    recon = reconstruction_terms(out, batch, widths, with_constants=True).sum(dim=1)
    return recon + beta * kl_to_standard_normal(out.mu, out.logvar)

"""The terms of a row's score beyond the training loss, and their sum per source column.

Training fits the model with a Gaussian likelihood and masks missing cells out; a score
charges more. A cell missing where training had no missing value costs Laplace's
``log(n + 2)`` nats, a category never seen in training at least that much, numeric columns
are rescored with a Student-t likelihood (``student_t_terms``), and a categorical level
costs its rarity in training (``level_rarity_terms``). ``ColumnTerms`` runs each member of
an ensemble over a chunk of rows and sums these terms per source column and member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vae_core.features import EncodedData, FeatureLayout
from vae_core.losses import Batch, kl_to_standard_normal, reconstruction_terms
from vae_core.model import TabularVAE


def _term_to_feature_matrix(layout: FeatureLayout) -> tuple[torch.Tensor, tuple[str, ...]]:
    """0/1 matrix summing loss terms (numeric, categorical, missing flag) per source column."""
    names = tuple(dict.fromkeys(layout.term_columns))
    position = {name: i for i, name in enumerate(names)}
    matrix = torch.zeros(len(layout.term_columns), len(names))
    for term, name in enumerate(layout.term_columns):
        matrix[term, position[name]] = 1.0
    return matrix, names


def _unexpected_missing_terms(data: EncodedData, layout: FeatureLayout) -> np.ndarray | None:
    """Per-term NLL of cells missing in columns that had no missing values in training.

    None when there are no such cells, the common case, which spares a full-size array.
    """
    flagged = set(layout.missing_columns)
    numeric = (data.numeric_mask == 0) & np.array(
        [name not in flagged for name in layout.numeric_columns], dtype=bool
    )
    categorical = (data.categories < 0) & np.array(
        [name not in flagged for name in layout.categorical_columns], dtype=bool
    )
    if not (numeric.any() or categorical.any()):
        return None
    indicators = np.zeros((len(data), len(layout.missing_columns)), dtype=bool)
    unexpected = np.concatenate([numeric, categorical, indicators], axis=1)
    return unexpected.astype(np.float32) * layout.unexpected_missing_nll


def _unseen_level_floor(data: EncodedData, layout: FeatureLayout) -> np.ndarray | None:
    """Per-term lower bound on the NLL of a category never seen in training (0 elsewhere).

    The ``__unseen__`` level (always the last) is never a training target, but a briefly
    trained decoder has not yet pushed its probability down, and an unseen level would then
    score as ordinary as any other. Laplace's rule gives a level absent from n training
    rows a probability of at most 1 / (n + 2): its NLL is at least the cost of a value
    missing where training had none. None when no cell is unseen, the common case.
    """
    if not layout.cardinalities:
        return None
    unseen = data.categories == np.asarray(layout.cardinalities, dtype=np.int64) - 1
    if not unseen.any():
        return None
    floor = np.zeros((len(data), len(layout.term_columns)), dtype=np.float32)
    offset = len(layout.numeric_columns)
    floor[:, offset : offset + unseen.shape[1]] = unseen * layout.unexpected_missing_nll
    return floor


def student_t_terms(terms: torch.Tensor, n_numeric: int, dof: float | None) -> torch.Tensor:
    """Rescore the first ``n_numeric`` terms, Gaussian ``0.5 z^2``, as Student-t NLL.

    ``(dof + 1) / 2 * log1p(z^2 / dof)``, without its normaliser: about ``0.5 z^2`` near the
    decoded mean, logarithmic far from it. Training fits a Gaussian; scoring with its
    quadratic cost lets one column far out (a rate at 1 where training is nearly all 0)
    outweigh several moderately wrong ones, so an unusual but normal row outranks rows that
    break the joint structure. Order within a column is kept. ``dof=None``: Gaussian.
    """
    if dof is None or n_numeric == 0:
        return terms
    heavy = terms[:, :n_numeric].mul(2.0 / dof).log1p_().mul_(0.5 * (dof + 1.0))
    if n_numeric == terms.shape[1]:
        return heavy
    return torch.cat([heavy, terms[:, n_numeric:]], dim=1)


def level_rarity_terms(data: EncodedData, layout: FeatureLayout) -> np.ndarray | None:
    """Per-row rarity (nats) of each categorical column's level; 0 where missing.

    None when the layout has no rarities (no categorical columns, or a model saved before
    level counts were kept). It does not depend on the model, so ensembles add it once.
    """
    if not layout.category_rarity:
        return None
    # Every column's rarities in one flat table, looked up by offset + code at once: a
    # lookup per column was 1,500 numpy calls per chunk on a wide set of flags.
    table = np.concatenate([np.asarray(r, dtype=np.float64) for r in layout.category_rarity])
    offsets = np.cumsum([0, *(len(r) for r in layout.category_rarity[:-1])], dtype=np.int64)
    codes = data.categories
    observed = codes >= 0
    out = table[np.where(observed, codes + offsets, 0)]
    out[~observed] = 0.0
    return out


@dataclass(frozen=True)
class ColumnTerms:
    """How each member's reconstruction terms of a chunk become per-column NLL and KL."""

    layout: FeatureLayout
    device: torch.device | str
    numeric_dof: float | None
    assignment: torch.Tensor  # terms x columns, see ``_term_to_feature_matrix``
    names: tuple[str, ...]
    #: With only numeric columns and no missing-value flags, each loss term is one column:
    #: the matrix is the identity and the product is skipped.
    one_term_per_column: bool

    @classmethod
    def of(
        cls, layout: FeatureLayout, device: torch.device | str, numeric_dof: float | None
    ) -> ColumnTerms:
        assignment, names = _term_to_feature_matrix(layout)
        one_term_per_column = assignment.shape[0] == assignment.shape[1]
        return cls(layout, device, numeric_dof, assignment.to(device), names, one_term_per_column)

    def add_members(
        self,
        models: Sequence[TabularVAE],
        chunk: EncodedData,
        per_feature: np.ndarray,
        kl: np.ndarray,
    ) -> None:
        """Write the members' summed per-column terms and KL of ``chunk`` into the views."""
        layout, device = self.layout, self.device
        batch = Batch.from_encoded(chunk, device)
        unexpected = _unexpected_missing_terms(chunk, layout)
        extra = None if unexpected is None else torch.from_numpy(unexpected).to(device)
        unseen = _unseen_level_floor(chunk, layout)
        floor = None if unseen is None else torch.from_numpy(unseen).to(device)
        for member, model in enumerate(models):
            out = model(batch.inputs, sample=False)
            terms = reconstruction_terms(out, batch, layout.category_widths, False)
            terms = student_t_terms(terms, len(layout.numeric_columns), self.numeric_dof)
            if extra is not None:
                terms = terms + extra
            if floor is not None:
                terms = torch.maximum(terms, floor)
            if not self.one_term_per_column:
                terms = terms @ self.assignment
            member_kl = kl_to_standard_normal(out.mu, out.logvar).cpu().numpy()
            if member == 0:
                per_feature[:] = terms.cpu().numpy()
                kl[:] = member_kl
            else:
                per_feature += terms.cpu().numpy()
                kl += member_kl

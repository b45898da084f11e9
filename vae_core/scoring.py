"""Deterministic, batched scores and per-column contributions.

``recon_error`` is the reconstruction negative log-likelihood of the row decoded from the
posterior mean, without the Gaussian normaliser (a per-column constant), so it is >= 0 and
each column's share of it is meaningful. A categorical column's term also carries the
rarity of its level in training (``features.level_rarity``): what the row's values are,
not only how well the model reconstructs them. Numeric columns are scored with a
Student-t likelihood (``numeric_dof`` degrees of freedom) around the decoded mean, with the
learned scale; one with a few levels carries the tail evidence of its value too, and
a row's flags that of their rarer side (``vae_core.discrete_tails``). These terms are
computed in ``vae_core.score_terms``.
``score = recon_error + kl_weight * kl``, the weight the detector fitted
(``vae_core.kl_weight``). With an ensemble, every quantity is the mean over
members.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from vae_core.features import EncodedData, FeatureLayout
from vae_core.model import TabularVAE
from vae_core.score_terms import ColumnTerms, level_rarity_terms
from vae_core.threshold import Threshold

SCORE_COLUMNS = ("recon_error", "kl", "score", "is_anomaly")
#: Degrees of freedom of the Student-t likelihood numeric columns are scored with. Of 5, 10,
#: 20, 30, 50, 100, 200 and the Gaussian, 20-50 gave the best mean ROC AUC and AP on the
#: tabular, small and mixed-type benchmarks alike; 30 is the middle of that plateau.
DEFAULT_NUMERIC_DOF = 30.0
#: pandas' default text dtype (``str``, Arrow-backed) for the top-feature columns.
_TEXT_DTYPE = pd.Series(["text"]).dtype
DEFAULT_TOP_K = 3
#: On CPU, rows are scored in chunks whose widest layer holds about this many values (1 MB
#: of float32), so that a chunk's activations and per-term arrays stay in a core's L2
#: cache: 8,192-row chunks of a 20-column model (32 hidden units) scored 8-30% faster than
#: 65,536-row ones (median 18%), 1,024-row chunks of a 200-column model (256 hidden units)
#: 10-25% faster than 10,000-row ones.
CPU_CHUNK_CELLS = 262_144
MIN_CHUNK_ROWS = 256
#: On a GPU each kernel launch costs more than the memory traffic: large chunks.
DEVICE_CHUNK_ROWS = 65_536
#: Score columns written without Parquet min/max statistics. Statistics let a reader skip
#: row groups when it filters on a column; nobody filters on a share or a feature name,
#: and these columns' statistics were a third of the cost of writing the scores, most of
#: it comparing the name strings. Keys, timestamps, ``score`` and ``is_anomaly`` keep
#: theirs.
UNFILTERED_COLUMNS = frozenset(
    {
        "recon_error",
        "kl",
        *(
            f"top_feature_{rank}{suffix}"
            for rank in range(1, DEFAULT_TOP_K + 1)
            for suffix in ("", "_share")
        ),
    }
)


@dataclass(frozen=True)
class ScoreArrays:
    recon_error: np.ndarray  # (n,)
    kl: np.ndarray  # (n,)
    score: np.ndarray  # (n,)
    contributions: np.ndarray  # (n, n_features) share of recon_error per feature column
    feature_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.score)

    def take(self, rows: np.ndarray) -> ScoreArrays:
        """The scores of ``rows`` (positions), in that order."""
        return ScoreArrays(
            self.recon_error[rows],
            self.kl[rows],
            self.score[rows],
            self.contributions[rows],
            self.feature_names,
        )


def chunk_rows(
    models: Sequence[TabularVAE], layout: FeatureLayout, device: torch.device | str
) -> int:
    """Rows ``score_encoded`` runs through the models at a time, by default.

    On CPU a chunk's widest layer holds about ``CPU_CHUNK_CELLS`` values, so its
    activations and per-term arrays stay in a core's cache; on a GPU, chunks are large.
    """
    if torch.device(device).type != "cpu":
        return DEVICE_CHUNK_ROWS
    widest = max(
        max(model.arch.input_dim, *model.arch.hidden_sizes, sum(model.head_sizes))
        for model in models
    )
    return max(MIN_CHUNK_ROWS, CPU_CHUNK_CELLS // max(widest, len(layout.term_columns), 1))


def score_encoded(
    models: Sequence[TabularVAE],
    data: EncodedData,
    layout: FeatureLayout,
    kl_weight: float,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    numeric_dof: float | None = None,
) -> ScoreArrays:
    """Score encoded rows with every member of ``models`` and average.

    ``batch_size``: rows per forward pass; None picks ``chunk_rows``. ``numeric_dof``:
    score numeric columns with a Student-t likelihood of that many degrees of freedom
    (``student_t_terms``); None keeps the Gaussian of training.
    """
    if not models:
        raise ValueError("score_encoded needs at least one model.")
    if batch_size is None:
        batch_size = chunk_rows(models, layout, device)
    columns = ColumnTerms.of(layout, device, numeric_dof)
    n_rows = len(data)
    # Written by the first member, added to by the others: no zero-filled arrays. The
    # per-column terms become the shares in place, chunk by chunk, while in cache.
    kl = np.empty(n_rows, dtype=np.float64)
    per_feature = np.empty((n_rows, len(columns.names)), dtype=np.float64)
    recon = np.empty(n_rows, dtype=np.float64)
    rarity = level_rarity_terms(data, layout)
    position = {name: i for i, name in enumerate(columns.names)}
    rarity_columns = [position[name] for name in layout.categorical_columns]
    tail_columns = [position[name] for name in layout.tail_columns]
    for model in models:
        model.eval()
    with torch.inference_mode():
        for start in range(0, n_rows, batch_size):
            stop = min(start + batch_size, n_rows)
            columns.add_members(
                models, data.take(slice(start, stop)), per_feature[start:stop], kl[start:stop]
            )
            _chunk_shares(
                per_feature[start:stop],
                kl[start:stop],
                recon[start:stop],
                len(models),
                _Additions(
                    None if rarity is None else rarity[start:stop],
                    rarity_columns,
                    None if data.tails is None else data.tails[start:stop],
                    tail_columns,
                ),
            )
    shares = per_feature
    no_error = ~(recon > 0)  # a perfect (or undefined) reconstruction: no column to blame
    if no_error.any():
        shares[no_error] = 0.0
    return ScoreArrays(recon, kl, recon + kl_weight * kl, shares, columns.names)


@dataclass(frozen=True)
class _Additions:
    """A chunk's terms that do not depend on the model, and the columns they add to."""

    rarity: np.ndarray | None
    rarity_columns: list[int]
    tails: np.ndarray | None
    tail_columns: list[int]


def _chunk_shares(
    per_feature: np.ndarray,
    kl: np.ndarray,
    recon: np.ndarray,
    n_models: int,
    additions: _Additions,
) -> None:
    """Members' sums to means, level rarity and tail evidence added (once, not per
    member), ``recon`` the row sum, terms to shares.

    All in place, on one chunk's views of the output arrays.
    """
    if n_models > 1:
        per_feature /= n_models
        kl /= n_models
    if additions.rarity is not None:
        per_feature[:, additions.rarity_columns] += additions.rarity
    if additions.tails is not None:
        per_feature[:, additions.tail_columns] += additions.tails
    # einsum, not sum(axis=1): summing short rows one at a time cost 4x as much.
    # Each row's sum depends on its values alone, not on the batch around it.
    chunk_recon = np.einsum("ij->i", per_feature, out=recon)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(per_feature, chunk_recon[:, None], out=per_feature)


def _text_column(names: pa.Array) -> pd.api.extensions.ExtensionArray:
    """Arrow text as pandas' default text dtype, without building Python strings.

    Building it from an object array of Python strings costs several times the scoring.
    """
    try:
        return pd.array(names, dtype=_TEXT_DTYPE)
    except (TypeError, ValueError):  # a pandas without the Arrow-backed default string
        return pd.array(names.to_pylist(), dtype=object)


def top_k_columns(values: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` largest values, largest first; ties: lowest index.

    The same as a stable argsort of ``-values`` cut to ``k`` columns, at a fraction of the
    cost for small ``k``: ``k`` passes of argmax, each masking the column it found.
    """
    with np.errstate(invalid="ignore"):  # inf - inf is NaN too: then the NaN branch
        has_nan = bool(np.isnan(np.add.reduce(values, axis=None)))
    if has_nan:
        # A copy with NaN ranked last; torch's nan_to_num is several times numpy's.
        work = torch.nan_to_num(
            torch.from_numpy(values), nan=-math.inf, posinf=math.inf, neginf=-math.inf
        ).numpy()
    else:  # no NaN (the sum of values with one would be NaN): a plain copy, 2.5x cheaper
        work = np.array(values, dtype=np.float64, order="C")
    # Cells addressed by flat index: a fraction of the cost of (row, column) fancy indexing.
    row_starts = np.arange(len(work)) * work.shape[1]
    order = np.empty((len(work), k), dtype=np.int64)
    for rank in range(k):
        found = work.argmax(axis=1)
        order[:, rank] = found
        np.put(work, row_starts + found, -np.inf)
    return order


def _cells(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``values[i, columns[i]]`` for every row ``i``, by flat index."""
    flat = np.ascontiguousarray(values).reshape(-1)
    return flat.take(np.arange(len(values)) * values.shape[1] + columns)


def score_columns(
    scores: ScoreArrays, threshold: float | Threshold, top_k: int = DEFAULT_TOP_K
) -> dict[str, np.ndarray | pa.Array]:
    """The output columns in order: scores, flag, the conformal ``p_value`` (a ``Threshold``
    with calibration scores only), and the ``top_k`` columns with the largest share of
    ``recon_error`` (names as Arrow text, taken from the names by index)."""
    value = threshold.value if isinstance(threshold, Threshold) else threshold
    columns: dict[str, np.ndarray | pa.Array] = {
        "recon_error": scores.recon_error,
        "kl": scores.kl,
        "score": scores.score,
        "is_anomaly": scores.score > value,
    }
    p_values = threshold.p_values(scores.score) if isinstance(threshold, Threshold) else None
    if p_values is not None:
        columns["p_value"] = p_values
    k = min(top_k, scores.contributions.shape[1])
    if k:
        order = top_k_columns(scores.contributions, k)
        names = pa.array(list(scores.feature_names), type=pa.large_string())
        for rank in range(k):
            columns[f"top_feature_{rank + 1}"] = names.take(pa.array(order[:, rank]))
            columns[f"top_feature_{rank + 1}_share"] = _cells(scores.contributions, order[:, rank])
    return columns


def score_schema(n_features: int, top_k: int = DEFAULT_TOP_K, p_value: bool = False) -> pa.Schema:
    """Arrow types of ``score_columns``' output for a model of ``n_features`` columns;
    ``p_value``: with the conformal p-value column."""
    fields = [
        pa.field("recon_error", pa.float64()),
        pa.field("kl", pa.float64()),
        pa.field("score", pa.float64()),
        pa.field("is_anomaly", pa.bool_()),
    ]
    if p_value:
        fields.append(pa.field("p_value", pa.float64()))
    for rank in range(1, min(top_k, n_features) + 1):
        fields.append(pa.field(f"top_feature_{rank}", pa.large_string()))
        fields.append(pa.field(f"top_feature_{rank}_share", pa.float64()))
    return pa.schema(fields)


def to_frame(
    scores: ScoreArrays, threshold: float | Threshold, index: pd.Index, top_k: int = DEFAULT_TOP_K
) -> pd.DataFrame:
    """``score_columns`` as a DataFrame on ``index``; names in pandas' default text dtype."""
    columns = score_columns(scores, threshold, top_k)
    return pd.DataFrame(
        {
            name: _text_column(values) if isinstance(values, pa.Array) else values
            for name, values in columns.items()
        },
        index=index,
    )

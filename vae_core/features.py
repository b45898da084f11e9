"""Preprocessing fitted on training data only, with its whole state as plain JSON.

Numeric columns are centred on the median and divided by a robust spread (IQR, with
fallbacks for columns whose IQR is zero), then values far out are compressed
logarithmically instead of clipped: a contaminated training set cannot squash a whole
feature the way min-max scaling lets one extreme value do, and a value ten times further
out still scores higher than one that is merely far out (``vae_core.numeric_scaling``).

Categorical columns (strings, pandas categoricals) are one-hot encoded with rare levels
merged into one bucket and an explicit bucket for levels never seen in training.
Two-valued numeric columns and boolean columns (flags) are categorical columns too, coded 0
for their smaller value and 1 for the larger (False and True); on data with many of them,
each has one input and one Bernoulli logit (``FeatureLayout.bernoulli_columns``). On data
that are mostly flags, those whose two values are both common are numbers instead
(``MOSTLY_FLAGS``).
Every column with missing values in training gets a missing-value indicator; missing
entries themselves are masked out of the reconstruction loss. Level counts are kept so
that scoring can charge a rare level for its rarity (see ``level_rarity``), and numeric
columns with a few levels keep their levels' counts for their tail evidence
(``vae_core.discrete_tails``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from vae_core.discrete_tails import DiscreteTails, FlagTails, level_table
from vae_core.errors import EmptyInputError
from vae_core.numeric_scaling import (
    DEFAULT_SOFT_CLIP,
    compress_tail,
    robust_centre_scale,
    use_log_scale,
)
from vae_core.schema import FeatureSchema, is_numeric_dtype

#: From this many flags on, each has one input and one Bernoulli logit instead of three.
#: On 1,494 flags that cut a fit's CPU time 3.7x; on the shared sets with a few flags (NSL-KDD
#: 6, bank marketing 52) the three-level softmax had the better average precision
#: (NSL-KDD 0.699 against 0.671 over six fits), so narrow data keep it.
BERNOULLI_FLAGS_FROM = 256

#: On data whose modelled columns are at least this share flags (all-binary attribute
#: vectors), a flag whose rarer value is held by at least ``NUMERIC_FLAG_SHARE`` of the
#: training rows is modelled as a number on the robust scale (its IQR is one step, so its
#: rarer value sits 1.35 units out) instead of as a Bernoulli variable. On the derived
#: benchmark's binary variants that lifted the mean ROC AUC from 0.462 to 0.552; among
#: measurements (NSL-KDD's ``logged_in``) it cost AP, so there flags stay Bernoulli.
MOSTLY_FLAGS = 0.5
NUMERIC_FLAG_SHARE = 0.25

RARE_LEVEL = "__rare__"
UNSEEN_LEVEL = "__unseen__"


class ConstantColumnWarning(UserWarning):
    """A column carries no information in the training data and is not modelled."""


@dataclass(frozen=True)
class EncodedData:
    """Model-ready arrays for a batch of rows (all float32 except category codes)."""

    inputs: np.ndarray  # encoder input: scaled numerics, one-hot levels, missing flags
    numeric: np.ndarray  # scaled numeric targets, 0 where missing
    numeric_mask: np.ndarray  # 1 where the numeric value was observed
    categories: np.ndarray  # int64 level codes per categorical column, -1 where missing
    missing: np.ndarray  # missing-value indicators (targets of the Bernoulli head)
    #: Tail evidence of the discrete numeric columns and the flags
    #: (``FeatureLayout.tail_columns``); None when the model has none. Not a model input:
    #: scoring adds it to their terms.
    tails: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def take(self, rows: np.ndarray | slice) -> EncodedData:
        """The rows ``rows`` (positions, or a slice: then views) of every array."""
        return EncodedData(
            self.inputs[rows],
            self.numeric[rows],
            self.numeric_mask[rows],
            self.categories[rows],
            self.missing[rows],
            None if self.tails is None else self.tails[rows],
        )


@dataclass(frozen=True)
class FeatureLayout:
    """Shapes the model needs, and which source column each loss term belongs to."""

    numeric_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    cardinalities: tuple[int, ...]
    missing_columns: tuple[str, ...]
    #: NLL of a value missing where training never had one, see ``unexpected_missing_nll``.
    unexpected_missing_nll: float = 0.0
    #: Per categorical column, the rarity (nats) of each level, see ``level_rarity``; empty
    #: for a model saved before level counts were kept, which then scores without it.
    category_rarity: tuple[tuple[float, ...], ...] = ()
    #: The columns with tail evidence (discrete numeric, then flags), in the order of
    #: ``EncodedData.tails``.
    tail_columns: tuple[str, ...] = ()
    #: Positions (among the categorical columns) of the flags that have one input cell (+1
    #: for the second value, -1 for the first) and one Bernoulli logit instead of a one-hot
    #: block and a softmax over their levels; empty where flags keep three (data with few
    #: flags, models saved before).
    bernoulli_columns: tuple[int, ...] = ()

    @cached_property  # read for every batch encoded and every chunk scored
    def category_widths(self) -> tuple[int, ...]:
        """Input cells and logits of each categorical column, see ``level_widths``."""
        return level_widths(self.cardinalities, self.bernoulli_columns)

    @property
    def input_dim(self) -> int:
        widths = self.category_widths
        return len(self.numeric_columns) + sum(widths) + len(self.missing_columns)

    @property
    def term_columns(self) -> list[str]:
        """Source column of each reconstruction term, in the order losses.py emits them."""
        return [*self.numeric_columns, *self.categorical_columns, *self.missing_columns]


def level_widths(
    cardinalities: tuple[int, ...], bernoulli_columns: tuple[int, ...]
) -> tuple[int, ...]:
    """Input cells and logits per categorical column: its levels, or 1 for a Bernoulli flag.

    A flag as a softmax over its two values and the unseen level took three cells and three
    logits: on 1,500 flags the encoder's input and the decoder's head were three times the
    width of the data. One logit is the same likelihood over the two values; a value never
    seen in training is charged by the unseen-level floor in scoring.
    """
    bernoulli = set(bernoulli_columns)
    return tuple(1 if j in bernoulli else c for j, c in enumerate(cardinalities))


def flag_positions(categorical: Sequence[dict[str, Any]]) -> list[int]:
    """Positions of the flags (two-valued numeric columns) among the categorical states."""
    return [j for j, col in enumerate(categorical) if col.get("numeric_values") is not None]


def unexpected_missing_nll(n_train_rows: int) -> float:
    """NLL of a missing value in a column that had none in ``n_train_rows`` training rows.

    Laplace's rule of succession puts the probability of missingness at 1 / (n + 2), so
    the value costs log(n + 2) nats. Without it a masked cell would cost nothing, and a
    row whose sensors all went dark would score as the most normal row of the batch.
    """
    return math.log(n_train_rows + 2)


def level_rarity(counts: list[float]) -> list[float]:
    """Nats by which each level is less probable than the column's most common level.

    Probabilities follow Laplace's rule, (count + 1) / (n + levels), so a level never seen
    in training is finite. The decoder reconstructs a rare level almost as cheaply as a
    common one once the latent code has captured it, so without this a row of an unusual
    service or protocol looks ordinary; the marginal surprise is what ECOD-style per-column
    tail scores see and a reconstruction does not. The most common level costs 0.
    """
    if not counts:
        return []
    smoothed = np.asarray(counts, dtype=np.float64) + 1.0
    surprise = np.log(smoothed.max()) - np.log(smoothed)
    return [float(v) for v in surprise]


def _category_rarity(categorical: list[dict[str, Any]]) -> tuple[tuple[float, ...], ...]:
    """Rarity per level of every categorical column; zeros where no counts were kept.

    Two-valued numeric columns (flags, dummies of a categorical encoded upstream) keep no
    counts: on the one tabular set with such columns (bank marketing, one-hot dummies)
    charging their rarity lowered ROC AUC from 0.779 to 0.743.
    """
    if not any("counts" in col for col in categorical):
        return ()
    return tuple(
        tuple(level_rarity(col["counts"])) if "counts" in col else (0.0,) * len(col["levels"])
        for col in categorical
    )


@dataclass
class _ColumnStates:
    """The fitted state of each column, in schema order, and the columns left out, and why."""

    numeric: list[dict[str, Any]] = field(default_factory=list)
    categorical: list[dict[str, Any]] = field(default_factory=list)
    missing_indicators: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    #: Whether numeric columns with a few levels keep them for their tail evidence.
    discrete_tails: bool = True
    #: The numeric states of the flags whose two values are both common, by name.
    common_flags: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, name: str, kind: str, series: pd.Series, n_rows: int, min_count: int) -> None:
        n_missing = int(series.isna().sum())
        if n_missing == n_rows:
            self.dropped.append(f"{name} (all values missing)")
            return
        if 0 < n_missing:
            self.missing_indicators.append(name)
        if kind == "numeric":
            self._add_numeric(name, series)
        elif pd.api.types.is_bool_dtype(series):
            self._add_boolean(name, series)
        else:
            self._add_categorical(name, series, min_count)

    def _add_numeric(self, name: str, series: pd.Series) -> None:
        values = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
        observed = values[~np.isnan(values)]
        distinct, counts = np.unique(observed, return_counts=True)
        if distinct.size <= 1:
            self.dropped.append(f"{name} (constant {observed[0]!r})")
            return
        if not np.isfinite(observed).any():
            self.dropped.append(f"{name} (only infinite values)")
            return
        if distinct.size == 2 and np.isfinite(distinct).all():
            self._add_flag(name, observed, distinct, counts)
            return
        log = use_log_scale(observed)
        centre, scale = robust_centre_scale(np.log1p(observed) if log else observed)
        state = {"name": name, "centre": centre, "scale": scale, "log1p": log}
        table = level_table(distinct, counts) if self.discrete_tails else None
        self.numeric.append(state if table is None else {**state, **table})

    def _add_boolean(self, name: str, series: pd.Series) -> None:
        """A boolean column is a flag with the values 0 and 1, as a 0/1 column is. As a
        categorical column (a softmax, its rarer level charged its rarity, no part in the
        flags' side sum) the derived benchmark's binary variants stored as booleans ranked
        anomalies at 0.450 mean ROC AUC, against 0.552 for the same data as numbers."""
        observed = series.dropna().to_numpy(np.float64)
        distinct, counts = np.unique(observed, return_counts=True)
        if distinct.size <= 1:
            self.dropped.append(f"{name} (constant {bool(distinct[0])!r})")
            return
        self._add_flag(name, observed, distinct, counts)

    def _add_flag(
        self, name: str, observed: np.ndarray, distinct: np.ndarray, counts: np.ndarray
    ) -> None:
        """A two-valued column: a Bernoulli variable, with the training counts of its two
        values for the flags' tail evidence; its state as a number too when both values
        are common (``NUMERIC_FLAG_SHARE``), for ``settle_flags``."""
        flag: dict[str, Any] = {"name": name, "numeric_values": [float(v) for v in distinct]}
        if self.discrete_tails:
            flag["flag_counts"] = [float(c) for c in counts]
        levels = [repr(float(v)) for v in distinct] + [UNSEEN_LEVEL]
        self.categorical.append({**flag, "levels": levels, "rare": []})
        # Only common flags may become numbers: on the robust scale a flag set in 2% of
        # rows would sit 50 units out and outweigh every other column whenever it is set.
        if counts.min() >= NUMERIC_FLAG_SHARE * counts.sum():
            centre, scale = robust_centre_scale(observed)
            self.common_flags[name] = {**flag, "centre": centre, "scale": scale, "log1p": False}

    def settle_flags(self) -> None:
        """On data that are mostly flags (``MOSTLY_FLAGS``), model the flags whose two
        values are both common as numbers, after the other numeric columns."""
        n_flags = len(flag_positions(self.categorical))
        n_columns = len(self.numeric) + len(self.categorical)
        if not self.common_flags or n_flags < MOSTLY_FLAGS * n_columns:
            return
        self.categorical = [col for col in self.categorical if col["name"] not in self.common_flags]
        self.numeric.extend(self.common_flags.values())

    def _add_categorical(self, name: str, series: pd.Series, min_count: int) -> None:
        counts = series.dropna().astype(str).value_counts()
        if len(counts) <= 1:
            self.dropped.append(f"{name} (constant {counts.index[0]!r})")
            return
        kept = [str(level) for level, n in counts.items() if n >= min_count]
        rare = [str(level) for level, n in counts.items() if n < min_count]
        levels = kept + ([RARE_LEVEL] if rare else []) + [UNSEEN_LEVEL]
        # The merged bucket counts as rare as its levels are on average, not as common as
        # their total: each of them is rare on its own.
        values = counts.to_numpy(np.float64)
        level_counts = [float(n) for n in values[values >= min_count]]
        if rare:
            level_counts.append(float(values[values < min_count].mean()))
        self.categorical.append(
            {"name": name, "levels": levels, "rare": rare, "counts": [*level_counts, 0.0]}
        )


class Preprocessor:
    """Fitted feature encoding. Construct with ``fit`` or ``from_dict``."""

    def __init__(self, state: dict[str, Any]):
        self.state = state
        self._tails = DiscreteTails(state["numeric"])
        # The flags' tail evidence: the Bernoulli flags (categorical), then those modelled
        # as numbers, one side sum over them all.
        self._categorical_flags = [
            j for j, col in enumerate(state["categorical"]) if "flag_counts" in col
        ]
        self._numeric_flags = [col for col in state["numeric"] if "flag_counts" in col]
        #: Their states in ``FlagTails``' order.
        self._flag_states = [
            *(state["categorical"][j] for j in self._categorical_flags),
            *self._numeric_flags,
        ]
        self._flags = FlagTails(self._flag_states, state.get("flag_tail_median"))
        self.layout = FeatureLayout(
            numeric_columns=tuple(c["name"] for c in state["numeric"]),
            categorical_columns=tuple(c["name"] for c in state["categorical"]),
            cardinalities=tuple(len(c["levels"]) for c in state["categorical"]),
            missing_columns=tuple(state["missing_indicators"]),
            unexpected_missing_nll=unexpected_missing_nll(int(state["n_rows"])),
            category_rarity=_category_rarity(state["categorical"]),
            tail_columns=self._tails.names + self._flags.names,
            bernoulli_columns=(
                tuple(flag_positions(state["categorical"])) if state.get("bernoulli_flags") else ()
            ),
        )
        self._level_index = [
            {level: i for i, level in enumerate(c["levels"])} for c in state["categorical"]
        ]
        self._rare = [set(c["rare"]) for c in state["categorical"]]
        numeric = state["numeric"]
        self._centres = np.array([c["centre"] for c in numeric], dtype=np.float64)
        self._scales = np.array([c["scale"] for c in numeric], dtype=np.float64)
        self._log_columns = np.flatnonzero([bool(c.get("log1p")) for c in numeric])

    # -- fitting ---------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        schema: FeatureSchema,
        rare_min_count: int | None = None,
        soft_clip: float = DEFAULT_SOFT_CLIP,
        discrete_tails: bool = True,
        bernoulli_flags: bool | None = None,
    ) -> Preprocessor:
        """Fit the encoding on ``frame``. ``bernoulli_flags``: whether flags get one input
        and one logit each; None decides by their number (``BERNOULLI_FLAGS_FROM``)."""
        n_rows = len(frame)
        min_count = rare_min_count if rare_min_count is not None else max(3, n_rows // 1000)
        columns = _ColumnStates(discrete_tails=discrete_tails)
        for spec in schema.columns:
            columns.add(spec.name, spec.kind, frame[spec.name], n_rows, min_count)
        n_flags = len(flag_positions(columns.categorical))  # every flag, before they settle
        columns.settle_flags()
        dropped = columns.dropped
        if dropped:
            warnings.warn(
                "not modelled, no information in the training data: " + ", ".join(dropped),
                ConstantColumnWarning,
                stacklevel=3,
            )
        if not columns.numeric and not columns.categorical and not columns.missing_indicators:
            raise EmptyInputError(
                "every feature column is constant or empty in the training data: "
                + ", ".join(dropped)
                + ". Train on data in which at least one feature varies."
            )
        state = {
            "numeric": columns.numeric,
            "categorical": columns.categorical,
            "missing_indicators": columns.missing_indicators,
            "soft_clip": soft_clip,
            "rare_min_count": min_count,
            "n_rows": n_rows,
        }
        if bernoulli_flags if bernoulli_flags is not None else n_flags >= BERNOULLI_FLAGS_FROM:
            state["bernoulli_flags"] = True
        fitted = cls(state)
        if fitted._flags:  # the training rows' median flag tail sum, the evidence's origin
            # The flags alone, as one block: the other categorical columns' codes are not
            # needed here, and each costs a pass of its own.
            codes = fitted._encode_flags(frame, fitted._flag_states)
            state["flag_tail_median"] = float(np.median(fitted._flags.row_sums(codes)))
            fitted = cls(state)
        return fitted

    # -- JSON ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Preprocessor:
        return cls(state)

    # -- transform -------------------------------------------------------------------
    def transform(self, frame: pd.DataFrame) -> EncodedData:
        """Encode a frame that passed ``FeatureSchema.validate``; vectorised per column."""
        n_rows = len(frame)
        numeric, numeric_mask, tails = self._encode_numeric(frame)
        codes = self._encode_categories(frame)
        if self._flags:
            flags = self._flags.terms(self._flag_codes(frame, codes))
            tails = flags if tails is None else np.concatenate([tails, flags], axis=1)
        one_hot = self._one_hot(codes)
        missing = (
            np.stack(
                [frame[name].isna().to_numpy() for name in self.state["missing_indicators"]],
                axis=1,
            ).astype(np.float32)
            if self.state["missing_indicators"]
            else np.zeros((n_rows, 0), dtype=np.float32)
        )
        inputs = np.concatenate([numeric, one_hot, missing], axis=1)
        return EncodedData(inputs, numeric, numeric_mask, codes, missing, tails)

    def _one_hot(self, codes: np.ndarray) -> np.ndarray:
        """One block for every categorical column, set by flat index (a block per column
        was 1,500 allocations per batch on a wide set of flags). A Bernoulli flag's one
        cell is +1 for its second value, -1 for its first, 0 for an unseen or missing one.
        """
        widths = self.layout.category_widths
        one_hot = np.zeros((len(codes), sum(widths)), dtype=np.float32)
        if not widths:
            return one_hot
        offsets = np.cumsum([0, *widths[:-1]], dtype=np.int64)
        one_cell = np.asarray(widths) == 1
        rows, columns = np.nonzero((codes >= 0) & (~one_cell | (codes <= 1)))
        flag = one_cell[columns]
        values = np.where(flag, 2.0 * codes[rows, columns] - 1.0, 1.0)
        one_hot[rows, offsets[columns] + np.where(flag, 0, codes[rows, columns])] = values
        return one_hot

    def _encode_numeric(
        self, frame: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Scaled numeric columns, their observed-mask and the discrete columns' tail
        evidence (None without such columns), all columns at once.

        One (rows x columns) matrix and whole-matrix operations: per-column loops cost more
        in temporaries and Python calls than the arithmetic on wide, long batches.
        """
        columns = self.state["numeric"]
        if not columns:
            empty = np.zeros((len(frame), 0), dtype=np.float32)
            return empty, empty.copy(), None
        names = [col["name"] for col in columns]
        dtypes = frame.dtypes  # not frame[name].dtype: a Series per column costs more
        if all(is_numeric_dtype(dtypes[name]) for name in names):
            # One conversion of the whole block instead of one per column.
            raw = frame[names].to_numpy(np.float64, na_value=np.nan, copy=True)
        else:
            raw = np.empty((len(frame), len(columns)), dtype=np.float64)
            for j, name in enumerate(names):
                series = frame[name]
                if not is_numeric_dtype(series):
                    series = pd.to_numeric(series, errors="coerce")
                raw[:, j] = series.to_numpy(np.float64, na_value=np.nan)
        missing = np.isnan(raw)
        tails = self._tails.terms(raw) if self._tails else None  # on the raw values
        logged = self._log_columns
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if logged.size:
                # Below -1 log1p is undefined: such values map to -inf, then to the lower
                # cap, i.e. as far out as anything can be.
                part = raw[:, logged]
                defined = part > -1
                raw[:, logged] = np.where(defined, np.log1p(np.where(defined, part, 0.0)), -np.inf)
            # In place: ``raw`` is this call's own copy, and batches are large.
            z = np.divide(np.subtract(raw, self._centres, out=raw), self._scales, out=raw)
        any_missing = bool(missing.any())
        if any_missing:
            z[missing] = 0.0
        # A batch from pandas is column-major; the soft clip is element-wise, so it runs on
        # the transposed (row-major) view, in memory order, and the float32 casts below turn
        # the result row-major once, where the model needs it.
        soft_clip = float(self.state["soft_clip"])
        compress_tail(z.T if z.flags.f_contiguous else z, soft_clip, in_place=True)
        if any_missing:
            # Cast first, transpose after: a transposing cast of booleans is 3x slower.
            observed = np.ascontiguousarray(np.logical_not(missing).astype(np.float32))
        else:
            observed = np.ones(missing.shape, dtype=np.float32)
        return z.astype(np.float32, order="C"), observed, tails

    def _encode_categories(self, frame: pd.DataFrame) -> np.ndarray:
        """Level codes of every categorical column, -1 where missing.

        Two-valued numeric columns (flags) are coded as one block: on a wide set of flags a
        call per column cost more than the comparisons.
        """
        categorical = self.state["categorical"]
        codes = np.full((len(frame), len(categorical)), -1, dtype=np.int64)
        flags = flag_positions(categorical)
        if flags:
            codes[:, flags] = self._encode_flags(frame, [categorical[j] for j in flags])
        for j in sorted(set(range(len(categorical))) - set(flags)):
            codes[:, j] = self._encode_levels(frame[categorical[j]["name"]], j)
        return codes

    def _flag_codes(self, frame: pd.DataFrame, codes: np.ndarray) -> np.ndarray:
        """The codes of the flags with tail evidence, in ``FlagTails``' order; those of the
        Bernoulli flags taken from ``codes``, the categorical columns' codes."""
        categorical = codes[:, self._categorical_flags]
        if not self._numeric_flags:
            return categorical
        numeric = self._encode_flags(frame, self._numeric_flags)
        return np.concatenate([categorical, numeric], axis=1)

    @staticmethod
    def _encode_flags(frame: pd.DataFrame, columns: list[dict[str, Any]]) -> np.ndarray:
        """Codes 0 / 1 of the two values seen in training, 2 (the unseen code) for any other
        value, -1 where missing; compared as numbers, so 1, 1.0 and True all match 1.0."""
        names = [col["name"] for col in columns]
        dtypes = frame.dtypes
        if all(is_numeric_dtype(dtypes[name]) for name in names):
            values = frame[names].to_numpy(np.float64, na_value=np.nan)
            missing = np.isnan(values)
        else:  # booleans among them, or values a number column should not hold
            values = np.column_stack(
                [
                    pd.to_numeric(frame[name], errors="coerce").to_numpy(
                        np.float64, na_value=np.nan
                    )
                    for name in names
                ]
            )
            missing = frame[names].isna().to_numpy()  # a value that is no number is unseen
        first, second = np.array([col["numeric_values"] for col in columns], dtype=np.float64).T
        codes = np.where(values == first, 0, np.where(values == second, 1, 2))
        codes[missing] = -1
        return codes

    def _encode_levels(self, series: pd.Series, j: int) -> np.ndarray:
        levels = self.state["categorical"][j]["levels"]
        index = self._level_index[j]
        unseen = len(levels) - 1
        rare_code = index.get(RARE_LEVEL, unseen)
        as_text = series.astype(str)
        mapped = as_text.map(index)
        if self._rare[j]:
            mapped = mapped.where(~as_text.isin(self._rare[j]), rare_code)
        codes = mapped.fillna(unseen).to_numpy(np.int64, copy=True)
        codes[series.isna().to_numpy()] = -1
        return codes

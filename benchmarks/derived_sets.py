"""Variants of the shared labelled sets in the regimes where the VAE loses, labels kept.

Each variant is a fixed, label-free transform of a set's feature columns, so every
anomaly stays where it was, but the data take the form of a losing regime:

- ``binary``: every column above its median (all-binary attribute vectors);
- ``levels``: every column in 17 quantile bins, coded 0 to 16 (discrete intensities with
  few levels and many tied values);
- ``counts``: sparse non-negative counts, 0 below each column's 70th percentile and then
  0-8 by quantile (most cells zero, a long tail of small integers);
- ``wide``: every column binarised at its 10th, 20th, ..., 90th percentiles (nine flags
  per column), for the wide, mostly two-valued regime.

Quantiles are taken on the whole set, as a feature pipeline upstream of a detector would
fix its bins once. The transforms are monotone in each column, so a value far out stays
at the extreme level.

    python benchmarks/derived_sets.py ../shared/datasets OUT_DIR   # writes OUT_DIR/*.parquet
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

#: Base sets of the derived benchmark: those of the shared sets whose features are
#: continuous enough for the transforms to change them (not http's or shuttle's few
#: levels), from both shared tabular folders.
BASE_SETS = (
    "adbench/23_mammography",
    "adbench/6_cardio",
    "adbench/28_pendigits",
    "adbench/38_thyroid",
    "adbench/31_satimage-2",
    "adbench/2_annthyroid",
    "adbench-small/43_WDBC",
    "adbench-small/37_Stamps",
)
VARIANTS = ("binary", "levels", "counts")


def _quantile_codes(column: np.ndarray, n_bins: int) -> np.ndarray:
    """Codes 0 .. n_bins - 1 of each value's quantile bin (ties share a bin)."""
    edges = np.unique(np.quantile(column, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.searchsorted(edges, column, side="right").astype(np.float64)


def binary(features: np.ndarray) -> np.ndarray:
    median = np.median(features, axis=0)
    return (features > median).astype(np.float64)


def levels(features: np.ndarray) -> np.ndarray:
    return np.column_stack([_quantile_codes(col, 17) for col in features.T])


def counts(features: np.ndarray) -> np.ndarray:
    out = np.zeros_like(features)
    for j, col in enumerate(features.T):
        cut = np.quantile(col, 0.7)
        above = col > cut
        if above.sum() > 1:
            out[above, j] = 1.0 + _quantile_codes(col[above], 8)
    return out


def wide(features: np.ndarray) -> np.ndarray:
    cuts = np.quantile(features, np.linspace(0.1, 0.9, 9), axis=0)  # (9, columns)
    flags = features[None, :, :] > cuts[:, None, :]  # (9, rows, columns)
    return flags.transpose(1, 2, 0).reshape(len(features), -1).astype(np.float64)


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "binary": binary,
    "levels": levels,
    "counts": counts,
    "wide": wide,
}


def derive(frame: pd.DataFrame, variant: str) -> pd.DataFrame:
    """``frame`` (``x0..xN`` and ``label``) with its features transformed by ``variant``.

    Columns that the transform makes constant are left out, as a user would drop them.
    """
    features = frame.drop(columns="label").to_numpy(np.float64)
    out = TRANSFORMS[variant](features)
    out = out[:, np.ptp(out, axis=0) > 0]
    derived = pd.DataFrame(out, columns=[f"x{j}" for j in range(out.shape[1])])
    derived["label"] = frame["label"].to_numpy()
    return derived


def wide_set(datasets: Path, rows: int = 1400, seed: int = 0) -> pd.DataFrame:
    """musk binarised at nine percentiles (1,494 two-valued columns), ``rows`` rows drawn
    stratified: the shape of the wide set the project fitted slowly (1,376 x 1,555)."""
    frame = pd.read_parquet(datasets / "adbench-small" / "25_musk.parquet")
    derived = derive(frame, "wide")
    rng = np.random.default_rng(seed)
    share = rows / len(derived)
    keep = np.concatenate(
        [
            rng.choice(idx, max(1, round(len(idx) * share)), replace=False)
            for idx in (np.flatnonzero(derived["label"] == v) for v in (0, 1))
        ]
    )
    return derived.iloc[np.sort(keep)].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, help="the shared datasets folder")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for base in BASE_SETS:
        frame = pd.read_parquet(args.datasets / f"{base}.parquet")
        name = base.split("/")[1]
        for variant in VARIANTS:
            derived = derive(frame, variant)
            derived.to_parquet(args.out / f"{name}_{variant}.parquet", index=False)
            print(f"{name}_{variant}: {derived.shape[0]} rows x {derived.shape[1] - 1}")


if __name__ == "__main__":
    main()

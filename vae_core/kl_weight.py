"""The KL term's weight in the anomaly score, fitted on the reference rows.

Training minimises ``recon + beta * kl``; scored with that same weight, the KL part is
a small share of a row's score: summed over every column, the reconstruction terms
spread several times as widely over normal rows as the KL of a handful of latent
dimensions does (2-6x on the ADBench sets, up to 32x on data of few levels). The KL says
how far a row's latent code lies from where normal rows' lie, and that is the evidence
that ranks anomalies a reconstruction finds easy: rows along the data's main correlation
but far out on it (the shared cardio set 0.882 -> 0.927 ROC AUC, its binary variant 0.687
-> 0.740).

The fitted weight is ``beta * clip(IQR(recon) / IQR(beta * kl), 1, MAX_SPREAD_RATIO) **
EXPONENT`` on the reference rows' parts: between the training loss's weight (exponent 0)
and one that gives both parts the same spread (exponent 1). It is never below ``beta``,
and bounded where the KL hardly varies (a collapsed posterior would otherwise make its
noise the score). The choice of the exponent, on the mean over the four quality
benchmarks, is in ``benchmarks/README.md``.
"""

from __future__ import annotations

import numpy as np

#: Power of the spread ratio in the weight. Of 0, 0.25, 0.5, 0.75 and 1, 0.75 had the best
#: mean AP over the four quality benchmarks and kept each one's ROC AUC and AP at or above
#: the loss's weight; 1 gained 0.001 mean ROC AUC more and cost two benchmarks AP or AUC.
EXPONENT = 0.75
#: Largest spread ratio the weight follows (the benchmarks' went up to about 32).
MAX_SPREAD_RATIO = 32.0


def fitted_kl_weight(recon: np.ndarray, kl: np.ndarray, beta: float) -> float:
    """The KL's weight in the score, from the reference rows' reconstruction terms and KL.

    ``beta`` when either part has no spread (too few or identical rows).
    """
    recon_spread = _iqr(recon)
    kl_spread = _iqr(beta * kl)
    if not (recon_spread > 0 and kl_spread > 0):
        return float(beta)
    ratio = min(max(recon_spread / kl_spread, 1.0), MAX_SPREAD_RATIO)
    return float(beta * ratio**EXPONENT)


def _iqr(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return 0.0
    q1, q3 = np.quantile(finite, [0.25, 0.75])
    return float(q3 - q1)

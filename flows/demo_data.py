"""A deterministic, realistic demo dataset: card payments with a few kinds of injected fraud.

Normal rows come from a three-dimensional latent "customer" factor plus noise, so the
columns are correlated the way real payments are:

- ``spend`` drives the amount, the fee, the number of items, the 30-day average amount,
  and which merchant categories are likely (travel and electronics for high spenders,
  groceries and fuel for low ones);
- ``tenure`` drives the account age and the 30-day transaction count;
- ``remoteness`` drives the distance from home and the channel (point-of-sale terminals
  near home, web and app payments further away), which in turn fixes ``card_present``, the
  fee schedule, and whether there is an online session at all.

Missing values are realistic: no session length for in-store payments, no geolocation for
some rows, an occasional missing merchant category.

Anomalies (``anomaly_fraction`` of both the training and the scoring rows, because training
data in production is never clean) come in three kinds:

- ``broken_correlation``: the fee is 5-10 times what the amount and channel imply, though
  the value on its own is ordinary;
- ``extreme_value``: one of distance, session length, item count or 30-day count is 20-50
  times its usual value;
- ``inconsistent_category``: an online payment relabelled as a card-present, in-store one,
  so channel and ``card_present`` contradict the session, the distance and the fee schedule.

The labels are returned separately from the data: a detector never sees them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ANOMALY_KINDS = ("broken_correlation", "extreme_value", "inconsistent_category")
KEY_COLUMNS = ("payment_id",)
TIMESTAMP_COLUMN = "created_at"
CHANNELS = ("pos_terminal", "web", "mobile_app")
MERCHANT_CATEGORIES = ("grocery", "fuel", "restaurants", "fashion", "electronics", "travel")
#: Card-network style fee schedule per channel: (rate of amount, fixed part).
FEE_SCHEDULE = {"pos_terminal": (0.019, 0.10), "web": (0.029, 0.30), "mobile_app": (0.025, 0.25)}
_START = pd.Timestamp("2024-03-01", tz="UTC")
_EXTREME_COLUMNS = ("distance_km", "session_seconds", "items", "txn_count_30d")


@dataclass(frozen=True)
class DemoData:
    """Demo frames and the ground truth the detector is not allowed to see."""

    train: pd.DataFrame
    score: pd.DataFrame
    score_labels: pd.Series  # 1 = injected anomaly, aligned with ``score``
    score_kinds: pd.Series  # anomaly kind, "" for normal rows
    train_labels: pd.Series


def _choose(rng: np.random.Generator, logits: np.ndarray, levels: tuple[str, ...]) -> np.ndarray:
    """Sample one level per row from softmax(logits), via the Gumbel-max trick."""
    gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, size=logits.shape)))
    return np.asarray(levels, dtype=object)[np.argmax(logits + gumbel, axis=1)]


def _channels(rng: np.random.Generator, spend: np.ndarray, remote: np.ndarray) -> np.ndarray:
    logits = np.stack([0.3 - 1.8 * remote, 0.4 * spend, 1.2 * remote], axis=1)
    return _choose(rng, logits, CHANNELS)


def _merchant_categories(rng: np.random.Generator, spend: np.ndarray) -> np.ndarray:
    slopes = np.array([-1.2, -0.8, 0.0, 0.4, 1.0, 1.5])
    offsets = np.array([0.5, 0.0, 0.2, 0.0, -0.3, -1.0])
    return _choose(rng, offsets + spend[:, None] * slopes, MERCHANT_CATEGORIES)


def _fees(rng: np.random.Generator, amount: np.ndarray, channel: np.ndarray) -> np.ndarray:
    rate = np.array([FEE_SCHEDULE[c][0] for c in channel])
    fixed = np.array([FEE_SCHEDULE[c][1] for c in channel])
    return np.round(rate * amount + fixed + rng.normal(0.0, 0.02, len(amount)), 2)


def _normal_payments(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Rows of ordinary payments, ordered in time, with realistic missing values."""
    spend, tenure, remote = rng.standard_normal((3, n))
    noise = rng.standard_normal((6, n))
    channel = _channels(rng, spend, remote)
    category = _merchant_categories(rng, spend)
    category_lift = pd.Series(category).map({"travel": 0.6, "grocery": -0.2}).fillna(0.0)
    amount = np.round(np.exp(3.2 + 0.9 * spend + category_lift.to_numpy() + 0.25 * noise[0]), 2)
    card_present = channel == "pos_terminal"
    card_present ^= rng.uniform(size=n) < 0.01  # contactless wallets, manual entry
    session = np.exp(4.0 + 0.3 * spend - 0.3 * tenure + 0.3 * noise[1])
    distance = np.exp(0.5 + 1.0 * remote + 0.4 * noise[2])
    gaps = rng.exponential(30 * 24 * 3600 / max(n, 1), n)
    frame = pd.DataFrame(
        {
            TIMESTAMP_COLUMN: _START + pd.to_timedelta(np.cumsum(gaps).round(), unit="s"),
            "amount": amount,
            "fee": _fees(rng, amount, channel),
            "items": np.maximum(1, np.round(np.exp(0.3 + 0.5 * spend + 0.35 * noise[3]))),
            "avg_amount_30d": np.round(np.exp(3.3 + 0.9 * spend + 0.15 * noise[4]), 2),
            "txn_count_30d": rng.poisson(np.exp(1.8 + 0.6 * tenure)).astype(np.float64),
            "account_age_days": np.round(np.exp(5.5 + 0.8 * tenure + 0.3 * noise[5])),
            "distance_km": np.round(distance, 3),
            "session_seconds": np.where(card_present, np.nan, np.round(session, 1)),
            "channel": channel,
            "merchant_category": category,
            "card_present": card_present,
        }
    )
    frame.loc[rng.uniform(size=n) < 0.04, "distance_km"] = np.nan  # no geolocation
    frame.loc[rng.uniform(size=n) < 0.01, "merchant_category"] = None
    return frame


def _break_correlation(rng: np.random.Generator, frame: pd.DataFrame, rows: np.ndarray) -> None:
    # An overcharged fee: ordinary on its own, 5-10 times what amount and channel imply.
    factor = rng.uniform(5, 10, len(rows))
    frame.loc[rows, "fee"] = np.round(frame.loc[rows, "fee"].to_numpy() * factor, 2)


def _extreme_value(rng: np.random.Generator, frame: pd.DataFrame, rows: np.ndarray) -> None:
    for row in rows:
        observed = [c for c in _EXTREME_COLUMNS if pd.notna(frame.at[row, c])]
        column = observed[int(rng.integers(len(observed)))]
        frame.at[row, column] = np.round(frame.at[row, column] * rng.uniform(20, 50), 1)


def _inconsistent_category(rng: np.random.Generator, frame: pd.DataFrame, rows: np.ndarray) -> None:
    # Online payments relabelled as card-present, in-store ones: the channel and the card
    # flag now contradict the online session, the distance from home and the fee schedule.
    frame.loc[rows, "channel"] = "pos_terminal"
    frame.loc[rows, "card_present"] = True


def _inject(
    rng: np.random.Generator, frame: pd.DataFrame, fraction: float
) -> tuple[pd.Series, pd.Series]:
    """Turn ``fraction`` of the rows into anomalies in place; return labels and kinds."""
    n_anomalies = int(round(fraction * len(frame)))
    per_kind = np.array_split(np.arange(n_anomalies), len(ANOMALY_KINDS))
    online = np.flatnonzero(frame["channel"].to_numpy() != "pos_terminal")
    relabelled = rng.choice(online, size=min(len(per_kind[2]), len(online)), replace=False)
    others = np.setdiff1d(np.arange(len(frame)), relabelled)
    rest = rng.choice(others, size=len(per_kind[0]) + len(per_kind[1]), replace=False)
    groups = {
        "broken_correlation": np.sort(rest[: len(per_kind[0])]),
        "extreme_value": np.sort(rest[len(per_kind[0]) :]),
        "inconsistent_category": np.sort(relabelled),
    }
    kinds = pd.Series("", index=frame.index, dtype=object)
    _break_correlation(rng, frame, groups["broken_correlation"])
    _extreme_value(rng, frame, groups["extreme_value"])
    _inconsistent_category(rng, frame, groups["inconsistent_category"])
    for kind, selected in groups.items():
        kinds.iloc[selected] = kind
    labels = (kinds != "").astype(np.int8).rename("is_injected_anomaly")
    return labels, kinds.rename("anomaly_kind")


def _with_ids(frame: pd.DataFrame, first: int) -> pd.DataFrame:
    ids = [f"P{number:08d}" for number in range(first, first + len(frame))]
    return pd.concat([pd.DataFrame({KEY_COLUMNS[0]: ids}), frame], axis=1)


def make_demo_data(
    seed: int = 0, n_train: int = 5000, n_score: int = 2000, anomaly_fraction: float = 0.02
) -> DemoData:
    """Generate the training and scoring frames (scoring rows follow training in time)."""
    if n_train < 1 or n_score < 1:
        raise ValueError(f"n_train={n_train} and n_score={n_score} must be at least 1.")
    rng = np.random.default_rng(seed)
    everything = _normal_payments(rng, n_train + n_score)
    train = _with_ids(everything.iloc[:n_train].reset_index(drop=True), 1)
    score = _with_ids(everything.iloc[n_train:].reset_index(drop=True), n_train + 1)
    train_labels, _ = _inject(rng, train, anomaly_fraction)
    score_labels, score_kinds = _inject(rng, score, anomaly_fraction)
    return DemoData(train, score, score_labels, score_kinds, train_labels)


def make_demo_frames(
    seed: int = 0, n_train: int = 5000, n_score: int = 2000
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """``(train_df, score_df, score_labels)``: labels are 1 for injected anomalies."""
    data = make_demo_data(seed, n_train, n_score)
    return data.train, data.score, data.score_labels

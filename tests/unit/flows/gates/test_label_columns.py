"""The likely-label warning: names that hold the answer, two-valued columns named so."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flows.training_data import likely_label_columns


def test_label_names_are_found_whatever_their_case_or_values() -> None:
    frame = pd.DataFrame(
        {
            "Label": [0, 1, 0],
            "is_anomaly": [True, False, True],
            "target": [1.5, 2.5, 3.5],  # named like a label: warned even though not binary
            "y": ["a", "b", "c"],
            "amount": [1.0, 2.0, 3.0],
        }
    )
    assert likely_label_columns(frame) == ["Label", "is_anomaly", "target", "y"]


def test_two_valued_columns_with_a_label_word_are_found_others_are_not() -> None:
    n = 50
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "fraud_flag": rng.integers(0, 2, n),
            "outlier-score": rng.normal(size=n),  # a label word, but a score: not two-valued
            "anomaly_kind": rng.choice(["", "spike"], n),
            "card_present": rng.integers(0, 2, n).astype(bool),  # two-valued, no label word
            "classification_code": rng.integers(0, 2, n),  # 'class' is not a word of it
        }
    )
    assert likely_label_columns(frame) == ["fraud_flag", "anomaly_kind"]


def test_carried_columns_are_not_warned_about() -> None:
    frame = pd.DataFrame({"label": ["a", "b"], "target": [0, 1]})
    assert likely_label_columns(frame, carried=("label",)) == ["target"]

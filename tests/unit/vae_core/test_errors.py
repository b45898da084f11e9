"""The exception family, and every error path a user can reach, with actionable messages."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from torch import nn

import vae_core
from vae_core import VAEAnomalyDetector
from vae_core.errors import (
    ColumnTypeError,
    EmptyInputError,
    InputError,
    ModelFileError,
    NonFiniteLossError,
    NotFittedError,
    SchemaError,
    TooFewRowsError,
    VAEAnomalyError,
)
from vae_core.features import ConstantColumnWarning
from vae_core.losses import Batch
from vae_core.persistence import MANIFEST_NAME, WEIGHTS_NAME
from vae_core.training import TrainingConfig, fit

# -- the family --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (InputError, ValueError),
        (EmptyInputError, ValueError),
        (TooFewRowsError, ValueError),
        (SchemaError, ValueError),
        (ColumnTypeError, ValueError),
        (NonFiniteLossError, RuntimeError),
        (ModelFileError, OSError),
        (NotFittedError, SklearnNotFittedError),
    ],
)
def test_every_error_is_in_the_family_and_a_natural_builtin(error, builtin):
    assert issubclass(error, VAEAnomalyError)
    assert issubclass(error, builtin)
    assert getattr(vae_core, error.__name__) is error


def test_specialisations():
    assert issubclass(EmptyInputError, InputError)
    assert issubclass(TooFewRowsError, InputError)
    assert issubclass(ColumnTypeError, SchemaError)
    assert issubclass(NotFittedError, AttributeError)  # via scikit-learn's NotFittedError


# -- fit -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "empty",
    [pd.DataFrame(), pd.DataFrame({"a": pd.Series([], dtype=float)}), np.zeros((0, 3))],
    ids=["no-columns", "no-rows", "empty-array"],
)
def test_empty_input(empty):
    with pytest.raises(EmptyInputError, match="0 rows"):
        VAEAnomalyDetector().fit(empty)


def test_too_few_rows():
    frame = pd.DataFrame({"a": np.arange(5.0), "b": np.arange(5.0) ** 2})
    with pytest.raises(TooFewRowsError) as info:
        VAEAnomalyDetector().fit(frame)
    assert "5 rows" in str(info.value)


def test_only_keys_and_datetimes(small_frame):
    with pytest.raises(EmptyInputError) as info:
        VAEAnomalyDetector(key_columns=("id",)).fit(small_frame[["id", "ts"]])
    assert "ts" in str(info.value)


def test_all_columns_constant():
    frame = pd.DataFrame({"level": np.full(50, 3.5), "site": ["A"] * 50, "gone": [None] * 50})
    with pytest.warns(ConstantColumnWarning, match="level"):
        with pytest.raises(EmptyInputError) as info:
            VAEAnomalyDetector().fit(frame)
    message = str(info.value)
    assert "level" in message and "site" in message and "gone" in message


def test_missing_key_column(small_frame):
    with pytest.raises(SchemaError, match="customer_id"):
        VAEAnomalyDetector(key_columns=("customer_id",)).fit(small_frame)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"threshold_method": "median"}, "threshold_method"),
        ({"contamination": 0.7}, "contamination"),
        ({"contamination": 0.0}, "contamination"),
        ({"target_fpr": -0.1}, "target_fpr"),
        ({"pot_risk": 0.5}, "pot_risk"),
        ({"validation_fraction": 0.0}, "validation_fraction"),
        ({"trim_fraction": 0.5}, "trim_fraction"),
        ({"trim_fraction": -0.1}, "trim_fraction"),
        ({"n_models": 0}, "n_models"),
        ({"numeric_dof": 0.0}, "numeric_dof"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"hidden_sizes": (16, 0)}, "hidden_sizes"),
        ({"batch_size": 1}, "batch_size"),
        ({"max_epochs": 0}, "max_epochs"),
    ],
)
def test_invalid_params(params, named, array_data):
    detector = VAEAnomalyDetector(**params)
    with pytest.raises(ValueError) as info:
        detector.fit(array_data)
    assert named in str(info.value)
    assert not hasattr(detector, "threshold_")


def test_params_are_only_checked_at_fit():
    VAEAnomalyDetector(threshold_method="nonsense", contamination=3.0)  # stores, no error


# -- unfitted ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["decision_function", "predict", "score_frame", "score_samples"])
def test_unfitted_detector(method, array_data):
    with pytest.raises(NotFittedError, match="fit") as info:
        getattr(VAEAnomalyDetector(), method)(array_data)
    assert isinstance(info.value, SklearnNotFittedError)


def test_unfitted_detector_cannot_be_saved(tmp_path):
    with pytest.raises(SklearnNotFittedError):
        VAEAnomalyDetector().save(tmp_path / "model")
    assert not (tmp_path / "model").exists()


# -- scoring -------------------------------------------------------------------------------


def test_feature_column_missing_at_score_time(fitted_detector, mixed_data):
    frame, _ = mixed_data
    with pytest.raises(SchemaError) as info:
        fitted_detector.score_frame(frame.drop(columns=["sensor_3"]), source="2024-06-01.parquet")
    assert "sensor_3" in str(info.value)
    assert "2024-06-01.parquet" in str(info.value)


def test_text_in_a_numeric_column_at_score_time(fitted_detector, mixed_data):
    frame, _ = mixed_data
    bad = frame.iloc[:10].copy()
    bad["sensor_4"] = bad["sensor_4"].astype(object)
    bad.loc[bad.index[6], "sensor_4"] = "ERR#42"
    with pytest.raises(ColumnTypeError) as info:
        fitted_detector.decision_function(bad)
    message = str(info.value)
    assert "sensor_4" in message
    assert "ERR#42" in message
    assert "row 6" in message


def test_wrong_width_array_at_score_time(array_detector, array_data):
    for width in (4, 6):
        data = np.zeros((3, width))
        with pytest.raises(SchemaError) as info:
            array_detector.decision_function(data)
        assert f"{width} columns" in str(info.value)
        assert "5" in str(info.value)


def test_array_for_a_frame_model(fitted_detector):
    with pytest.raises(SchemaError, match="sensor_0"):
        fitted_detector.decision_function(np.zeros((3, 9)))


def test_series_and_1d_input(array_detector):
    with pytest.raises(SchemaError, match="Series"):
        array_detector.decision_function(pd.Series(np.zeros(5)))
    with pytest.raises(SchemaError, match="2-D"):
        array_detector.decision_function(np.zeros(5))


# -- loading -------------------------------------------------------------------------------


def test_load_directory_without_manifest(tmp_path):
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "not-a-model" / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelFileError) as info:
        VAEAnomalyDetector.load(tmp_path / "not-a-model")
    assert MANIFEST_NAME in str(info.value)
    assert "not-a-model" in str(info.value)


def test_load_tampered_weights(array_detector, tmp_path):
    path = array_detector.save(tmp_path / "model")
    weights = path / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x10
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as info:
        VAEAnomalyDetector.load(path)
    assert "sha256" in str(info.value)
    assert WEIGHTS_NAME in str(info.value)


def test_load_other_format_version(array_detector, tmp_path):
    path = array_detector.save(tmp_path / "model")
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    manifest["format_version"] = 99
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="format_version 99"):
        VAEAnomalyDetector.load(path)


def test_save_onto_existing_path(array_detector, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        array_detector.save(tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "precious"


# -- training ------------------------------------------------------------------------------


def test_nan_loss_raises_non_finite_loss_error():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    n = 16
    data = Batch(
        inputs=torch.randn(n, 2),
        numeric=torch.randn(n, 1),
        numeric_mask=torch.ones(n, 1),
        categories=torch.zeros(n, 0, dtype=torch.long),
        missing=torch.zeros(n, 0),
    )
    calls = []

    def nan_loss(module: nn.Module, batch: Batch) -> torch.Tensor:
        calls.append(len(batch))
        return (module(batch.inputs) - batch.numeric).sum(dim=1) * float("nan")

    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(NonFiniteLossError) as info:
        fit(model, nan_loss, data, data, TrainingConfig(max_epochs=5, batch_size=4))
    message = str(info.value)
    assert "nan" in message
    assert "epoch 0" in message
    assert "learning rate" in message  # says what to try
    assert len(calls) == 1  # raised on the first batch, before any step
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_first_line_and_one_line_keep_what_a_one_line_error_needs():
    from vae_core.errors import first_line, one_line

    exc = OSError("could not read artifacts:\n  No such file: detector/model.json\n")
    assert first_line(exc) == "could not read artifacts:"
    assert one_line(exc) == "could not read artifacts: No such file: detector/model.json"
    assert one_line(ValueError("x" * 900), limit=50) == "x" * 47 + "..."
    assert first_line(KeyError()) == one_line(KeyError()) == "KeyError"

"""vae_core: a mixed-type variational-autoencoder anomaly detector with a scikit-learn API.

Pure library: no Prefect, no MLflow. The flows package wires it into jobs.
"""

from vae_core.detector import VAEAnomalyDetector
from vae_core.errors import (
    ColumnTypeError,
    EmptyInputError,
    InputError,
    ModelFileError,
    NonFiniteLossError,
    NotFittedError,
    OutputPathError,
    SchemaError,
    TooFewRowsError,
    VAEAnomalyError,
)
from vae_core.model_kinds import load_model
from vae_core.sensor import SensorVAEDetector

__version__ = "0.1.0"

__all__ = [
    "ColumnTypeError",
    "EmptyInputError",
    "InputError",
    "ModelFileError",
    "NonFiniteLossError",
    "NotFittedError",
    "OutputPathError",
    "SchemaError",
    "SensorVAEDetector",
    "TooFewRowsError",
    "VAEAnomalyDetector",
    "VAEAnomalyError",
    "__version__",
    "load_model",
]

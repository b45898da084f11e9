"""Logging a detector as an MLflow model and registering it as a new version.

The model is logged once per training run as a models-from-code pyfunc:

- code: ``flows/mlops/pyfunc_model.py`` (``VAEAnomalyPyfunc``) plus a copy of ``vae_core``
  (``code/vae_core`` in the model), so loading needs no checkout of this repository and
  no ``vae-anomaly`` package (it is not on any index);
- artifact ``detector``: the directory written by ``VAEAnomalyDetector.save`` (safetensors
  weights + JSON, sha256-checked, never unpickled);
- signature: the feature columns from the detector's schema (required), its key columns
  (optional, any type, passed through to the output) and the score columns;
- pip requirements: the running versions of the libraries ``vae_core`` imports (local
  labels such as ``+cpu`` dropped), so ``mlflow.pyfunc.load_model(...)`` works in any
  environment that installs them. ``vae-anomaly`` itself is not listed: it is on no
  package index, and the bundled ``code/vae_core`` makes it unnecessary. (Building an
  environment with ``mlflow models serve --env-manager virtualenv`` was not tried here:
  no network.)

Surprises of MLflow 3.17 handled here: ``Model.log(run_id=...)`` without an active run
files the LoggedModel under the Default experiment (so it is created explicitly); the
sqlite registry reports a missing alias as INVALID_PARAMETER_VALUE (so aliases are read
from the registered model); ``ModelVersion.version`` is an ``int`` (returned as ``str``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import mlflow
import mlflow.artifacts
import pandas as pd
from mlflow.models import Model, ModelSignature
from mlflow.types.schema import AnyType, ColSpec, DataType, Schema

import vae_core
from flows.mlops.registry import DETECTOR_ARTIFACT, set_version_tag
from flows.mlops.runs import client
from vae_core.schema import ColumnSpec
from vae_core.scoring import DEFAULT_TOP_K
from vae_core.streaming import Detector

MODEL_NAME_IN_RUN = "model"
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
#: Libraries the pyfunc imports (directly or through vae_core), pinned to running versions.
REQUIRED_DISTRIBUTIONS = (
    "torch",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "scipy",
    "safetensors",
    "tqdm",
    "pydantic",
    "mlflow",
)


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    model_uri: str  # models:/<name>/<version>
    run_id: str
    model_id: str | None = None  # MLflow 3 LoggedModel id (m-...)


def _column_type(spec: ColumnSpec) -> DataType | AnyType:
    """MLflow type of a feature column, chosen so that data typed like the training data
    passes MLflow's input check unchanged (it refuses int64 -> double, for instance)."""
    dtype = spec.dtype.lower()
    if spec.kind == "numeric":
        if dtype.startswith(("int", "uint")):
            return DataType.long
        return DataType.float if dtype == "float32" else DataType.double
    if dtype in ("bool", "boolean"):
        return DataType.boolean
    if dtype == "category":
        return AnyType()  # MLflow refuses pandas categoricals for string columns
    return DataType.string  # object, str, string


#: MLflow column types of the Arrow types score columns have.
_SCORE_TYPES = {"double": DataType.double, "bool": DataType.boolean}


def model_signature(detector: Detector) -> ModelSignature:
    """Inputs: key columns (optional unless the model needs them), required features;
    outputs: the carried key columns, then the score columns the detector declares."""
    schema = detector.schema_
    required = detector.required_columns()
    keys = [ColSpec(AnyType(), key, required=False) for key in schema.key_columns]
    keys = [key for key in keys if key.name not in required]
    keys += [ColSpec(AnyType(), name) for name in required]
    features = [ColSpec(_column_type(spec), spec.name) for spec in schema.columns]
    scores = [
        ColSpec(_SCORE_TYPES.get(str(field.type), DataType.string), field.name)
        for field in detector.output_schema(DEFAULT_TOP_K)
    ]
    return ModelSignature(inputs=Schema([*keys, *features]), outputs=Schema([*keys, *scores]))


def model_pip_requirements() -> list[str]:
    """``name==version`` of every library the pyfunc needs, as installed here.

    Local version labels are dropped (``torch 2.13.0+cpu`` -> ``torch==2.13.0``) so that
    the requirement can be installed from an index; ``vae_core`` itself ships as model code.
    """
    requirements = []
    for name in REQUIRED_DISTRIBUTIONS:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        requirements.append(f"{name}=={version.split('+', 1)[0]}")
    return requirements


def log_detector_model(
    run_id: str,
    detector: Detector,
    registered_name: str,
    input_example: pd.DataFrame | None = None,
) -> RegisteredVersion:
    """Log ``detector`` as the run's pyfunc model ``model`` and register a new version."""
    mlflow_client = client()
    run = mlflow_client.get_run(run_id)
    # MLflow 3 stores a model as a LoggedModel. Created implicitly without an active run it
    # lands in the Default experiment (and its artifacts under ./mlruns/0), so create it
    # here in the run's experiment and hand its id to Model.log. Model.log takes the run
    # id directly (pyfunc.log_model would need the thread-local active run); the remaining
    # keyword arguments go to mlflow.pyfunc.save_model.
    logged = mlflow_client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name=MODEL_NAME_IN_RUN,
        source_run_id=run_id,
        params=dict(run.data.params),
    )
    if input_example is not None:
        # Only the columns the signature names: anything else would be stored, then
        # dropped with a warning every time the example is validated.
        wanted = model_signature(detector).inputs.input_names()
        input_example = input_example[[c for c in wanted if c in input_example.columns]]
    with tempfile.TemporaryDirectory() as tmp:
        saved = detector.save(Path(tmp) / DETECTOR_ARTIFACT)
        info = Model.log(
            artifact_path=None,
            name=MODEL_NAME_IN_RUN,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            model_id=logged.model_id,
            registered_model_name=registered_name,
            python_model=str(PYFUNC_FILE),
            artifacts={DETECTOR_ARTIFACT: str(saved)},
            code_paths=[str(Path(vae_core.__file__).parent)],
            signature=model_signature(detector),
            input_example=input_example,
            pip_requirements=model_pip_requirements(),
            metadata={"vae_core_version": vae_core.__version__},
        )
    version = str(info.registered_model_version)
    threshold = detector.threshold_
    for key, value in {
        "threshold": threshold.value,
        "threshold_method": threshold.method,
        "expected_alert_rate": threshold.expected_alert_rate,
        "n_features": len(detector.schema_.columns),
        "vae_core_version": vae_core.__version__,
    }.items():
        set_version_tag(registered_name, version, key, value)
    return RegisteredVersion(
        registered_name,
        version,
        f"models:/{registered_name}/{version}",
        run_id,
        logged.model_id,
    )

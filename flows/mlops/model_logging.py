"""Logging a detector as an MLflow model and registering it as a new version.

The model is logged once per training run as a models-from-code pyfunc:

- code: ``flows/mlops/pyfunc_model.py`` (``VAEAnomalyPyfunc``) plus a copy of ``vae_core``
  (``code/vae_core`` in the model), so loading needs no checkout of this repository and
  no ``vae-anomaly`` package (it is not on any index);
- artifact ``detector``: the directory written by ``VAEAnomalyDetector.save`` (safetensors
  weights + JSON, sha256-checked, never unpickled);
- signature: the feature columns from the detector's schema (required; numeric ones typed
  ``Any``, because MLflow's own check refuses int64 where double was declared and float
  where long was: the pyfunc coerces them as the flow does), its key and timestamp columns
  (optional, any type, passed through to the output as in ``scores.parquet``) and the
  score columns;
- pip requirements: the running versions of the libraries ``vae_core`` imports (local
  labels such as ``+cpu`` dropped), after ``--extra-index-url`` of the CPU wheels of
  torch: ``pip install -r requirements.txt`` then takes ``torch==X`` from there (the CPU
  build, whose version ``X+cpu`` ranks above the plain ``X`` on PyPI, the CUDA build) on a
  machine without a GPU. ``vae-anomaly`` itself is not listed: it is on no package index,
  and the bundled ``code/vae_core`` makes it unnecessary;
- input example: the first rows, with non-finite values as nulls, so that
  ``serving_input_example.json`` is strict JSON;
- version tag ``files_sha256``: the digest of the detector folder's file list
  (``vae_core.model_files``), checked by ``flows.mlops.registry.load_detector``.

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
import numpy as np
import pandas as pd
from mlflow.models import Model, ModelSignature
from mlflow.types.schema import AnyType, ColSpec, DataType, Schema

import vae_core
from flows.mlops.registry import DETECTOR_ARTIFACT, FILES_DIGEST_TAG, set_version_tag
from flows.mlops.runs import client
from vae_core.model_files import file_list_digest
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
#: Where pip finds torch's CPU build: without it, ``torch==X`` from PyPI is the CUDA build.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    model_uri: str  # models:/<name>/<version>
    run_id: str
    model_id: str | None = None  # MLflow 3 LoggedModel id (m-...)


def _column_type(spec: ColumnSpec) -> DataType | AnyType:
    """MLflow type of a feature column, chosen so that MLflow's input check lets through
    what the flow scores: any numeric dtype in a numeric column, with nulls (it refuses
    int64 -> double and float -> long), coerced inside ``predict``."""
    dtype = spec.dtype.lower()
    if spec.kind == "numeric":
        return AnyType()
    if dtype in ("bool", "boolean"):
        return DataType.boolean
    if dtype == "category":
        return AnyType()  # MLflow refuses pandas categoricals for string columns
    return DataType.string  # object, str, string


#: MLflow column types of the Arrow types score columns have.
_SCORE_TYPES = {"double": DataType.double, "bool": DataType.boolean}


def model_signature(detector: Detector) -> ModelSignature:
    """Inputs: key and timestamp columns (optional unless the model needs them), required
    features; outputs: the carried columns, then the score columns the detector declares."""
    schema = detector.schema_
    required = detector.required_columns()
    carried = list(dict.fromkeys((*schema.key_columns, *schema.ignored_columns)))
    optional = [ColSpec(AnyType(), c, required=False) for c in carried if c not in required]
    needed = [ColSpec(AnyType(), name) for name in required]
    features = [ColSpec(_column_type(spec), spec.name) for spec in schema.columns]
    scores = [
        ColSpec(_SCORE_TYPES.get(str(field.type), DataType.string), field.name)
        for field in detector.output_schema(DEFAULT_TOP_K)
    ]
    outputs = [*optional, *needed]
    return ModelSignature(inputs=Schema([*outputs, *features]), outputs=Schema([*outputs, *scores]))


def model_pip_requirements() -> list[str]:
    """``name==version`` of every library the pyfunc needs, as installed here.

    Local version labels are dropped (``torch 2.13.0+cpu`` -> ``torch==2.13.0``) so that
    the requirement can be installed from an index; the first line adds the index of
    torch's CPU wheels (see the module docstring); ``vae_core`` itself ships as model code.
    """
    requirements = [f"--extra-index-url {TORCH_CPU_INDEX}"]
    for name in REQUIRED_DISTRIBUTIONS:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        requirements.append(f"{name}=={version.split('+', 1)[0]}")
    return requirements


def strict_json_example(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every missing or non-finite value as a null: MLflow writes the example
    as JSON, where it spelt them ``NaN`` (no value a strict parser accepts) or, for a
    missing timestamp, ``"NaT"`` (text, not a missing value)."""
    replaced = {}
    for name in frame.columns:
        column = frame[name]
        absent = column.isna().to_numpy(copy=True)
        if pd.api.types.is_float_dtype(column):
            absent |= ~np.isfinite(column.to_numpy(dtype="float64", na_value=np.nan))
        if absent.any():
            replaced[name] = column.astype(object).where(~absent, None)
    return frame.assign(**replaced) if replaced else frame


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
        input_example = strict_json_example(
            input_example[[c for c in wanted if c in input_example.columns]]
        )
    with tempfile.TemporaryDirectory() as tmp:
        saved = detector.save(Path(tmp) / DETECTOR_ARTIFACT)
        digest = file_list_digest(saved)
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
            metadata={"vae_core_version": vae_core.__version__, FILES_DIGEST_TAG: digest},
        )
    version = str(info.registered_model_version)
    threshold = detector.threshold_
    for key, value in {
        "threshold": threshold.value,
        "threshold_method": threshold.method,
        "expected_alert_rate": threshold.expected_alert_rate,
        "n_features": len(detector.schema_.columns),
        "vae_core_version": vae_core.__version__,
        FILES_DIGEST_TAG: digest,
    }.items():
        set_version_tag(registered_name, version, key, value)
    return RegisteredVersion(
        registered_name,
        version,
        f"models:/{registered_name}/{version}",
        run_id,
        logged.model_id,
    )

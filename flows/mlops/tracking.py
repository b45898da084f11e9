"""Everything the flows say to MLflow: runs, params, metrics, artifacts, the model, aliases.

This is the only module (with the pyfunc file ``flows/mlops/pyfunc_model.py``) that imports
MLflow. Every function takes the run id explicitly and talks through ``MlflowClient``:
MLflow's active run is thread-local and Prefect runs tasks in worker threads, so nothing
here starts, reads or ends the fluent "active run".

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

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.types.schema import AnyType, ColSpec, DataType, Schema
from mlflow.utils.time import get_current_time_millis
from mlflow.utils.validation import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

import vae_core
from vae_core.errors import InputError, ModelFileError
from vae_core.model_kinds import load_model
from vae_core.schema import ColumnSpec
from vae_core.scoring import DEFAULT_TOP_K
from vae_core.streaming import Detector
from vae_core.training import EpochRecord

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
CHAMPION = "champion"
MODEL_NAME_IN_RUN = "model"
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
DETECTOR_ARTIFACT = "detector"  # same name as flows.mlops.pyfunc_model.DETECTOR_ARTIFACT
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
#: While resolving a model, an unreachable HTTP registry fails after this many seconds.
RESOLVE_TIMEOUT_S = 10


class ModelResolutionError(InputError, LookupError):
    """A model reference names no model version, or the registry cannot be reached."""


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    model_uri: str  # models:/<name>/<version>
    run_id: str
    model_id: str | None = None  # MLflow 3 LoggedModel id (m-...)


@dataclass(frozen=True)
class ResolvedModel:
    uri: str  # always the pinned form models:/<name>/<version>
    name: str
    version: str
    run_id: str | None
    alias: str | None = None  # the alias it was resolved through, if any


# -- configuration and runs ---------------------------------------------------------------
def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative or absolute), else None."""
    if not uri.startswith("sqlite:"):
        return None
    path = uri.removeprefix("sqlite:").split("?", 1)[0]
    if not path.startswith("///"):
        return None
    path = path[3:]
    if path in ("", ":memory:"):
        return None
    return Path(path)


def configure_tracking(tracking_uri: str, registry_uri: str | None = None) -> None:
    """Point MLflow at ``tracking_uri`` (and ``registry_uri``, default: the same store).

    For a sqlite store the database's folder is created when missing, and experiments this
    module creates keep their artifacts in ``mlruns/`` beside the database file (for the
    default ``sqlite:///mlflow.db`` that is ``./mlruns``, MLflow's own default).
    """
    tracking_uri = tracking_uri or DEFAULT_TRACKING_URI
    for uri in (tracking_uri, registry_uri):
        db = sqlite_path(uri) if uri else None
        if db is not None:
            db.expanduser().absolute().parent.mkdir(parents=True, exist_ok=True)
    # A batch job's log is no place for tqdm bars of a few local files.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri or tracking_uri)


def _client() -> MlflowClient:
    return MlflowClient(mlflow.get_tracking_uri(), mlflow.get_registry_uri())


def _artifact_location(experiment: str) -> str | None:
    db = sqlite_path(mlflow.get_tracking_uri())
    if db is None:
        return None  # servers and other stores choose their own artifact root
    slug = re.sub(r"[^\w.-]+", "_", experiment).strip("_") or "experiment"
    return (db.expanduser().absolute().parent / "mlruns" / slug).as_uri()


def start_run(experiment: str, run_name: str, tags: Mapping[str, Any] | None = None) -> str:
    """Create a run in ``experiment`` (created if needed) and return its id."""
    client = _client()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        try:
            experiment_id = client.create_experiment(
                experiment, artifact_location=_artifact_location(experiment)
            )
        except MlflowException:  # created concurrently by another process
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise
            experiment_id = found.experiment_id
    run = client.create_run(
        experiment_id,
        run_name=run_name,
        tags={k: _truncate(v, MAX_TAG_VAL_LENGTH) for k, v in (tags or {}).items()},
    )
    return run.info.run_id


def end_run(run_id: str, status: str = "FINISHED") -> None:
    """Mark the run FINISHED, FAILED or KILLED."""
    _client().set_terminated(run_id, status=status)


@contextlib.contextmanager
def tracked_run(
    experiment: str, run_name: str, tags: Mapping[str, Any] | None = None
) -> Iterator[str]:
    """Start a run, yield its id, and end it FINISHED, or FAILED if the block raises."""
    run_id = start_run(experiment, run_name, tags)
    try:
        yield run_id
    except BaseException:
        end_run(run_id, "FAILED")
        raise
    end_run(run_id, "FINISHED")


def set_run_tags(run_id: str, tags: Mapping[str, Any]) -> None:
    items = [RunTag(k, _truncate(v, MAX_TAG_VAL_LENGTH)) for k, v in tags.items()]
    for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
        _client().log_batch(run_id, tags=chunk)


# -- params, metrics, artifacts ------------------------------------------------------------
def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; an empty dict stays a value (``"{}"``)."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _truncate(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def log_params(run_id: str, flat: Mapping[str, Any]) -> None:
    """Log params (nested dicts are flattened with dots; long values are truncated).

    MLflow refuses to change a logged param: log each key once per run.
    """
    params = [
        Param(key[:MAX_ENTITY_KEY_LENGTH], _truncate(value, MAX_PARAM_VAL_LENGTH))
        for key, value in flatten(flat).items()
    ]
    client = _client()
    for chunk in _chunks(params, MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=chunk)


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log numeric metrics in batches (booleans become 0/1; None values are skipped)."""
    now = get_current_time_millis()
    entries = [
        Metric(key, float(value), now, int(step or 0))
        for key, value in metrics.items()
        if value is not None
    ]
    client = _client()
    for chunk in _chunks(entries, MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=chunk)


def log_artifact(
    run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
) -> None:
    """Upload a file, or a directory's contents, under ``artifact_path`` of the run."""
    local = Path(local_path)
    if local.is_dir():
        _client().log_artifacts(run_id, str(local), artifact_path)
    else:
        _client().log_artifact(run_id, str(local), artifact_path)


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    _client().log_text(run_id, text, artifact_file)


def log_figure_png(run_id: str, png_bytes: bytes, artifact_file: str) -> None:
    """Store PNG bytes (e.g. from matplotlib's ``savefig``) as ``artifact_file``."""
    _log_bytes(run_id, png_bytes, artifact_file)


def _log_bytes(run_id: str, payload: bytes, artifact_file: str) -> None:
    directory, _, filename = artifact_file.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        path.write_bytes(payload)
        _client().log_artifact(run_id, str(path), directory or None)


def epoch_logger(run_id: str, n_models: int = 1) -> Callable[[EpochRecord], None]:
    """Callback for ``VAEAnomalyDetector.fit(epoch_callback=...)``.

    Logs ``train_loss`` and ``val_loss`` with ``step=epoch``. With an ensemble
    (``n_models > 1``) every member's curves are named ``member<k>/train_loss`` etc.; a
    record from a member beyond ``n_models`` is prefixed too, so curves never mix.
    """

    def log_epoch(record: EpochRecord) -> None:
        prefix = f"member{record.member}/" if n_models > 1 or record.member > 0 else ""
        log_metrics(
            run_id,
            {f"{prefix}train_loss": record.train_loss, f"{prefix}val_loss": record.val_loss},
            step=record.epoch,
        )

    return log_epoch


def get_run_metrics(run_id: str) -> dict[str, float]:
    """The latest value of every metric of the run."""
    return dict(_client().get_run(run_id).data.metrics)


# -- the model --------------------------------------------------------------------------
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
    client = _client()
    run = client.get_run(run_id)
    # MLflow 3 stores a model as a LoggedModel. Created implicitly without an active run it
    # lands in the Default experiment (and its artifacts under ./mlruns/0), so create it
    # here in the run's experiment and hand its id to Model.log. Model.log takes the run
    # id directly (pyfunc.log_model would need the thread-local active run); the remaining
    # keyword arguments go to mlflow.pyfunc.save_model.
    logged = client.create_logged_model(
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


# -- registry: aliases, tags, resolution ----------------------------------------------------
def _is_missing(exc: MlflowException) -> bool:
    return exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def get_alias_version(name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None when the model or the alias does not exist."""
    # Read the model's alias map rather than get_model_version_by_alias: the sqlite registry
    # reports a missing alias as INVALID_PARAMETER_VALUE, indistinguishable from bad input.
    try:
        model = _client().get_registered_model(name)
    except MlflowException as exc:
        if _is_missing(exc):
            return None
        raise
    version = model.aliases.get(alias)
    return None if version is None else str(version)


def set_alias(name: str, alias: str, version: str) -> None:
    """Point ``alias`` at ``version`` (moving it away from any other version)."""
    _client().set_registered_model_alias(name, alias, str(version))


def set_version_tag(name: str, version: str, key: str, value: Any) -> None:
    _client().set_model_version_tag(name, str(version), key, _truncate(value, MAX_TAG_VAL_LENGTH))


_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))$")


def parse_model_ref(model_ref: str) -> tuple[str, str | None, str | None]:
    """``(name, alias, version)`` of ``models:/n@alias``, ``models:/n/3`` or a bare ``n``."""
    ref = model_ref.strip()
    if not ref.startswith("models:/"):
        if not ref or "/" in ref or ":" in ref:
            raise ModelResolutionError(
                f"model reference {model_ref!r} is not understood; use models:/<name>@<alias>, "
                "models:/<name>/<version> or a registered model name (= @champion)."
            )
        return ref, CHAMPION, None
    match = _MODELS_URI.match(ref)
    if match is None:
        raise ModelResolutionError(
            f"model reference {model_ref!r} is not understood; use models:/<name>@<alias> or "
            "models:/<name>/<version>."
        )
    return match["name"], match["alias"], match["version"]


@contextlib.contextmanager
def _fail_fast_http() -> Iterator[None]:
    """No retries and a short timeout for HTTP registries, unless the user set their own."""
    wanted = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(RESOLVE_TIMEOUT_S),
    }
    added = [key for key in wanted if key not in os.environ]
    for key in added:
        os.environ[key] = wanted[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _where() -> str:
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    if registry == tracking:
        return f"the MLflow registry at {tracking}"
    return f"the MLflow registry at {registry} (tracking URI {tracking})"


def _absence(client: MlflowClient, name: str, alias: str | None) -> str | None:
    """Why ``name`` (``@alias``) does not exist, or None if it does or cannot be told."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        return f"no registered model named {name!r} exists" if _is_missing(exc) else None
    except Exception:  # noqa: BLE001 - unreachable: the caller reports the first error
        return None
    if alias is not None and alias in model.aliases:
        return None
    if not model.aliases:
        return f"model {name!r} has no aliases"
    listed = ", ".join(f"@{a} -> v{v}" for a, v in sorted(model.aliases.items()))
    return f"model {name!r} has {listed}"


def resolve_model(model_ref: str) -> ResolvedModel:
    """Pin ``model_ref`` to one registered version; fail fast with ``ModelResolutionError``."""
    name, alias, version = parse_model_ref(model_ref)
    wanted = f"alias @{alias}" if alias else f"version {version}"
    for uri in {mlflow.get_tracking_uri(), mlflow.get_registry_uri()}:
        db = sqlite_path(uri)
        if db is not None and not db.expanduser().is_file():
            raise ModelResolutionError(
                f"cannot resolve {model_ref!r} ({wanted} of model {name!r}): {_where()} does "
                f"not exist (no file {db.expanduser().absolute()}). Train a model first or set "
                "the tracking URI (MLFLOW_TRACKING_URI / tracking.tracking_uri)."
            )
    client = _client()
    with _fail_fast_http():
        try:
            if alias is not None:
                found = client.get_model_version_by_alias(name, alias)
            else:
                found = client.get_model_version(name, version)
        except MlflowException as exc:
            absence = _absence(client, name, alias)
            if absence is not None or _is_missing(exc):
                raise ModelResolutionError(
                    f"cannot resolve {model_ref!r}: {wanted} of model {name!r} not found in "
                    f"{_where()}; {absence or _first_line(exc)}. Train and promote a model, "
                    "or point at an existing alias or version."
                ) from exc
            state = "is unreachable" if _connection_failed(exc) else "failed"
            raise ModelResolutionError(
                f"cannot resolve {model_ref!r} ({wanted} of model {name!r}): {_where()} "
                f"{state}: {_first_line(exc)}"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - connection errors come in many types
            raise ModelResolutionError(
                f"cannot resolve {model_ref!r} ({wanted} of model {name!r}): {_where()} is "
                f"unreachable: {type(exc).__name__}: {_first_line(exc)}"
            ) from exc
    return ResolvedModel(
        uri=f"models:/{name}/{found.version}",
        name=name,
        version=str(found.version),
        run_id=found.run_id,
        alias=alias,
    )


#: What MLflow's HTTP client says when nothing answers (it wraps the error in its own).
_CONNECTION_FAILURES = (
    "Failed to establish a new connection",
    "Connection refused",
    "Max retries exceeded",
    "timed out",
    "Name or service not known",
    "Temporary failure in name resolution",
)


def _connection_failed(exc: BaseException) -> bool:
    return any(text in str(exc) for text in _CONNECTION_FAILURES)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def load_detector(resolved: ResolvedModel, device: str = "cpu") -> Detector:
    """Download the version's ``detector`` artifact and load it with ``vae_core``.

    The scoring flow uses the library directly (batched streaming, device choice); other
    programs use the pyfunc. Both read the same safetensors + JSON directory.
    """
    with tempfile.TemporaryDirectory() as tmp, _fail_fast_http():
        try:
            root = _client().get_model_version_download_uri(resolved.name, resolved.version)
            local = Path(tmp)
            mlmodel = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{root.rstrip('/')}/MLmodel", dst_path=str(local / "meta")
            )
            conf = Model.load(mlmodel).flavors.get("python_function", {})
            relative = conf.get("artifacts", {}).get(DETECTOR_ARTIFACT, {}).get("path")
            if relative is None:
                raise ModelResolutionError(
                    f"{resolved.uri} has no '{DETECTOR_ARTIFACT}' artifact: it was not logged "
                    "by flows.mlops.tracking.log_detector_model. Point at a vae-anomaly model."
                )
            detector_dir = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{root.rstrip('/')}/{relative}", dst_path=str(local / "model")
            )
        except ModelResolutionError:
            raise
        except Exception as exc:  # noqa: BLE001 - artifact stores raise many types
            raise ModelResolutionError(
                f"cannot download the model files of {resolved.uri} from {_where()}: "
                f"{_first_line(exc)}"
            ) from exc
        try:
            return load_model(detector_dir, device=device)
        except ModelFileError as exc:
            # The local path is a temporary download: name what the user asked for.
            local = str(Path(detector_dir))
            raise ModelFileError(
                f"model {resolved.uri} in {_where()}: " + str(exc).replace(local, DETECTOR_ARTIFACT)
            ) from exc

"""MLflow runs: where tracking goes, runs started and ended, params, metrics, artifacts.

Every function takes the run id explicitly and talks through ``MlflowClient``: MLflow's
active run is thread-local and Prefect runs tasks in worker threads, so nothing here starts,
reads or ends the fluent "active run".
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.time import get_current_time_millis
from mlflow.utils.validation import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

from vae_core.training import EpochRecord

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


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


def client() -> MlflowClient:
    return MlflowClient(mlflow.get_tracking_uri(), mlflow.get_registry_uri())


def _artifact_location(experiment: str) -> str | None:
    db = sqlite_path(mlflow.get_tracking_uri())
    if db is None:
        return None  # servers and other stores choose their own artifact root
    slug = re.sub(r"[^\w.-]+", "_", experiment).strip("_") or "experiment"
    return (db.expanduser().absolute().parent / "mlruns" / slug).as_uri()


def start_run(experiment: str, run_name: str, tags: Mapping[str, Any] | None = None) -> str:
    """Create a run in ``experiment`` (created if needed) and return its id."""
    mlflow_client = client()
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        try:
            experiment_id = mlflow_client.create_experiment(
                experiment, artifact_location=_artifact_location(experiment)
            )
        except MlflowException:  # created concurrently by another process
            found = mlflow_client.get_experiment_by_name(experiment)
            if found is None:
                raise
            experiment_id = found.experiment_id
    run = mlflow_client.create_run(
        experiment_id,
        run_name=run_name,
        tags={k: truncate(v, MAX_TAG_VAL_LENGTH) for k, v in (tags or {}).items()},
    )
    return run.info.run_id


def end_run(run_id: str, status: str = "FINISHED") -> None:
    """Mark the run FINISHED, FAILED or KILLED."""
    client().set_terminated(run_id, status=status)


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
    items = [RunTag(k, truncate(v, MAX_TAG_VAL_LENGTH)) for k, v in tags.items()]
    for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
        client().log_batch(run_id, tags=chunk)


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


def truncate(value: Any, limit: int) -> str:
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
        Param(key[:MAX_ENTITY_KEY_LENGTH], truncate(value, MAX_PARAM_VAL_LENGTH))
        for key, value in flatten(flat).items()
    ]
    mlflow_client = client()
    for chunk in _chunks(params, MAX_PARAMS_TAGS_PER_BATCH):
        mlflow_client.log_batch(run_id, params=chunk)


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log numeric metrics in batches (booleans become 0/1; None values are skipped)."""
    now = get_current_time_millis()
    entries = [
        Metric(key, float(value), now, int(step or 0))
        for key, value in metrics.items()
        if value is not None
    ]
    mlflow_client = client()
    for chunk in _chunks(entries, MAX_METRICS_PER_BATCH):
        mlflow_client.log_batch(run_id, metrics=chunk)


def log_artifact(
    run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
) -> None:
    """Upload a file, or a directory's contents, under ``artifact_path`` of the run."""
    local = Path(local_path)
    if local.is_dir():
        client().log_artifacts(run_id, str(local), artifact_path)
    else:
        client().log_artifact(run_id, str(local), artifact_path)


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    client().log_text(run_id, text, artifact_file)


def log_figure_png(run_id: str, png_bytes: bytes, artifact_file: str) -> None:
    """Store PNG bytes (e.g. from matplotlib's ``savefig``) as ``artifact_file``."""
    _log_bytes(run_id, png_bytes, artifact_file)


def _log_bytes(run_id: str, payload: bytes, artifact_file: str) -> None:
    directory, _, filename = artifact_file.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        path.write_bytes(payload)
        client().log_artifact(run_id, str(path), directory or None)


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
    return dict(client().get_run(run_id).data.metrics)


def log_frame(run_id: str, frame: pd.DataFrame, artifact_file: str) -> None:
    """Store ``frame`` as a Parquet file ``artifact_file`` of the run."""
    directory, _, filename = artifact_file.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        frame.to_parquet(path, index=False)
        client().log_artifact(run_id, str(path), directory or None)


def load_frame(run_id: str, artifact_file: str) -> pd.DataFrame | None:
    """The Parquet artifact ``artifact_file`` of the run, or None when the run has none."""
    directory = artifact_file.rpartition("/")[0]
    listed = {item.path for item in client().list_artifacts(run_id, directory or None)}
    if artifact_file not in listed:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact_file, dst_path=tmp
        )
        return pd.read_parquet(local)

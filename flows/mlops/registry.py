"""The model registry: aliases, version tags, resolving a model reference, loading it.

A reference is ``models:/<name>@<alias>`` or ``models:/<name>/<version>``; it resolves to a
pinned version, whose ``detector`` artifact is downloaded and loaded with ``vae_core``.
Resolution fails fast and says why: the alias or version that is missing, the aliases that
exist, or the store that cannot be reached.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import (
    MAX_TAG_VAL_LENGTH,
)

from flows.mlops.runs import client, sqlite_path, truncate
from vae_core.errors import InputError, ModelFileError, one_line
from vae_core.model_files import verify_folder
from vae_core.model_kinds import load_model
from vae_core.streaming import Detector

CHAMPION = "champion"
DETECTOR_ARTIFACT = "detector"  # same name as flows.mlops.pyfunc_model.DETECTOR_ARTIFACT
#: Version tag with the digest of the detector folder's file list (vae_core.model_files).
FILES_DIGEST_TAG = "files_sha256"
#: While resolving a model, an unreachable HTTP registry fails after this many seconds.
RESOLVE_TIMEOUT_S = 10


class ModelResolutionError(InputError, LookupError):
    """A model reference names no model version, or the registry cannot be reached."""


@dataclass(frozen=True)
class ResolvedModel:
    uri: str  # always the pinned form models:/<name>/<version>
    name: str
    version: str
    run_id: str | None
    alias: str | None = None  # the alias it was resolved through, if any


def _is_missing(exc: MlflowException) -> bool:
    return exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def get_alias_version(name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None when the model or the alias does not exist."""
    # Read the model's alias map rather than get_model_version_by_alias: the sqlite registry
    # reports a missing alias as INVALID_PARAMETER_VALUE, indistinguishable from bad input.
    try:
        model = client().get_registered_model(name)
    except MlflowException as exc:
        if _is_missing(exc):
            return None
        raise
    version = model.aliases.get(alias)
    return None if version is None else str(version)


def set_alias(name: str, alias: str, version: str) -> None:
    """Point ``alias`` at ``version`` (moving it away from any other version)."""
    client().set_registered_model_alias(name, alias, str(version))


def set_version_tag(name: str, version: str, key: str, value: Any) -> None:
    client().set_model_version_tag(name, str(version), key, truncate(value, MAX_TAG_VAL_LENGTH))


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


def _absence(mlflow_client: MlflowClient, name: str, alias: str | None) -> str | None:
    """Why ``name`` (``@alias``) does not exist, or None if it does or cannot be told."""
    try:
        model = mlflow_client.get_registered_model(name)
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
    mlflow_client = client()
    with _fail_fast_http():
        try:
            if alias is not None:
                found = mlflow_client.get_model_version_by_alias(name, alias)
            else:
                found = mlflow_client.get_model_version(name, version)
        except MlflowException as exc:
            absence = _absence(mlflow_client, name, alias)
            if absence is not None or _is_missing(exc):
                raise ModelResolutionError(
                    f"cannot resolve {model_ref!r}: {wanted} of model {name!r} not found in "
                    f"{_where()}; {absence or one_line(exc)}. Train and promote a model, "
                    "or point at an existing alias or version."
                ) from exc
            state = "is unreachable" if _connection_failed(exc) else "failed"
            raise ModelResolutionError(
                f"cannot resolve {model_ref!r} ({wanted} of model {name!r}): {_where()} "
                f"{state}: {one_line(exc)}"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - connection errors come in many types
            raise ModelResolutionError(
                f"cannot resolve {model_ref!r} ({wanted} of model {name!r}): {_where()} is "
                f"unreachable: {type(exc).__name__}: {one_line(exc)}"
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


def load_detector(resolved: ResolvedModel, device: str = "cpu") -> Detector:
    """Download the version's ``detector`` artifact and load it with ``vae_core``.

    The scoring flow uses the library directly (batched streaming, device choice); other
    programs use the pyfunc. Both read the same safetensors + JSON directory. The folder's
    file list must have the digest the version's ``files_sha256`` tag recorded when it was
    logged (versions logged before the tag existed are checked against their own list).
    """
    with tempfile.TemporaryDirectory() as tmp, _fail_fast_http():
        try:
            mlflow_client = client()
            tags = mlflow_client.get_model_version(resolved.name, resolved.version).tags
            root = mlflow_client.get_model_version_download_uri(resolved.name, resolved.version)
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
                f"{one_line(exc)}"
            ) from exc
        try:
            verify_folder(Path(detector_dir), expected_digest=tags.get(FILES_DIGEST_TAG))
            return load_model(detector_dir, device=device)
        except ModelFileError as exc:
            # The local path is a temporary download: name what the user asked for.
            download = str(Path(detector_dir))
            raise ModelFileError(
                f"model {resolved.uri} in {_where()}: "
                + str(exc).replace(download, DETECTOR_ARTIFACT)
            ) from exc

"""Everything the flows say to MLflow, in one namespace: ``from flows.mlops import tracking``.

The code lives in three modules, each small enough to read whole:

- ``flows.mlops.runs``: where tracking goes, runs, params, metrics, artifacts;
- ``flows.mlops.model_logging``: a detector logged as a models-from-code pyfunc and
  registered as a new version (signature, pip requirements, version tags);
- ``flows.mlops.registry``: aliases, version tags, resolving ``models:/`` references and
  loading the resolved version's detector.

These, with the pyfunc file ``flows/mlops/pyfunc_model.py``, are the only modules that
import MLflow.
"""

from flows.mlops.model_logging import (
    DETECTOR_ARTIFACT,
    MODEL_NAME_IN_RUN,
    PYFUNC_FILE,
    REQUIRED_DISTRIBUTIONS,
    RegisteredVersion,
    log_detector_model,
    model_pip_requirements,
    model_signature,
)
from flows.mlops.registry import (
    CHAMPION,
    RESOLVE_TIMEOUT_S,
    ModelResolutionError,
    ResolvedModel,
    get_alias_version,
    load_detector,
    parse_model_ref,
    resolve_model,
    set_alias,
    set_version_tag,
)
from flows.mlops.runs import (
    DEFAULT_TRACKING_URI,
    configure_tracking,
    end_run,
    epoch_logger,
    flatten,
    get_run_metrics,
    log_artifact,
    log_figure_png,
    log_metrics,
    log_params,
    log_text,
    set_run_tags,
    sqlite_path,
    start_run,
    tracked_run,
)

__all__ = [
    "CHAMPION",
    "DEFAULT_TRACKING_URI",
    "DETECTOR_ARTIFACT",
    "MODEL_NAME_IN_RUN",
    "PYFUNC_FILE",
    "REQUIRED_DISTRIBUTIONS",
    "RESOLVE_TIMEOUT_S",
    "ModelResolutionError",
    "RegisteredVersion",
    "ResolvedModel",
    "configure_tracking",
    "end_run",
    "epoch_logger",
    "flatten",
    "get_alias_version",
    "get_run_metrics",
    "load_detector",
    "log_artifact",
    "log_detector_model",
    "log_figure_png",
    "log_metrics",
    "log_params",
    "log_text",
    "model_pip_requirements",
    "model_signature",
    "parse_model_ref",
    "resolve_model",
    "set_alias",
    "set_run_tags",
    "set_version_tag",
    "sqlite_path",
    "start_run",
    "tracked_run",
]

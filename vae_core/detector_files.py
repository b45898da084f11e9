"""What a saved ``VAEAnomalyDetector`` holds besides its weights, and how it comes back.

``detector_manifest`` is the JSON manifest ``save`` writes beside the weights (parameters,
schema, preprocessing, architecture, threshold, training summary, library versions, the
model kind); ``saved_params`` and ``restore_fitted`` turn a manifest and the checked
weights back into a fitted detector. Nothing is unpickled.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np
import pandas as pd
import sklearn
import torch

from vae_core import persistence
from vae_core.errors import ModelFileError, first_line
from vae_core.features import Preprocessor
from vae_core.model import TabularVAE, VAEArchitecture
from vae_core.profile import DataProfile
from vae_core.schema import FeatureSchema
from vae_core.sizing import MAX_STEPS
from vae_core.threshold import Threshold

#: The training profile (``vae_core.profile``) beside the manifest; absent in older models.
PROFILE_NAME = "profile.json"


def detector_manifest(detector: Any) -> dict[str, Any]:
    """The manifest of a fitted detector, as JSON-ready data."""
    return {
        "params": _json_params(detector.get_params()),
        "random_state_": detector.random_state_,
        "schema": detector.schema_.to_dict(),
        "preprocessing": detector.preprocessor_.to_dict(),
        "architecture": detector.architecture_.to_dict(),
        "threshold": detector.threshold_.to_dict(),
        "kl_weight_": detector.kl_weight_,
        "training": [
            {
                "best_epoch": r.best_epoch,
                "best_val_loss": r.best_val_loss,
                "epochs_run": len(r.history),
                "stopped_early": r.stopped_early,
            }
            for r in detector.training_results_
        ],
        "versions": library_versions(),
        "kind": detector.kind,
    }


def saved_params(manifest: dict[str, Any]) -> dict[str, Any]:
    """The constructor parameters a manifest records, in the types the constructor takes."""
    params = manifest["params"]
    params["hidden_sizes"] = _tuple_or_auto(params["hidden_sizes"])
    params["key_columns"] = _tuple_or_auto(params["key_columns"])
    # Models saved before numeric_dof existed were scored, and thresholded, with the
    # Gaussian; keep scoring them that way.
    params.setdefault("numeric_dof", None)
    # Models saved before min_steps existed trained with a fixed 2,000-step budget.
    params.setdefault("min_steps", MAX_STEPS)
    # Models saved before kl_weight existed scored, and thresholded, with the training
    # loss's weight.
    params.setdefault("kl_weight", params["beta"])
    return params


def restore_fitted(
    detector: Any,
    manifest: dict[str, Any],
    states: list[dict[str, torch.Tensor]],
    device: torch.device,
) -> None:
    """Give an unfitted ``detector`` the fitted state a manifest and its weights record.

    The manifest was checked field by field (``vae_core.manifest_checks``); weights that do
    not fit its architecture are a ``ModelFileError`` that says so.
    """
    arch = VAEArchitecture.from_dict(manifest["architecture"])
    models = []
    for i, state in enumerate(states):
        model = TabularVAE(arch)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelFileError(
                f"model.json: field 'architecture' does not match the weights of member {i} "
                f"({first_line(exc)}). The file was edited or damaged: restore the model "
                "from its original copy or re-train."
            ) from exc
        models.append(model.to(device).eval())
    detector.schema_ = FeatureSchema.from_dict(manifest["schema"])
    detector.preprocessor_ = Preprocessor.from_dict(manifest["preprocessing"])
    detector.architecture_ = arch
    detector.models_ = models
    detector.training_results_ = []
    detector.random_state_ = manifest["random_state_"]
    detector.device_ = device
    detector.n_features_in_ = len(detector.schema_.columns)
    detector.feature_names_in_ = np.asarray(detector.schema_.feature_names, dtype=object)
    detector.threshold_ = Threshold.from_dict(manifest["threshold"])
    detector.kl_weight_ = float(manifest.get("kl_weight_", detector.beta))
    detector.manifest_ = manifest


def profile_files(detector: Any) -> dict[str, dict[str, Any]]:
    """The ``extra_json`` of ``persistence.save_model``: ``profile.json`` when there is one."""
    profile = getattr(detector, "training_profile_", None)
    return {} if profile is None else {PROFILE_NAME: profile.to_dict()}


def read_profile(path: str | os.PathLike[str]) -> DataProfile | None:
    """The training profile of the checked model folder ``path``; None for older models."""
    data = persistence.read_extra_json(path, PROFILE_NAME)
    if data is None:
        return None
    try:
        return DataProfile.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{os.path.join(path, PROFILE_NAME)}: {first_line(exc)}") from exc


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        if isinstance(value, tuple | list):
            value = list(value)
        out[key] = value
    return out


def _tuple_or_auto(value: Any) -> Any:
    return value if isinstance(value, str) else tuple(value)


def library_versions() -> dict[str, str]:
    from vae_core import __version__

    return {
        "vae_core": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
    }

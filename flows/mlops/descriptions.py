"""Descriptions of the registered model and of each version, for people browsing MLflow.

A version's description says what it models (features, keys), its threshold, the data it
was trained on (fingerprint, rows) and the promotion gate's decision; the registered
model's says what the model is and which version is champion. Plain Markdown, written
through ``MlflowClient``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flows.mlops.runs import client
from vae_core.streaming import Detector

#: MLflow stores descriptions of any length in sqlite; servers cap them near 5,000.
MAX_DESCRIPTION = 4000
MAX_FEATURES_LISTED = 40


def _features(detector: Detector) -> str:
    names = list(detector.schema_.feature_names)
    shown = ", ".join(f"`{n}`" for n in names[:MAX_FEATURES_LISTED])
    hidden = len(names) - MAX_FEATURES_LISTED
    more = f" and {hidden} more" if hidden > 0 else ""
    return f"{len(names)} features: {shown}{more}"


def version_description(
    detector: Detector,
    data: Mapping[str, Any],
    decision: str,
    compared_with: str | None,
) -> str:
    """The description of one version: ``data`` holds ``fingerprint`` and ``rows``."""
    threshold = detector.threshold_
    schema = detector.schema_
    keys = [*schema.key_columns, *schema.ignored_columns]
    lines = [
        f"vae-anomaly {detector.kind} detector.",
        "",
        f"- {_features(detector)}",
        f"- carried, not modelled: {', '.join(f'`{k}`' for k in keys) or 'none'}",
        f"- threshold: {threshold.value:.6g} ({threshold.method}, expected alert rate "
        f"{threshold.expected_alert_rate:.2%})",
        f"- training data: fingerprint `{data.get('fingerprint', '?')}`, "
        f"{data.get('rows', '?')} rows",
        f"- promotion gate (against {'v' + compared_with if compared_with else 'no champion'}):"
        f" {decision}",
    ]
    return _bounded("\n".join(lines))


def model_description(name: str, detector: Detector, champion_version: str) -> str:
    threshold = detector.threshold_
    return _bounded(
        f"Anomaly detector `{name}` ({detector.kind}, vae-anomaly). Load "
        f"`models:/{name}@champion` with `mlflow.pyfunc.load_model`: it returns one score row "
        "per input row (score, is_anomaly, top contributing features).\n\n"
        f"Champion: version {champion_version}, {_features(detector)}; threshold "
        f"{threshold.value:.6g} ({threshold.method})."
    )


def describe_version(name: str, version: str, text: str) -> None:
    client().update_model_version(name, str(version), description=text)


def describe_model(name: str, text: str) -> None:
    client().update_registered_model(name, description=text)


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 3] + "..."

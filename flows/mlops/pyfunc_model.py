"""The MLflow pyfunc that wraps a saved detector of any kind (models-from-code).

``flows.mlops.tracking.log_detector_model`` logs *this file* as the model's code; MLflow runs it
again wherever the model is loaded, so it must stay importable on its own: it imports
``mlflow``, ``pandas`` and ``vae_core`` only, never ``flows`` or Prefect. The detector
travels as the model artifact ``detector`` (safetensors weights + JSON manifest, checked
against their sha256 on load: nothing is unpickled), and ``vae_core`` travels with the
model as code (``code/vae_core``), so a fresh environment needs only the model's pip
requirements::

    import mlflow
    model = mlflow.pyfunc.load_model("models:/vae-anomaly@champion")
    scores = model.predict(frame)   # key columns, recon_error, kl, score, is_anomaly, ...
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd

from vae_core.model_kinds import load_model

#: Name of the model artifact that holds the saved detector directory.
DETECTOR_ARTIFACT = "detector"


class VAEAnomalyPyfunc(mlflow.pyfunc.PythonModel):
    """Scores a DataFrame with the detector: one output row per input row, same index."""

    def load_context(self, context: Any) -> None:
        # CPU keeps scores identical to the training process's CPU scores and needs no GPU
        # where the model is served.
        self.detector = load_model(context.artifacts[DETECTOR_ARTIFACT])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        scores = self.detector.score_frame(frame, source="model input")
        # Key columns lead the output; a kind whose scores carry them already adds none.
        keys = [
            c
            for c in self.detector.schema_.key_columns
            if c in frame.columns and c not in scores.columns
        ]
        if not keys:
            return scores
        return pd.concat([frame[keys], scores], axis=1)


mlflow.models.set_model(VAEAnomalyPyfunc())

"""The MLflow pyfunc that wraps a saved detector of any kind (models-from-code).

``flows.mlops.tracking.log_detector_model`` logs *this file* as the model's code; MLflow runs it
again wherever the model is loaded, so it must stay importable on its own: it imports
``mlflow``, ``numpy``, ``pandas`` and ``vae_core`` only, never ``flows`` or Prefect. The
detector travels as the model artifact ``detector`` (safetensors weights + JSON manifest,
every file checked against the folder's file list on load: nothing is unpickled), and
``vae_core`` travels with the model as code (``code/vae_core``), so a fresh environment needs
only the model's pip requirements::

    import mlflow
    model = mlflow.pyfunc.load_model("models:/vae-anomaly@champion")
    scores = model.predict(frame)   # key and time columns, recon_error, kl, score, ...

It scores like the scoring flow: a numeric column may arrive as any numeric dtype, with
nulls (an integer column that became float because of one null, a float column that came
as int64), or as text holding finite numbers; the rows are those of ``scores.parquet``:
the key and timestamp columns the model carries, then the score columns.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd

from vae_core.errors import ColumnTypeError
from vae_core.model_kinds import load_model
from vae_core.schema import FeatureSchema, is_numeric_dtype

#: Name of the model artifact that holds the saved detector directory.
DETECTOR_ARTIFACT = "detector"


def numeric_columns_as_numbers(
    frame: pd.DataFrame, schema: FeatureSchema, source: str
) -> pd.DataFrame:
    """Numeric feature columns as the flow reads them: numbers of any dtype as they are,
    nullable integers as floats with NaN, text parsed where every value present is a
    finite number; any other text is an error naming the column, the row and the value
    (the flow's ``numeric_errors=fail`` rule: a null is a missing value, 'nan' or 'inf'
    written as text is not a number)."""
    replaced: dict[str, Any] = {}
    for spec in schema.columns:
        if spec.kind != "numeric" or spec.name not in frame.columns:
            continue
        column = frame[spec.name]
        if is_numeric_dtype(column) and not isinstance(
            column.dtype, pd.api.extensions.ExtensionDtype
        ):
            continue
        if pd.api.types.is_bool_dtype(column):
            continue  # booleans read as 0/1, as in the flow
        numbers = pd.to_numeric(column, errors="coerce")
        values = numbers.to_numpy(dtype="float64", na_value=np.nan)
        bad = column.notna().to_numpy() & ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ColumnTypeError(
                f"{source}: column '{spec.name}' must be numeric but row {row} holds "
                f"{column.iloc[row]!r}, which is not a finite number. Write finite numbers, "
                "or a null for a missing value."
            )
        replaced[spec.name] = pd.Series(values, index=frame.index, name=spec.name)
    return frame.assign(**replaced) if replaced else frame


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
        schema = self.detector.schema_
        frame = numeric_columns_as_numbers(frame, schema, "model input")
        scores = self.detector.score_frame(frame, source="model input")
        # The key and timestamp columns lead, as in scores.parquet; a kind whose scores
        # carry them already adds none.
        carried = [
            c
            for c in dict.fromkeys((*schema.key_columns, *schema.ignored_columns))
            if c in frame.columns and c not in scores.columns
        ]
        if not carried:
            return scores
        return pd.concat([frame[carried], scores], axis=1)


mlflow.models.set_model(VAEAnomalyPyfunc())

"""What the model expected: the reconstruction of a few rows, in the data's own units.

A row is encoded, mapped to its posterior mean and decoded by every member of the model;
numeric columns are the decoded means (averaged over members) taken back through the
column's scaling (tail compression, robust centre and scale, log1p), categorical columns
the most probable level. Only for the tabular VAE; other kinds (and a failure) give
``None``: the report then shows values without a reconstruction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["reconstruct", "unscale"]


def _uncompress(z: np.ndarray, soft_clip: float) -> np.ndarray:
    """The inverse of ``vae_core.numeric_scaling.compress_tail``."""
    out = z.astype(np.float64, copy=True)
    far = np.abs(out) > soft_clip
    with np.errstate(over="ignore"):
        out[far] = np.sign(out[far]) * (soft_clip + np.expm1(np.abs(out[far]) - soft_clip))
    return out


def unscale(z: np.ndarray, columns: list[dict[str, Any]], soft_clip: float) -> np.ndarray:
    """Scaled numeric values (rows x columns) back in the columns' units; a flag modelled
    as a number (data of mostly flags) as the nearer of its two values, as a flag reads."""
    raw = _uncompress(z, soft_clip)
    for j, column in enumerate(columns):
        raw[:, j] = raw[:, j] * float(column["scale"]) + float(column["centre"])
        if column.get("log1p"):
            with np.errstate(over="ignore"):
                raw[:, j] = np.expm1(raw[:, j])
        if column.get("numeric_values") is not None:
            low, high = (float(v) for v in column["numeric_values"])
            raw[:, j] = np.where(np.abs(raw[:, j] - low) <= np.abs(raw[:, j] - high), low, high)
    return raw


def _decoded(detector: Any, frame: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    """Decoded numeric means and category probabilities, averaged over the members."""
    import torch

    encoded = detector.encode(frame, source="report")
    inputs = torch.as_tensor(encoded.inputs, dtype=torch.float32, device=detector.device_)
    widths = list(detector.preprocessor_.layout.category_widths)
    numeric, probabilities = None, None
    with torch.inference_mode():
        for model in detector.models_:
            model.eval()
            out = model(inputs, sample=False)
            means = out.numeric_mean.double().cpu().numpy()
            logits = torch.split(out.category_logits.double(), widths, dim=1)
            probs = [_level_probabilities(part).cpu().numpy() for part in logits]
            numeric = means if numeric is None else numeric + means
            probabilities = probs if probabilities is None else [
                a + b for a, b in zip(probabilities, probs, strict=True)
            ]  # fmt: skip
    members = len(detector.models_)
    return numeric / members, [p / members for p in probabilities or []]


def _level_probabilities(logits: Any) -> Any:
    """Probabilities of a column's levels; a Bernoulli flag's one logit is its second value's."""
    import torch

    if logits.shape[1] == 1:
        second = torch.sigmoid(logits)
        return torch.cat([1.0 - second, second], dim=1)
    return torch.softmax(logits, dim=1)


def _level(column: dict[str, Any], code: int) -> Any:
    values = column.get("numeric_values")
    if values is not None and code < len(values):
        return float(values[code])
    return str(column["levels"][code])


def reconstruct(detector: Any, frame: pd.DataFrame) -> pd.DataFrame | None:
    """The model's reconstruction of ``frame``'s feature columns, row for row."""
    if frame is None or frame.empty or not hasattr(detector, "preprocessor_"):
        return None
    if not hasattr(detector, "models_"):
        return None
    state = detector.preprocessor_.state
    try:
        numeric, probabilities = _decoded(detector, frame)
    except Exception:  # noqa: BLE001 - a reconstruction is a courtesy: the values still show
        return None
    result: dict[str, Any] = {}  # one frame at the end: a column at a time fragments it
    columns = state["numeric"]
    if columns:
        values = unscale(numeric, columns, float(state.get("soft_clip", math.inf)))
        for j, column in enumerate(columns):
            result[column["name"]] = values[:, j]
    for column, probs in zip(state["categorical"], probabilities, strict=True):
        result[column["name"]] = [_level(column, int(code)) for code in probs.argmax(axis=1)]
    for name, values in result.items():  # a boolean column is a 0/1 flag in the model
        if pd.api.types.is_bool_dtype(frame[name]):
            result[name] = np.asarray(values, dtype=object) == 1.0
    return pd.DataFrame(result, index=range(len(frame)))

"""The training profile as the report reads it: the JSON shape of ``vae_core.profile``.

The report accepts the profile object (anything with ``to_dict()``) or its dictionary, and
reads only the agreed fields, so a model saved before profiles existed (no profile) or a
profile with fewer fields still gives a report, with the figures it cannot compute left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["column_profile", "profile_columns", "profile_dict", "quantile", "training_n_rows"]


def profile_dict(profile: Any) -> dict[str, Any] | None:
    """The profile as its JSON dictionary, ``None`` when there is none or it is unreadable."""
    if profile is None:
        return None
    if hasattr(profile, "to_dict"):
        profile = profile.to_dict()
    if not isinstance(profile, Mapping) or not isinstance(profile.get("columns"), Mapping):
        return None
    return dict(profile)


def profile_columns(profile: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    if profile is None:
        return {}
    return {str(k): v for k, v in profile["columns"].items() if isinstance(v, Mapping)}


def column_profile(profile: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    return profile_columns(profile).get(name)


def training_n_rows(profile: Mapping[str, Any] | None) -> int | None:
    if profile is None:
        return None
    try:
        return int(profile.get("n_rows"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def quantile(column: Mapping[str, Any] | None, level: str) -> float | None:
    """The training quantile ``level`` (``"0.5"``) of a numeric column, if known and finite."""
    if column is None or not isinstance(column.get("quantiles"), Mapping):
        return None
    try:
        value = float(column["quantiles"][level])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None

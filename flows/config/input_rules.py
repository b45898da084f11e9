"""Settings of what scoring does with input that differs from what the model was trained on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

#: A feature column whose values are of another kind than in training (timestamps where
#: numbers were, 0/1 where booleans were, numbers where text was).
TypeDrift = Literal["warn", "refuse"]
TYPE_DRIFT = Field(
    "warn",
    description="A column of another type than in training: warn (a note per column, "
    "scored) or refuse (the run stops naming the column and both types).",
)

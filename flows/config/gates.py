"""Settings of the retraining gates: the data gate before fitting, the promotion gate after,
and the columns left out of training.

Each field is defined here and named by one line in ``flows.config.sections``
(``train.data_gate``, ``train.promotion_gate``, ``train.exclude_columns``). What each
check does is described in ``flows.gates.data_gate`` and ``flows.mlops.promotion``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from flows.config.base import _Frozen


class DataGateSettings(_Frozen):
    """Limits of the data gate: the new training data against sanity rules and, when a
    champion exists, against the champion's training profile. Any breach refuses the run."""

    enabled: bool = Field(True, description="Check the training data before fitting.")
    max_missing_share: float = Field(
        0.99,
        gt=0,
        le=1,
        description="A feature column missing in more than this share of rows is refused "
        "where the champion's was not (without a champion: noted, left out of the model).",
    )
    refuse_constant: bool = Field(
        True,
        description="Refuse a feature column with one value in every row that has one "
        "where the champion's was not (without a champion: noted, left out of the model).",
    )
    max_non_finite_share: float = Field(
        0.01, ge=0, le=1, description="Largest share of rows with +-inf in a numeric column."
    )
    max_abs_value: float = Field(
        1e30,
        gt=0,
        description="Magnitude above which a number counts as absurd (float32, which the "
        "model computes in, ends at 3.4e38).",
    )
    max_absurd_share: float = Field(
        0.01, ge=0, le=1, description="Largest share of rows with an absurd magnitude."
    )
    max_missing_increase: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Largest rise of a column's missing share over the champion's (absolute).",
    )
    median_range_factor: float = Field(
        1.0,
        ge=0,
        description="A numeric median must lie within the champion's 1-99% quantile range "
        "widened by this many times its width on each side.",
    )
    max_psi: float = Field(
        0.5,
        gt=0,
        description="Largest population stability index of a column against the champion's "
        "training distribution (0.1 moderate, 0.25 large shift).",
    )


class PromotionGateSettings(_Frozen):
    """The promotion gate's reference data and the label-free detection check."""

    reference_rows: int = Field(
        5000,
        ge=50,
        description="Holdout rows stored with each model run as the reference later "
        "challengers are judged on.",
    )
    synthetic_anomalies: int = Field(
        1000, ge=20, description="Synthetic anomalies injected into held-out reference rows."
    )
    auc_tolerance: float = Field(
        0.02,
        ge=0,
        le=1,
        description="The challenger's ROC AUC on the synthetic anomalies may be this much "
        "below the champion's.",
    )
    recall_tolerance: float = Field(
        0.1,
        ge=0,
        le=1,
        description="The challenger's share of synthetic anomalies above its threshold may "
        "be this much below the champion's.",
    )
    column_auc_tolerance: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Per column, the challenger's ROC AUC on values pushed out of range "
        "(far out, rare levels) may be this much below the champion's.",
    )
    seed: int = Field(0, description="Seed of the reference sample and the synthetic anomalies.")


#: The field types ``flows.config.sections`` names, defaults and descriptions included.
DataGate = Annotated[
    DataGateSettings, Field(DataGateSettings(), description="The data gate before fitting.")
]
PromotionGate = Annotated[
    PromotionGateSettings,
    Field(PromotionGateSettings(), description="The promotion gate's reference data and checks."),
]
ExcludeColumns = Annotated[
    list[str],
    Field([], description="Columns dropped from the training data before anything else."),
]

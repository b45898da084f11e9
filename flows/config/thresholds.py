"""The threshold settings: one model per ``vae_core.threshold`` rule, a discriminated union
on ``method``, and the flat detector keys they replaced (refused with the new form)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from flows.config.base import ConfigError, _Frozen
from vae_core.sensor import SENSOR_FENCE
from vae_core.threshold import (
    THRESHOLD_RULES,
    ConformalFDR,
    ContaminationRate,
    FalsePositiveRate,
    IQRFence,
    PeaksOverThreshold,
    ThresholdRule,
)


def _rule_field(rule: type[ThresholdRule], name: str, description: str) -> Any:
    """A field with the rule's own default and bounds, so they agree."""
    low, high = rule.bounds[name]
    if name in rule.closed_low:
        return Field(getattr(rule, name), ge=low, lt=high, description=description)
    return Field(getattr(rule, name), gt=low, lt=high, description=description)


class ThresholdRuleSettings(_Frozen):
    _rule: ClassVar[type[ThresholdRule]]

    def rule(self) -> ThresholdRule:
        """The ``vae_core.threshold`` rule these settings describe."""
        return self._rule(**self.model_dump(exclude={"method"}))


class IQRThreshold(ThresholdRuleSettings):
    """Tukey's fence Q3 + factor * (Q3 - Q1) of the reference scores: needs no anomaly rate."""

    _rule = IQRFence
    method: Literal["iqr"] = Field("iqr", description="Threshold rule: Tukey's IQR fence.")
    factor: float = _rule_field(IQRFence, "factor", "Multiple of the interquartile range.")
    min_alert_rate: float = _rule_field(
        IQRFence,
        "min_alert_rate",
        "Lower the fence to the reference scores' (1 - rate) quantile where it lies above "
        "it, so that it flags at least about this share of rows; 0: the plain fence.",
    )


class ContaminationThreshold(ThresholdRuleSettings):
    """Flag the expected share of anomalous rows (a quantile of the reference scores)."""

    _rule = ContaminationRate
    method: Literal["contamination"] = Field(
        "contamination", description="Threshold rule: an expected anomaly rate."
    )
    rate: float = _rule_field(ContaminationRate, "rate", "Share of rows flagged.")


class FPRThreshold(ThresholdRuleSettings):
    """Flag at most a share of rows that look like the reference data."""

    _rule = FalsePositiveRate
    method: Literal["fpr"] = Field("fpr", description="Threshold rule: a false-alarm rate.")
    rate: float = _rule_field(FalsePositiveRate, "rate", "Share of normal rows flagged.")


class POTThreshold(ThresholdRuleSettings):
    """Peaks over threshold: a generalised Pareto fit to the tail of the reference scores."""

    _rule = PeaksOverThreshold
    method: Literal["pot"] = Field("pot", description="Threshold rule: peaks over threshold.")
    risk: float = _rule_field(
        PeaksOverThreshold, "risk", "Probability that a normal row's score exceeds the threshold."
    )
    initial_quantile: float = _rule_field(
        PeaksOverThreshold, "initial_quantile", "Quantile of the scores where the tail fit starts."
    )


class ConformalThreshold(ThresholdRuleSettings):
    """Benjamini-Hochberg on conformal p-values: flags with a target false-discovery rate,
    and a ``p_value`` column in the scores."""

    _rule = ConformalFDR
    method: Literal["conformal"] = Field(
        "conformal", description="Threshold rule: conformal p-values, Benjamini-Hochberg."
    )
    fdr: float = _rule_field(
        ConformalFDR,
        "fdr",
        "Target false-discovery rate: expected share of normal rows among the flags.",
    )
    trim: bool = Field(
        ConformalFDR.trim,
        description="Calibrate on the reference scores up to the far-out fence only: more "
        "flags on contaminated data, no guarantee for normal rows beyond the fence.",
    )


ThresholdSettings = Annotated[
    IQRThreshold | ContaminationThreshold | FPRThreshold | POTThreshold | ConformalThreshold,
    Field(discriminator="method"),
]
#: The settings model of each rule, by method name.
THRESHOLD_SETTINGS: dict[str, type[ThresholdRuleSettings]] = {
    model._rule.method: model
    for model in (
        IQRThreshold,
        ContaminationThreshold,
        FPRThreshold,
        POTThreshold,
        ConformalThreshold,
    )
}
#: The flat detector parameters that ``threshold`` replaced (an error if used).
OLD_THRESHOLD_KEYS: tuple[str, ...] = (
    "threshold_method",
    *(flat for rule in THRESHOLD_RULES for flat in rule.estimator_names.values()),
)


def flat_threshold_params(threshold: ThresholdRuleSettings) -> dict[str, Any]:
    """Every flat threshold parameter of the detector: each rule's default, then the chosen
    rule's values, so the detector's parameters are complete whichever rule is chosen."""
    params: dict[str, Any] = {}
    for rule in THRESHOLD_RULES:
        params.update(rule().estimator_params())
    return {**params, **threshold.rule().estimator_params()}


def _new_threshold_form(old: dict[str, Any], default: ThresholdRule) -> str:
    """The ``threshold`` mapping that says what the old flat keys in ``old`` said."""
    model = THRESHOLD_SETTINGS.get(old.get("threshold_method", default.method))
    if model is None:
        model = THRESHOLD_SETTINGS[default.method]
    rule = model._rule
    fallback = default if isinstance(default, rule) else rule()
    values = {"method": rule.method}
    for name, flat in rule.estimator_names.items():
        values[name] = old.get(flat, getattr(fallback, name))
    return "{" + ", ".join(f"{key}: {value}" for key, value in values.items()) + "}"


def refuse_old_threshold_keys(tree: dict[str, Any], where: str) -> None:
    """The flat threshold keys (and ``train.sensor.iqr_factor``) are one ``threshold`` now:
    name each old key and show the new form, with the values the old keys gave."""
    train = tree.get("train") if isinstance(tree.get("train"), dict) else {}
    sections = {
        "train.detector": (train.get("detector"), OLD_THRESHOLD_KEYS, IQRFence()),
        "train.sensor": (
            train.get("sensor"),
            ("iqr_factor",),
            SENSOR_FENCE,
        ),
    }
    for path, (section, old_keys, default) in sections.items():
        if not isinstance(section, dict):
            continue
        found = [key for key in old_keys if key in section]
        if found:
            names = ", ".join(f"'{path}.{key}'" for key in found)
            form = _new_threshold_form(section, default)
            raise ConfigError(
                f"invalid configuration ({where}): {names} replaced by one setting: "
                f"write {path}.threshold: {form}"
            )

"""The data gate: is this training data fit to train a model that may replace the champion?

Run before fitting, on the rows the model would be trained on. Every feature column gets
the **sanity checks**, which need nothing to compare with; when a champion exists and has
a training profile (``vae_core.profile``), the column is also **compared with the
champion's training data**. Any finding refuses the run: a model fitted on broken data
would be judged by the promotion gate, but it should not be trained, registered and logged
as if it were fine.

Sanity checks (limits in ``train.data_gate``, ``flows.config.gates``):

- ``non_finite``: more than ``max_non_finite_share`` of the rows hold +-inf;
- ``absurd_magnitude``: more than ``max_absurd_share`` of the rows hold a number larger in
  magnitude than ``max_abs_value`` (1e300 is a unit bug, not a payment).

Against the champion's profile:

- ``missing``: the column went empty, more than ``max_missing_share`` of the rows null (an
  export that dropped it), where the champion's was not;
- ``constant``: the column went constant, one value in every row that has one
  (``refuse_constant``), where the champion's was not;
- ``absent``: a column the champion was trained on is not in the data;
- ``kind_changed``: numeric, categorical or boolean, but not what it was;
- ``missing_increase``: the missing share rose by more than ``max_missing_increase``;
- ``median_out_of_range``: the median of a numeric column lies outside the champion's 1-99%
  quantile range widened by ``median_range_factor`` times its width on each side;
- ``psi``: the population stability index against the champion's bins (numeric) or levels
  (categorical, boolean) exceeds ``max_psi``.

An empty or constant column with nothing to compare with (the first model of a name, or a
column new to this model) is a note in the report, not a refusal: the detector leaves it
out of the model and warns, as it always has.

Pure: the training flow logs the report (``to_dict``, ``to_markdown``) and raises
``DataGateError`` (an ``InputError``: exit code 2) with ``summary_line``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flows.config import TrainSettings
from flows.config.gates import DataGateSettings
from vae_core.errors import InputError
from vae_core.profile import ColumnProfile, DataProfile, psi
from vae_core.schema import infer_schema, is_numeric_dtype


class DataGateError(InputError):
    """The training data failed the data gate; the message names each column and figure."""


@dataclass(frozen=True)
class Finding:
    """One breached limit: which column, which check, the figure and the limit."""

    column: str
    check: str
    figure: Any
    limit: Any
    message: str


@dataclass(frozen=True)
class DataReport:
    """The data gate's verdict, with every column's figures (new and champion)."""

    n_rows: int
    compared_with: str | None
    findings: tuple[Finding, ...] = ()
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "n_rows": self.n_rows,
            "compared_with": self.compared_with,
            "findings": [asdict(f) for f in self.findings],
            "columns": self.columns,
            "notes": list(self.notes),
        }

    def summary_line(self, limit: int = 5) -> str:
        """One line: the verdict and the first ``limit`` findings."""
        against = (
            f"against the champion's training data ({self.compared_with})"
            if self.compared_with
            else "with the sanity checks (no champion profile to compare with)"
        )
        if self.passed:
            return f"data gate passed {against}: {self.n_rows} rows, {len(self.columns)} columns"
        shown = "; ".join(f.message for f in self.findings[:limit])
        more = f"; and {len(self.findings) - limit} more" if len(self.findings) > limit else ""
        return (
            f"data gate refused the training data {against}: {len(self.findings)} "
            f"finding(s): {shown}{more}. See the run's data_gate/report.md"
        )

    def to_markdown(self) -> str:
        lines = ["# Data gate", "", self.summary_line(limit=len(self.findings) or 1), ""]
        if self.findings:
            lines += ["## Findings", "", "| column | check | figure | limit |", "|---|---|---|---|"]
            lines += [
                f"| {f.column} | {f.check} | {_text(f.figure)} | {_text(f.limit)} |"
                for f in self.findings
            ]
            lines.append("")
        lines += ["## Columns", "", "| column | " + " | ".join(_FIGURES) + " |"]
        lines.append("|---|" + "---|" * len(_FIGURES))
        for name, figures in self.columns.items():
            row = " | ".join(_text(figures.get(key)) for key in _FIGURES)
            lines.append(f"| {name} | {row} |")
        lines += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"


_FIGURES = (
    "kind",
    "missing_share",
    "non_finite_share",
    "absurd_share",
    "median",
    "psi",
    "champion_kind",
    "champion_missing_share",
    "champion_q01",
    "champion_median",
    "champion_q99",
)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def feature_columns(frame: pd.DataFrame, cfg: TrainSettings) -> list[str]:
    """The columns the model of ``cfg`` would model: what the data gate checks.

    Tabular: every column but the keys and datetime columns (``infer_schema``'s rule).
    Sensor: the channels, given or every numeric column that is not a key.
    """
    if cfg.sensor is not None:
        if cfg.sensor.channels is not None:
            return list(cfg.sensor.channels)
        keys = {cfg.sensor.timestamp_column, *cfg.sensor.entity_columns}
        return [c for c in frame.columns if c not in keys and is_numeric_dtype(frame[c])]
    return infer_schema(frame, cfg.key_columns).feature_names


def check_training_data(
    frame: pd.DataFrame,
    feature_columns: Sequence[str],
    champion: DataProfile | None,
    limits: DataGateSettings,
    champion_label: str | None = None,
) -> DataReport:
    """The data gate's report on ``feature_columns`` of ``frame`` (see the module docstring).

    ``champion`` is the champion's training profile, None for the first model of a name
    (or a champion saved before profiles existed): then only the sanity checks apply.
    """
    present = [c for c in feature_columns if c in frame.columns]
    profile = DataProfile.from_frame(frame, present)
    findings: list[Finding] = []
    columns: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for name in present:
        old = champion.columns.get(name) if champion else None
        values = frame[name]
        figures, found = _check_column(name, values, profile.columns[name], old, limits)
        columns[name] = figures
        findings += found
        notes += _emptiness_notes(name, profile.columns[name], old, limits)
    if champion is not None:
        for name in champion.columns:
            if name not in frame.columns:
                findings.append(
                    Finding(name, "absent", "absent", "present", f"column '{name}': absent")
                )
        added = [c for c in present if c not in champion.columns]
        if added:
            notes.append(f"columns the champion was not trained on: {added}")
    elif champion_label:
        notes.append(f"the champion ({champion_label}) has no training profile")
    label = champion_label if champion is not None else None
    return DataReport(int(len(frame)), label, tuple(findings), columns, tuple(notes))


def _check_column(
    name: str,
    values: pd.Series,
    new: ColumnProfile,
    old: ColumnProfile | None,
    limits: DataGateSettings,
) -> tuple[dict[str, Any], list[Finding]]:
    figures: dict[str, Any] = {
        "kind": new.kind,
        "missing_share": new.missing_share,
        "non_finite_share": new.non_finite_share,
    }
    found: list[Finding] = []

    def breach(check: str, figure: Any, limit: Any, text: str) -> None:
        found.append(Finding(name, check, figure, limit, f"column '{name}': {text}"))

    if old is not None and _went_empty(new, old, limits):
        breach(
            "missing",
            new.missing_share,
            limits.max_missing_share,
            f"{new.missing_share:.1%} of rows missing (limit {limits.max_missing_share:.0%}; "
            f"champion's {old.missing_share:.1%})",
        )
    if old is not None and _went_constant(new, old, limits):
        breach("constant", 1, 2, "one value in every row (constant; the champion's was not)")
    if new.kind == "numeric":
        figures.update(_numeric_sanity(values, new, limits, breach))
    if old is None:
        return figures, found
    figures.update(_champion_figures(old))
    if new.kind != old.kind:
        breach("kind_changed", new.kind, old.kind, f"kind {new.kind}, was {old.kind}")
        return figures, found
    rise = new.missing_share - old.missing_share
    if rise > limits.max_missing_increase:
        breach(
            "missing_increase",
            new.missing_share,
            old.missing_share + limits.max_missing_increase,
            f"missing share {new.missing_share:.1%}, champion's {old.missing_share:.1%} "
            f"(limit +{limits.max_missing_increase:.0%})",
        )
    figures.update(_drift(values, new, old, limits, breach))
    return figures, found


def _went_empty(new: ColumnProfile, old: ColumnProfile | None, limits: DataGateSettings) -> bool:
    limit = limits.max_missing_share
    return new.missing_share > limit and not (old is not None and old.missing_share > limit)


def _went_constant(new: ColumnProfile, old: ColumnProfile | None, limits: DataGateSettings) -> bool:
    return (
        limits.refuse_constant
        and new.n_distinct == 1
        and not (old is not None and old.n_distinct <= 1)
    )


def _emptiness_notes(
    name: str, new: ColumnProfile, old: ColumnProfile | None, limits: DataGateSettings
) -> list[str]:
    """A column with nothing to learn and nothing to compare with (the first model of a
    name, or a column the champion did not have): the detector leaves it out and warns."""
    if old is not None:
        return []
    if _went_empty(new, None, limits):
        return [f"column '{name}': {new.missing_share:.1%} of rows missing; not modelled"]
    if _went_constant(new, None, limits):
        return [f"column '{name}': one value in every row; not modelled"]
    return []


def _numeric_sanity(values: pd.Series, new: ColumnProfile, limits, breach) -> dict[str, Any]:
    numbers = _floats(values)
    n_rows = max(len(numbers), 1)
    with np.errstate(invalid="ignore"):
        absurd = float(np.sum(np.isfinite(numbers) & (np.abs(numbers) > limits.max_abs_value)))
    absurd_share = absurd / n_rows
    if new.non_finite_share > limits.max_non_finite_share:
        breach(
            "non_finite",
            new.non_finite_share,
            limits.max_non_finite_share,
            f"{new.non_finite_share:.1%} of rows non-finite (+-inf; limit "
            f"{limits.max_non_finite_share:.1%})",
        )
    if absurd_share > limits.max_absurd_share:
        breach(
            "absurd_magnitude",
            absurd_share,
            limits.max_absurd_share,
            f"{absurd_share:.1%} of rows beyond +-{limits.max_abs_value:.3g} (limit "
            f"{limits.max_absurd_share:.1%})",
        )
    return {"absurd_share": absurd_share, "median": new.quantile(0.5)}


def _champion_figures(old: ColumnProfile) -> dict[str, Any]:
    return {
        "champion_kind": old.kind,
        "champion_missing_share": old.missing_share,
        "champion_q01": old.quantile(0.01),
        "champion_median": old.quantile(0.5),
        "champion_q99": old.quantile(0.99),
    }


def _drift(values: pd.Series, new: ColumnProfile, old: ColumnProfile, limits, breach) -> dict:
    if new.kind == "numeric":
        median, low, high = new.quantile(0.5), old.quantile(0.01), old.quantile(0.99)
        if median is not None and low is not None and high is not None:
            width = limits.median_range_factor * (high - low)
            if not low - width <= median <= high + width:
                breach(
                    "median_out_of_range",
                    median,
                    [low - width, high + width],
                    f"median {median:.4g} outside the champion's 1-99% range "
                    f"[{low:.4g}, {high:.4g}] widened by {limits.median_range_factor:g}x",
                )
        shares = old.shares_of(_floats(values))
        value = None if shares is None or not shares.any() else psi(old.bin_shares, shares)
    else:
        value = _level_psi(values, old)
    if value is not None and value > limits.max_psi:
        breach("psi", value, limits.max_psi, f"PSI {value:.3g} (limit {limits.max_psi:g})")
    return {"psi": value}


def _level_psi(values: pd.Series, old: ColumnProfile) -> float | None:
    """PSI over the champion's stored levels, one bucket for all others (never-seen too)."""
    if not old.levels:
        return None
    levels = list(old.levels)
    expected = np.array([old.levels[k] for k in levels] + [old.other_count or 0], dtype=float)
    counts = values.dropna().astype(str).value_counts()
    if counts.sum() == 0:
        return None
    known = np.array([counts.get(k, 0) for k in levels], dtype=float)
    actual = np.append(known, counts.sum() - known.sum())
    return psi(expected / expected.sum(), actual / actual.sum())


def _floats(values: pd.Series) -> np.ndarray:
    numbers = (
        values if pd.api.types.is_numeric_dtype(values) else pd.to_numeric(values, errors="coerce")
    )
    return pd.Series(numbers).astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)

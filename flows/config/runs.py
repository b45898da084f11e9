"""Settings of dated runs: the run date, the training lookback and how many runs are kept.

Each field is defined here and named by one line in ``flows.config.sections``. The values
stay as they are written in a config file (``lookback: 90d``), so settings dumped to JSON
for a deployment validate again unchanged.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo

#: ``<count><unit>``: days, weeks or hours.
_LOOKBACK = re.compile(r"^\s*(\d+)\s*([dwh])\s*$")
_UNITS = {"d": "days", "w": "weeks", "h": "hours"}


def lookback_delta(text: str) -> timedelta:
    """``90d``, ``12w`` or ``36h`` as a ``timedelta``; a ValueError says what is accepted."""
    match = _LOOKBACK.match(text)
    if match is None or int(match[1]) == 0:
        raise ValueError(
            f"{text!r} is not a lookback: write a positive whole number and a unit, "
            "d (days), w (weeks) or h (hours), e.g. 90d, 12w or 36h"
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def _check_lookback(value: str | None, info: ValidationInfo) -> str | None:
    """A valid lookback, and never together with the absolute window (which would win?)."""
    if value is None:
        return None
    lookback_delta(value)
    absolute = [
        key for key in ("time_window_start", "time_window_end") if info.data.get(key) is not None
    ]
    if absolute:
        raise ValueError(
            f"lookback={value!r} and {' and '.join(absolute)} are both set; use either the "
            "rolling window (lookback) or the absolute dates, not both"
        )
    return value


#: Declared after ``time_window_start/end``, so the check sees them.
LookbackText = Annotated[str | None, AfterValidator(_check_lookback)]

LOOKBACK: Any = Field(
    None,
    description="Train on a rolling window of this length ending at the start (00:00 UTC) "
    "of the run date: 90d, 12w or 36h; null: no rolling window. Needs timestamp_column; "
    "not together with time_window_start/end.",
)
TRAIN_RUN_DATE: Any = Field(
    None,
    description="Date of the run (YYYY-MM-DD) for lookback and path placeholders; null: "
    "the flow run's scheduled time, else today (UTC).",
)
SCORE_RUN_DATE: Any = Field(
    None,
    description="Date of the run (YYYY-MM-DD) for path placeholders and the run index; "
    "null: the flow run's scheduled time, else today (UTC).",
)
KEEP_RUNS: Any = Field(
    30,
    ge=1,
    description="Complete runs kept under output_dir/runs/; older ones are removed after "
    "each publish (never the one latest.json names).",
)

RunDate = date | None

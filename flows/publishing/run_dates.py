"""Run dates and the placeholders of dated paths, the run id and the rolling training window.

Every run has a run date: pinned in the settings (``--date`` on the command line), else
the flow run's scheduled time, else today, always in UTC. Input and output paths may name
it: ``{date}`` (``2024-03-31``), ``{date:%Y/%m/%d}`` (any strftime format), ``{yesterday}``
(the day before, same formats) and, in output paths only, ``{run_id}``. Any other
placeholder is a configuration error that names it, so a typo never reads or writes a
folder literally called ``{dat}``.
"""

from __future__ import annotations

import secrets
import string
from datetime import UTC, date, datetime, time, timedelta

from flows.config import ConfigError, ScoreSettings, TrainSettings
from flows.config.runs import lookback_delta

DATE_FIELDS = ("date", "yesterday")
_FORMATTER = string.Formatter()


def run_date(pinned: date | None, scheduled: datetime | None = None) -> date:
    """The run's date: ``pinned`` if set, else the UTC date of ``scheduled``, else today."""
    if pinned is not None:
        return pinned
    moment = scheduled if scheduled is not None else datetime.now(UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()


def new_run_id(now: datetime | None = None) -> str:
    """A fresh run id, ``<UTC start, to the second>-<6 hex>``: sorts by start, never clashes."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _known(output: bool) -> str:
    names = "{date}, {date:%Y/%m/%d} (any strftime format), {yesterday}"
    return names + (", {run_id}" if output else "")


def expand(template: str, key: str, day: date, run_id: str | None = None) -> str:
    """``template`` with its placeholders filled in; ``run_id`` None: an input path.

    Raises ``ConfigError`` naming ``key`` and the placeholder for one that is unknown (or
    ``{run_id}`` in an input path), a conversion such as ``{date!r}``, or a bad format.
    """
    values: dict[str, object] = {"date": day, "yesterday": day - timedelta(days=1)}
    if run_id is not None:
        values["run_id"] = run_id
    try:
        pieces = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ConfigError(
            f"{key}={template!r}: {exc}; write a literal brace as {{{{ or }}}}"
        ) from None
    out: list[str] = []
    for literal, name, spec, conversion in pieces:
        out.append(literal)
        if name is None:
            continue
        if conversion is not None:
            raise ConfigError(f"{key}={template!r}: {{{name}!{conversion}}} takes no conversion")
        if name == "run_id" and run_id is None:
            raise ConfigError(
                f"{key}={template!r}: {{run_id}} is only for output paths (an input is "
                "read before the run has an id)"
            )
        if name not in values:
            where = "an output path" if run_id is not None else "an input path"
            raise ConfigError(
                f"{key}={template!r}: unknown placeholder {{{name}}} in {where}; "
                f"known: {_known(run_id is not None)}"
            )
        out.append(_formatted(values[name], spec or "", name, key, template))
    return "".join(out)


def _formatted(value: object, spec: str, name: str, key: str, template: str) -> str:
    if isinstance(value, date) and not spec:
        return value.isoformat()
    if not isinstance(value, date) and spec:
        raise ConfigError(f"{key}={template!r}: {{{name}}} takes no format")
    text = format(value, spec)
    if not text or (text == spec and "%" not in spec):
        raise ConfigError(f"{key}={template!r}: {{{name}:{spec}}} is not a strftime format")
    return text


def day_start(day: date) -> datetime:
    """00:00 UTC of ``day``."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def lookback_window(day: date, lookback: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of a rolling window of ``lookback`` ending at 00:00 UTC of ``day``.

    The run date's own rows are not in it: a run scheduled in the morning would only see
    part of that day.
    """
    end = day_start(day)
    return end - lookback_delta(lookback), end


def dated_score(cfg: ScoreSettings, day: date, run_id: str) -> ScoreSettings:
    """The score settings of one run: paths expanded, ``run_date`` set."""
    return cfg.model_copy(
        update={
            "input_path": expand(cfg.input_path, "score.input_path", day),
            "output_dir": expand(cfg.output_dir, "score.output_dir", day, run_id),
            "run_date": day,
        }
    )


def dated_train(cfg: TrainSettings, day: date) -> TrainSettings:
    """The train settings of one run: paths expanded, the lookback as an absolute window."""
    update: dict[str, object] = {
        "data_path": expand(cfg.data_path, "train.data_path", day),
        "run_date": day,
    }
    if cfg.evaluation is not None:
        path = expand(cfg.evaluation.path, "train.evaluation.path", day)
        update["evaluation"] = cfg.evaluation.model_copy(update={"path": path})
    if cfg.lookback is not None:
        if not cfg.timestamp_column:
            raise ConfigError(
                f"train.lookback={cfg.lookback!r} needs train.timestamp_column, the column "
                "the window is measured on; set it or remove lookback"
            )
        start, end = lookback_window(day, cfg.lookback)
        update["time_window_start"], update["time_window_end"] = start, end
    return cfg.model_copy(update=update)

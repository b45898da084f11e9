"""Run dates, path placeholders, run ids and the rolling training window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from flows.config import ConfigError, load_settings
from flows.config.runs import lookback_delta
from flows.publishing.run_dates import (
    dated_score,
    dated_train,
    expand,
    lookback_window,
    new_run_id,
    run_date,
)

DAY = date(2026, 3, 1)


def settings(**sections: dict):
    return load_settings(files=[], environ={}, overrides=sections)


def test_the_run_date_is_pinned_else_scheduled_in_utc_else_today() -> None:
    assert run_date(date(2024, 1, 2), datetime(2025, 5, 5, tzinfo=UTC)) == date(2024, 1, 2)
    late_evening = datetime(2025, 5, 5, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert run_date(None, late_evening) == date(2025, 5, 6)  # 04:30 UTC the next day
    assert run_date(None) == datetime.now(UTC).date()


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("in/{date}.parquet", "in/2026-03-01.parquet"),
        ("in/{date:%Y/%m/%d}/", "in/2026/03/01/"),
        ("in/{yesterday}/{yesterday:%d}", "in/2026-02-28/28"),
        ("in/{date:%G-W%V}", "in/2026-W09"),
        ("in/day=*/x{{literal}}", "in/day=*/x{literal}"),
        ("in/plain.parquet", "in/plain.parquet"),
    ],
)
def test_placeholders_of_input_paths(template: str, expected: str) -> None:
    assert expand(template, "score.input_path", DAY) == expected


def test_run_id_only_in_output_paths() -> None:
    assert expand("out/{date}/{run_id}", "score.output_dir", DAY, "R1") == "out/2026-03-01/R1"
    with pytest.raises(ConfigError, match=r"score.input_path=.*\{run_id\} is only for output"):
        expand("in/{run_id}", "score.input_path", DAY)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("in/{day}.parquet", r"unknown placeholder \{day\} in an input path; known: \{date\}"),
        ("in/{}", r"unknown placeholder \{\}"),
        ("in/{date!r}", r"takes no conversion"),
        ("in/{date", r"expected '\}'"),
        ("in/{date:YYYY}", r"\{date:YYYY\} is not a strftime format"),
    ],
)
def test_a_bad_placeholder_is_a_config_error_naming_it(template: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        expand(template, "score.input_path", DAY)
    assert str(caught.value).startswith(f"score.input_path={template!r}")


def test_run_ids_sort_by_start_and_differ() -> None:
    first = new_run_id(datetime(2026, 1, 1, 5, 0, 0, tzinfo=UTC))
    second = new_run_id(datetime(2026, 1, 1, 5, 0, 1, tzinfo=UTC))
    assert first.startswith("20260101T050000Z-") and first < second
    assert len({new_run_id() for _ in range(50)}) == 50


@pytest.mark.parametrize(
    ("text", "delta"),
    [("90d", timedelta(days=90)), ("12w", timedelta(weeks=12)), (" 36h ", timedelta(hours=36))],
)
def test_lookback_units(text: str, delta: timedelta) -> None:
    assert lookback_delta(text) == delta


@pytest.mark.parametrize("text", ["90", "0d", "-3d", "1.5d", "3m", "d"])
def test_a_bad_lookback_is_refused_in_the_config(text: str) -> None:
    with pytest.raises(ConfigError, match=rf"key 'train.lookback' has value '{text}'"):
        settings(train={"lookback": text})


@pytest.mark.parametrize("absolute", ["time_window_start", "time_window_end"])
def test_lookback_and_absolute_window_together_are_refused(absolute: str) -> None:
    with pytest.raises(ConfigError, match=f"lookback='90d' and {absolute} are both set"):
        settings(train={"lookback": "90d", absolute: "2024-01-01"})


def test_the_rolling_window_ends_at_the_start_of_the_run_date() -> None:
    start, end = lookback_window(DAY, "2d")
    assert (start, end) == (datetime(2026, 2, 27, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))


def test_dated_train_settings_hold_the_window_and_the_expanded_paths() -> None:
    cfg = settings(
        train={
            "data_path": "hist/{date:%Y}/*.parquet",
            "timestamp_column": "ts",
            "lookback": "36h",
            "evaluation": {"path": "labels/{yesterday}.parquet", "label_column": "y"},
        }
    ).train
    dated = dated_train(cfg, DAY)
    assert dated.data_path == "hist/2026/*.parquet"
    assert dated.evaluation is not None and dated.evaluation.path == "labels/2026-02-28.parquet"
    assert dated.time_window_start == datetime(2026, 2, 27, 12, tzinfo=UTC)
    assert dated.time_window_end == datetime(2026, 3, 1, tzinfo=UTC)
    assert dated.run_date == DAY and cfg.run_date is None  # the settings are not changed


def test_a_lookback_without_a_timestamp_column_is_a_config_error() -> None:
    cfg = settings(train={"lookback": "90d"}).train
    with pytest.raises(ConfigError, match="train.lookback='90d' needs train.timestamp_column"):
        dated_train(cfg, DAY)


def test_dated_score_settings() -> None:
    cfg = settings(score={"input_path": "in/{date}.parquet", "output_dir": "out/{date:%Y}"}).score
    dated = dated_score(cfg, DAY, "RID")
    assert (dated.input_path, dated.output_dir, dated.run_date) == (
        "in/2026-03-01.parquet",
        "out/2026",
        DAY,
    )
    with pytest.raises(ConfigError, match=r"score.output_dir='o/\{dte\}': unknown placeholder"):
        dated_score(cfg.model_copy(update={"output_dir": "o/{dte}"}), DAY, "RID")


def test_run_date_and_keep_runs_settings_round_trip_through_json() -> None:
    original = settings(
        train={"lookback": "12w", "timestamp_column": "ts", "run_date": "2026-01-05"},
        score={"keep_runs": 3, "run_date": "2026-01-06"},
    )
    again = load_settings(files=[], environ={}, overrides=original.model_dump(mode="json"))
    assert again == original
    assert again.train.run_date == date(2026, 1, 5) and again.score.keep_runs == 3
    with pytest.raises(ConfigError, match="key 'score.keep_runs' has value 0"):
        settings(score={"keep_runs": 0})

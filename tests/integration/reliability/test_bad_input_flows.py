"""The bad-input catalogue through the flows called in-process: ``train_flow``, ``score_flow``.

File-level entries raise an ``InputError`` naming the file, end the MLflow run FAILED and
leave no output and no new model version. Row-level entries are scored finitely, or
quarantined with a reason, and show up in the report and the run's figures.
"""

from __future__ import annotations

import html
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import (
    DRIFT_CASES,
    DUPLICATE_ROWS,
    EXTRA_COLUMN,
    EXTREME_VALUES,
    FILE_CASES,
    GARBAGE_ROWS,
    GARBAGE_TIME,
    KEY,
    MISSING_FEATURE,
    N_EXTRA_COLUMNS,
    NESTED_KEYS,
    NULL_KEY_ROWS,
    SENSOR_TIME,
    SENSOR_WINDOW,
    TEXT_ROW,
    TEXT_SPELLINGS,
    TEXT_VALUE,
    UNSEEN_LEVEL,
    UNSEEN_ROW,
    assert_finite_scores,
    expected_fragments,
    sensor_series,
    with_all_null_column,
    with_duplicate_keys,
    with_extra_column,
    with_extreme_values,
    with_garbage_timestamps,
    with_many_extra_columns,
    with_null_keys,
    with_text_in_numbers,
    with_text_spellings,
    with_type_drift,
    with_unseen_category,
    write_nested_key,
)
from mlflow import MlflowClient
from reliability_helpers import Champion, flow_settings, temporary_files

from flows.config import ConfigError
from flows.pipeline.writers import write_parquet_atomic
from flows.score_flow import score_flow
from flows.train_flow import train_flow
from vae_core.errors import ColumnTypeError, InputError, TooFewRowsError
from vae_core.io import read_table

pytestmark = pytest.mark.usefixtures("prefect_server")

SCORING_CASES = {**FILE_CASES, "required_column_missing": MISSING_FEATURE}


def last_run_status(store: str) -> str:
    client = MlflowClient(store, store)
    experiment = client.get_experiment_by_name("rel")
    (run,) = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    return run.info.status


# -- file-level entries ----------------------------------------------------------------------
@pytest.mark.parametrize("entry", list(FILE_CASES))
def test_train_flow_refuses_bad_files(
    tmp_path: Path, frames, champion: Champion, entry: str
) -> None:
    case = FILE_CASES[entry]
    data = case.build(tmp_path, frames[0])
    settings = flow_settings(
        champion.store, data, champion.score, tmp_path / "out", name="rel-flow"
    )
    with pytest.raises(InputError) as caught:
        train_flow(settings)
    for fragment in expected_fragments(case, data):
        assert fragment in str(caught.value)
    assert last_run_status(champion.store) == "FAILED"
    client = MlflowClient(champion.store, champion.store)
    assert client.search_model_versions("name='rel-flow'") == []


@pytest.mark.parametrize("entry", list(SCORING_CASES))
def test_score_flow_refuses_bad_files(
    tmp_path: Path, frames, champion: Champion, entry: str
) -> None:
    case = SCORING_CASES[entry]
    data = case.build(tmp_path, frames[1])
    out = tmp_path / "out"
    with pytest.raises(InputError) as caught:
        score_flow(flow_settings(champion.store, champion.train, data, out))
    for fragment in expected_fragments(case, data):
        assert fragment in str(caught.value)
    assert last_run_status(champion.store) == "FAILED"
    assert not list(out.rglob("*.parquet")) and not (out / "latest.json").exists()
    assert temporary_files(tmp_path) == []


def test_train_flow_with_too_few_rows(tmp_path: Path, frames, champion: Champion) -> None:
    data = write_parquet_atomic(frames[0].head(30), tmp_path / "short.parquet")
    settings = flow_settings(champion.store, data, champion.score, tmp_path, name="rel-flow")
    with pytest.raises(TooFewRowsError, match=r"30 rows, fewer than train.min_rows=50"):
        train_flow(settings)


def test_train_flow_names_a_missing_required_column(
    tmp_path: Path, frames, champion: Champion
) -> None:
    data = write_parquet_atomic(frames[0], tmp_path / "train.parquet")
    settings = flow_settings(
        champion.store,
        data,
        champion.score,
        tmp_path,
        name="rel-flow",
        train={"columns": ["amount", "tip"]},
    )
    with pytest.raises(InputError, match=r"train\.parquet: column\(s\) \['tip'\] are not in"):
        train_flow(settings)


@pytest.mark.parametrize("flow", [train_flow, score_flow], ids=["train", "score"])
@pytest.mark.parametrize(
    "overrides, fragments",
    [
        ({"train": {"min_row": 5}}, ["unknown key 'train.min_row'", "5"]),
        ({"score": {"batch_size": "big"}}, ["key 'score.batch_size'", "'big'"]),
    ],
    ids=["unknown_key", "wrong_type"],
)
def test_flows_refuse_bad_overrides(flow, overrides: dict, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        flow(overrides=overrides)
    for fragment in fragments:
        assert fragment in str(caught.value)


# -- training: row-level entries -------------------------------------------------------------
@pytest.fixture(scope="module")
def dirty_training(tmp_path_factory: pytest.TempPathFactory, frames, champion: Champion):
    """One training run on data with every row-level problem training can meet."""
    root = tmp_path_factory.mktemp("dirty-train")
    dirty = with_duplicate_keys(with_all_null_column(with_extreme_values(frames[0])))
    dirty = dirty.astype({"fee": "string"})
    dirty.loc[TEXT_ROW, "fee"] = TEXT_VALUE
    data = write_parquet_atomic(dirty, root / "dirty.parquet")
    settings = flow_settings(champion.store, data, champion.score, root, name="rel-dirty")
    return train_flow(settings), settings, dirty


def test_training_keeps_nan_inf_and_extreme_rows(dirty_training) -> None:
    outcome, settings, dirty = dirty_training
    from flows.mlops import tracking

    tracking.configure_tracking(settings.tracking.tracking_uri)
    detector = tracking.load_detector(tracking.resolve_model("models:/rel-dirty/1"))
    rows = dirty.iloc[list(EXTREME_VALUES)].assign(fee=1.0)
    assert_finite_scores(detector.score_frame(rows))
    assert np.isfinite(outcome.metrics["threshold"])
    store = settings.tracking.tracking_uri
    run = MlflowClient(store, store).get_run(outcome.run_id)
    assert run.data.tags["row_count"] == str(len(dirty) - 1)  # only the text row is left out


def test_training_quarantines_text_in_a_numeric_column(dirty_training) -> None:
    outcome, settings, _ = dirty_training
    store = settings.tracking.tracking_uri
    client = MlflowClient(store, store)
    assert client.get_run(outcome.run_id).data.metrics["n_quarantined"] == 1
    import mlflow

    rows = mlflow.artifacts.load_text(f"runs:/{outcome.run_id}/quarantine/train_rows.csv")
    assert f"column 'fee' value '{TEXT_VALUE}' is not a number" in rows


def test_training_with_text_in_a_numeric_column_can_fail_instead(
    tmp_path: Path, frames, champion: Champion
) -> None:
    data = write_parquet_atomic(with_text_in_numbers(frames[0]), tmp_path / "text.parquet")
    settings = flow_settings(
        champion.store,
        data,
        champion.score,
        tmp_path,
        name="rel-flow",
        train={"numeric_errors": "fail"},
    )
    with pytest.raises(ColumnTypeError) as caught:
        train_flow(settings)
    message = str(caught.value)
    assert str(data) in message and "'amount'" in message and repr(TEXT_VALUE) in message


def test_training_drops_an_all_null_column_and_reports_duplicates(dirty_training) -> None:
    outcome, settings, _ = dirty_training
    import mlflow

    schema = mlflow.artifacts.load_dict(f"runs:/{outcome.run_id}/model_info/schema.json")
    assert "distance_km" in [c["name"] for c in schema["columns"]]
    report = mlflow.artifacts.load_text(f"runs:/{outcome.run_id}/training_report.md")
    assert "duplicate keys: 1" in report


# -- scoring: row-level entries --------------------------------------------------------------
ROW_CASES = {
    "nan_inf_and_extreme_magnitudes": with_extreme_values,
    "unseen_category": with_unseen_category,
    "all_null_column": with_all_null_column,
    "duplicate_keys": with_duplicate_keys,
    "extra_columns": with_extra_column,
    "text_in_numeric_column": with_text_in_numbers,
    "null_key": lambda frame: frame.assign(**{KEY: frame[KEY].where(frame.index != 9)}),
}


@pytest.fixture(scope="module")
def scored_cases(tmp_path_factory: pytest.TempPathFactory, frames, champion: Champion):
    """Each row-level entry scored once by the scoring flow; tests below read the results."""
    results = {}
    for entry, make in ROW_CASES.items():
        root = tmp_path_factory.mktemp(entry)
        frame = make(frames[1])
        data = write_parquet_atomic(frame, root / "input.parquet")
        outcome = score_flow(flow_settings(champion.store, champion.train, data, root / "out"))
        scores = read_table(outcome.scores_path)
        quarantine = read_table(outcome.quarantine_path) if outcome.quarantine_path else None
        results[entry] = (frame, outcome, scores, quarantine)
    return results


@pytest.mark.parametrize("entry", list(ROW_CASES))
def test_every_row_is_scored_or_quarantined_with_finite_scores(scored_cases, entry) -> None:
    frame, outcome, scores, quarantine = scored_cases[entry]
    n_quarantined = 0 if quarantine is None else len(quarantine)
    assert outcome.rows_in == len(frame) == len(scores) + n_quarantined
    assert_finite_scores(scores)
    html = outcome.report_path.read_text()
    assert f"OK: rows in ({len(frame):,})" in html


def test_extreme_values_are_scored_as_far_out(scored_cases) -> None:
    _, outcome, scores, quarantine = scored_cases["nan_inf_and_extreme_magnitudes"]
    assert quarantine is None
    far = scores.iloc[[1, 2, 3, 4]]  # +inf, -inf, 1e308, -1e308
    assert far["is_anomaly"].all() and (far["top_feature_1"] == "amount").all()


def test_unseen_category_scores_higher_than_the_seen_one(scored_cases) -> None:
    frame, _, scores, quarantine = scored_cases["unseen_category"]
    _, _, plain, _ = scored_cases["duplicate_keys"]  # rows other than 6-7 are untouched
    assert quarantine is None
    assert frame.loc[UNSEEN_ROW, "channel"] == UNSEEN_LEVEL
    assert scores.loc[UNSEEN_ROW, "score"] > plain.loc[UNSEEN_ROW, "score"]


def test_duplicate_keys_are_scored_and_reported(scored_cases, champion: Champion) -> None:
    frame, outcome, scores, _ = scored_cases["duplicate_keys"]
    key = frame.loc[DUPLICATE_ROWS[0], KEY]
    assert (scores[KEY] == key).sum() == 2
    (note,) = outcome.notes
    assert "1 row(s) repeat the key value" in note
    assert "repeat the key value" in outcome.report_path.read_text()
    run = MlflowClient(champion.store, champion.store).get_run(outcome.run_id)
    assert run.data.metrics["n_duplicate_keys"] == 1


def test_extra_columns_are_ignored_and_reported(scored_cases) -> None:
    _, outcome, scores, _ = scored_cases["extra_columns"]
    assert EXTRA_COLUMN not in scores.columns
    (note,) = outcome.notes
    assert f"['{EXTRA_COLUMN}']" in note and "ignored" in note
    assert EXTRA_COLUMN in outcome.report_path.read_text()


@pytest.mark.parametrize(
    "entry, reason",
    [
        ("text_in_numeric_column", f"column 'amount' value '{TEXT_VALUE}' is not a number"),
        ("null_key", f"key column '{KEY}' is null"),
    ],
)
def test_bad_rows_are_quarantined_with_their_reason(scored_cases, entry, reason) -> None:
    _, outcome, _, quarantine = scored_cases[entry]
    assert quarantine["reason"].tolist() == [reason]
    assert outcome.rows_quarantined == 1
    # Escaped in the page (a quote may be spelled &#39; or &#x27;): compare the text.
    assert reason in html.unescape(outcome.report_path.read_text())


def test_an_all_null_column_is_scored_as_missing(scored_cases) -> None:
    _, outcome, scores, quarantine = scored_cases["all_null_column"]
    assert quarantine is None and len(scores) == outcome.rows_in


# -- second round: inputs the first catalogue did not list -----------------------------------
SECOND_ROUND = {
    **{entry: partial(with_type_drift, entry=entry) for entry in DRIFT_CASES},
    "text_spellings": with_text_spellings,
    "garbage_timestamps": with_garbage_timestamps,
    "null_keys": with_null_keys,
    "many_extra_columns": with_many_extra_columns,
}


@pytest.fixture(scope="module")
def second_round(tmp_path_factory: pytest.TempPathFactory, frames, champion: Champion):
    """Each entry scored once by the scoring flow: (frame, outcome, quarantine or None)."""
    results = {}
    for entry, make in SECOND_ROUND.items():
        root = tmp_path_factory.mktemp(entry)
        frame = make(frames[1])
        data = write_parquet_atomic(frame, root / "input.parquet")
        outcome = score_flow(flow_settings(champion.store, champion.train, data, root / "out"))
        quarantine = read_table(outcome.quarantine_path) if outcome.quarantine_path else None
        results[entry] = (frame, outcome, quarantine)
    return results


def _note(outcome, fragment: str) -> str:
    (note,) = [note for note in outcome.notes if fragment in note]
    # Escaped in the page (a quote may be spelled &#39; or &#x27;): compare the text.
    assert note in html.unescape(outcome.report_path.read_text())
    return note


@pytest.mark.parametrize("entry", list(DRIFT_CASES))
def test_type_drift_is_a_note_in_the_report(second_round, entry: str) -> None:
    frame, outcome, quarantine = second_round[entry]
    column, before, now = DRIFT_CASES[entry]
    note = _note(outcome, f"column '{column}'")
    assert f"holds {now}" in note and f"held {before}" in note
    assert quarantine is None and outcome.rows_scored == len(frame)


def test_text_spellings_of_non_finite_numbers_are_quarantined(second_round) -> None:
    _, outcome, quarantine = second_round["text_spellings"]
    reasons = dict(zip(quarantine["amount"].fillna(""), quarantine["reason"], strict=True))
    assert set(reasons) == set(TEXT_SPELLINGS)
    for spelling in ("nan", "NaN", ""):
        assert reasons[spelling] == f"column 'amount' value {spelling!r} is not a number"
    for spelling in ("inf", "-inf", "Infinity"):
        assert reasons[spelling] == f"column 'amount' value {spelling!r} is not a finite number"
    assert outcome.rows_quarantined == len(TEXT_SPELLINGS)


def test_unparseable_timestamps_are_counted_in_a_note(second_round) -> None:
    frame, outcome, quarantine = second_round["garbage_timestamps"]
    note = _note(outcome, "created_at")
    assert f"{len(GARBAGE_ROWS)} value(s) that are not timestamps" in note
    assert quarantine is None and outcome.rows_scored == len(frame)


def test_null_keys_are_quarantined_not_reported_as_repeats(second_round) -> None:
    _, outcome, quarantine = second_round["null_keys"]
    assert quarantine["reason"].tolist() == [f"key column '{KEY}' is null"] * len(NULL_KEY_ROWS)
    assert not any("repeat the key value" in note for note in outcome.notes), outcome.notes


def test_thousands_of_extra_columns_are_one_short_note(second_round) -> None:
    _, outcome, _ = second_round["many_extra_columns"]
    note = _note(outcome, "not used by the model")
    assert f"{N_EXTRA_COLUMNS:,} columns" in note and len(note) < 600


@pytest.mark.parametrize("kind", list(NESTED_KEYS))
def test_score_flow_refuses_a_nested_key_column(
    tmp_path: Path, frames, champion: Champion, kind: str
) -> None:
    data = write_nested_key(frames[1], kind, tmp_path / "nested.parquet")
    out = tmp_path / "out"
    with pytest.raises(InputError, match=f"key column '{KEY}' holds {NESTED_KEYS[kind][1]}"):
        score_flow(flow_settings(champion.store, champion.train, data, out))
    assert last_run_status(champion.store) == "FAILED"
    assert not list(out.rglob("scores.parquet")) and temporary_files(tmp_path) == []


def test_train_flow_refuses_a_nested_key_column(tmp_path: Path, frames, champion) -> None:
    data = write_nested_key(frames[0], "list", tmp_path / "nested.parquet")
    settings = flow_settings(champion.store, data, champion.score, tmp_path, name="rel-flow")
    with pytest.raises(InputError, match=rf"{data}: key column '{KEY}' holds list or map"):
        train_flow(settings)
    client = MlflowClient(champion.store, champion.store)
    assert client.search_model_versions("name='rel-flow'") == []


def test_a_garbage_tracking_uri_is_refused_before_any_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'garbage-uri', from the command line .*sqlite:///"):
        score_flow(overrides={"tracking": {"tracking_uri": "garbage-uri"}})


def test_sensor_rows_with_unreadable_timestamps_are_quarantined(
    tmp_path: Path, champion: Champion
) -> None:
    """A sensor series is ordered by its timestamps: a row without one has no place in it."""
    series = sensor_series(260)
    train = write_parquet_atomic(series.iloc[:200], tmp_path / "train.parquet")
    later = with_garbage_timestamps(series.iloc[200:].reset_index(drop=True), SENSOR_TIME)
    data = write_parquet_atomic(later, tmp_path / "later.parquet")
    sensor = {"timestamp_column": SENSOR_TIME, "window_length": SENSOR_WINDOW}
    settings = flow_settings(
        champion.store,
        train,
        data,
        tmp_path / "out",
        name="rel-sensor",
        train={"key_columns": [], "timestamp_column": SENSOR_TIME, "sensor": sensor},
    )
    assert train_flow(settings).alias == "champion"
    outcome = score_flow(settings)
    quarantine = read_table(outcome.quarantine_path)
    assert quarantine["reason"].tolist() == [
        f"timestamp column '{SENSOR_TIME}' value {GARBAGE_TIME!r} is not a timestamp (ISO 8601) "
        "or a number"
    ] * len(GARBAGE_ROWS)
    assert outcome.rows_scored == len(later) - len(GARBAGE_ROWS)


def test_type_drift_refuse_stops_the_scoring_flow(
    tmp_path: Path, frames, champion: Champion
) -> None:
    frame = with_type_drift(frames[1], "integers_in_a_boolean_column")
    data = write_parquet_atomic(frame, tmp_path / "input.parquet")
    settings = flow_settings(
        champion.store, champion.train, data, tmp_path / "out", score={"type_drift": "refuse"}
    )
    try:
        score_flow(settings)
    except ColumnTypeError as exc:
        assert "column 'card_present' holds numbers (int64)" in str(exc)
        assert last_run_status(champion.store) == "FAILED"
        return
    raise AssertionError("score.type_drift=refuse did not stop the run")


def test_config_files_with_a_few_anchors_and_merge_keys_still_load(tmp_path: Path) -> None:
    from flows.config import load_settings

    config = tmp_path / "anchors.yaml"
    config.write_text(
        "x-common: &common {batch_size: 128, top_n: 5}\n"
        "score:\n  <<: *common\n  report_title: with anchors\n"
    )
    with pytest.raises(ConfigError, match="unknown key 'x-common'"):
        load_settings(files=[config], environ={})
    config.write_text(
        "score: &score\n  batch_size: 128\n  top_n: 5\n"
        "train:\n  columns: &cols [amount, fee]\n  key_columns: [payment_id]\n"
    )
    settings = load_settings(files=[config], environ={})
    assert settings.score.batch_size == 128 and settings.train.columns == ["amount", "fee"]


def test_a_bad_value_names_the_layer_it_came_from(tmp_path: Path) -> None:
    from flows.config import load_settings

    base, local = tmp_path / "base.yaml", tmp_path / "local.yaml"
    base.write_text("score:\n  top_n: 5\n")
    local.write_text("score:\n  top_n: many\n")
    with pytest.raises(ConfigError, match=rf"'score.top_n' has value 'many', from {local}"):
        load_settings(files=[base, local], environ={})
    with pytest.raises(ConfigError, match="from the environment variable MLFLOW_TRACKING_URI"):
        load_settings(files=[base], environ={"MLFLOW_TRACKING_URI": "mlruns"})

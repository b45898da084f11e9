"""The bad-input catalogue through the command line: ``fit``, ``score-file``, ``train``, ``score``.

Every file-level entry must end the command with exit code 2 and one ``error:`` line that
names the file at fault and says what to do, with no traceback, and must leave no output
(no model directory, no scores file, no temporary file, no registered version).
Row-level entries must be scored finitely or quarantined with a reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bad_inputs import (
    DRIFT_CASES,
    DUPLICATE_ROWS,
    EXTRA_COLUMN,
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
    FileCase,
    assert_finite_scores,
    billion_laughs,
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
    write_nested_key,
)
from mlflow import MlflowClient
from reliability_helpers import (
    MODEL_NAME,
    TINY_DETECTOR,
    Champion,
    assert_one_line_error,
    flow_settings,
    run_cli,
    temporary_files,
    write_config,
)

from flows.pipeline.writers import write_parquet_atomic
from flows.publishing.run_set import latest_run_dir
from vae_core.io import read_table

pytestmark = pytest.mark.usefixtures("prefect_server")

FIT_FAST = ["--epochs", "2", "--seed", "0", "--key-column", KEY]
SCORING_CASES = {**FILE_CASES, "required_column_missing": MISSING_FEATURE}


def build(case: FileCase, tmp_path: Path, frame: pd.DataFrame) -> tuple[Path, list[str]]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = case.build(data_dir, frame)
    return path, expected_fragments(case, path)


# -- library commands ----------------------------------------------------------------------
@pytest.mark.parametrize("entry", list(FILE_CASES))
def test_fit_refuses_bad_files(capfd, tmp_path: Path, frames, entry: str) -> None:
    data, fragments = build(FILE_CASES[entry], tmp_path, frames[0])
    model = tmp_path / "model"
    code, out, err = run_cli(capfd, "fit", data, "--model-dir", model, *FIT_FAST)
    assert code == 2, err
    assert_one_line_error(err, fragments)
    assert not model.exists() and temporary_files(tmp_path) == []


@pytest.mark.parametrize("entry", list(SCORING_CASES))
def test_score_file_refuses_bad_files(
    capfd, tmp_path: Path, frames, model_dir: Path, entry: str
) -> None:
    data, fragments = build(SCORING_CASES[entry], tmp_path, frames[1])
    output = tmp_path / "out" / "scores.parquet"
    code, _, err = run_cli(capfd, "score-file", data, "--model-dir", model_dir, "--output", output)
    assert code == 2, err
    assert_one_line_error(err, fragments)
    assert not output.exists() and temporary_files(tmp_path) == []


def test_fit_names_a_missing_key_column(capfd, tmp_path: Path, frames) -> None:
    data = write_parquet_atomic(frames[0].drop(columns=[KEY]), tmp_path / "nokey.parquet")
    code, _, err = run_cli(capfd, "fit", data, "--model-dir", tmp_path / "m", *FIT_FAST)
    assert code == 2
    assert_one_line_error(err, ["key column(s) ['payment_id']", "not in the data"])


def test_fit_with_too_few_rows(capfd, tmp_path: Path, frames) -> None:
    data = write_parquet_atomic(frames[0].head(6), tmp_path / "six.parquet")
    code, _, err = run_cli(capfd, "fit", data, "--model-dir", tmp_path / "m", *FIT_FAST)
    assert code == 2
    assert_one_line_error(err, ["6 rows", "at least 10", "Train on more history"])
    assert not (tmp_path / "m").exists()


def test_fit_text_in_a_numeric_column_fails_when_asked(capfd, tmp_path: Path, frames) -> None:
    data = write_parquet_atomic(with_text_in_numbers(frames[0]), tmp_path / "text.parquet")
    code, _, err = run_cli(
        capfd, "fit", data, "--model-dir", tmp_path / "m", *FIT_FAST, "--numeric-errors", "fail"
    )
    assert code == 2
    assert_one_line_error(
        err, [str(data), "column 'amount'", f"row {TEXT_ROW}", repr(TEXT_VALUE), "quarantine"]
    )


def test_fit_quarantines_text_in_a_numeric_column_and_says_so(
    capfd, tmp_path: Path, frames
) -> None:
    data = write_parquet_atomic(with_text_in_numbers(frames[0]), tmp_path / "text.parquet")
    code, out, err = run_cli(capfd, "fit", data, "--model-dir", tmp_path / "m", *FIT_FAST)
    assert code == 0, err
    (line,) = [line for line in err.splitlines() if "not trained on" in line]
    assert line.startswith("warning: ") and "1 row(s)" in line and TEXT_VALUE in line
    assert f"rows: {len(frames[0]) - 1}" in out
    from vae_core import VAEAnomalyDetector

    model = VAEAnomalyDetector.load(tmp_path / "m")
    assert {c.name: c.kind for c in model.schema_.columns}["amount"] == "numeric"


def test_fit_reports_duplicate_keys_and_trains_on_every_row(capfd, tmp_path: Path, frames) -> None:
    data = write_parquet_atomic(with_duplicate_keys(frames[0]), tmp_path / "dup.parquet")
    code, out, err = run_cli(capfd, "fit", data, "--model-dir", tmp_path / "m", *FIT_FAST)
    assert code == 0, err
    assert f"rows: {len(frames[0])}" in out
    (line,) = [line for line in err.splitlines() if "repeat the key value" in line]
    assert line.startswith("warning: ") and "1 row(s)" in line


def test_fit_on_extreme_values_and_an_all_null_column(capfd, tmp_path: Path, frames) -> None:
    dirty = with_all_null_column(with_extreme_values(frames[0]))
    data = write_parquet_atomic(dirty, tmp_path / "dirty.parquet")
    code, _, err = run_cli(capfd, "fit", data, "--model-dir", tmp_path / "m", *FIT_FAST)
    assert code == 0, err
    (line,) = [line for line in err.splitlines() if "distance_km" in line]
    assert line.startswith("warning: ") and "all values missing" in line
    output = tmp_path / "scores.parquet"
    code, _, err = run_cli(
        capfd, "score-file", data, "--model-dir", tmp_path / "m", "--output", output
    )
    assert code == 0, err
    assert_finite_scores(read_table(output))


# -- score-file: row-level entries -----------------------------------------------------------
def score_file(capfd, tmp_path: Path, frame: pd.DataFrame, model_dir: Path):
    data = write_parquet_atomic(frame, tmp_path / "input.parquet")
    output = tmp_path / "scores.parquet"
    code, out, err = run_cli(
        capfd, "score-file", data, "--model-dir", model_dir, "--output", output, "--top", "0"
    )
    return code, err, data, output


def test_score_file_names_text_in_a_numeric_column(capfd, tmp_path: Path, frames, model_dir):
    code, err, data, output = score_file(
        capfd, tmp_path, with_text_in_numbers(frames[1]), model_dir
    )
    assert code == 2
    assert_one_line_error(err, [str(data), "column 'amount'", f"row {TEXT_ROW}", repr(TEXT_VALUE)])
    assert not output.exists()


def test_score_file_ignores_and_reports_extra_columns(capfd, tmp_path: Path, frames, model_dir):
    code, err, data, output = score_file(capfd, tmp_path, with_extra_column(frames[1]), model_dir)
    assert code == 0, err
    assert EXTRA_COLUMN not in read_table(output).columns
    (line,) = [line for line in err.splitlines() if EXTRA_COLUMN in line]
    assert line.startswith("warning: ") and str(data) in line and "ignored" in line


def test_score_file_scores_duplicate_keys_and_reports_them(
    capfd, tmp_path: Path, frames, model_dir
) -> None:
    code, err, _, output = score_file(capfd, tmp_path, with_duplicate_keys(frames[1]), model_dir)
    assert code == 0, err
    scores = read_table(output)
    assert len(scores) == len(frames[1])
    key = frames[1].loc[DUPLICATE_ROWS[0], KEY]
    assert (scores[KEY] == key).sum() == 2
    (line,) = [line for line in err.splitlines() if "repeat the key value" in line]
    assert line.startswith("warning: ") and "1 row(s)" in line


# -- the flow commands -----------------------------------------------------------------------
@pytest.fixture
def cli_config(tmp_path: Path, champion: Champion):
    """``--config`` for train and score against the session's store (model ``rel-cli``
    for training, so that no failed command can touch the champion of ``rel``)."""

    def make(train_path: Path | str, score_path: Path | str, **sections: dict) -> Path:
        settings = flow_settings(
            champion.store, train_path, score_path, tmp_path / "out", name="rel-cli", **sections
        )
        settings = settings.model_copy(
            update={
                "score": settings.score.model_copy(
                    update={"model_uri": f"models:/{MODEL_NAME}@champion"}
                )
            }
        )
        return write_config(tmp_path / "config.yaml", settings)

    return make


def registered_versions(store: str, name: str) -> int:
    return len(MlflowClient(store, store).search_model_versions(f"name='{name}'"))


@pytest.mark.parametrize("entry", list(FILE_CASES))
def test_train_command_refuses_bad_files(
    capfd, tmp_path: Path, frames, champion: Champion, cli_config, entry: str
) -> None:
    data, fragments = build(FILE_CASES[entry], tmp_path, frames[0])
    config = cli_config(data, champion.score)
    code, _, err = run_cli(capfd, "train", "--config", config)
    assert code == 2, err
    assert_one_line_error(err, fragments)
    assert registered_versions(champion.store, "rel-cli") == 0


@pytest.mark.parametrize("entry", list(SCORING_CASES))
def test_score_command_refuses_bad_files(
    capfd, tmp_path: Path, frames, champion: Champion, cli_config, entry: str
) -> None:
    data, fragments = build(SCORING_CASES[entry], tmp_path, frames[1])
    config = cli_config(champion.train, data)
    code, _, err = run_cli(capfd, "score", "--config", config)
    assert code == 2, err
    assert_one_line_error(err, fragments)
    assert not list((tmp_path / "out").rglob("*.parquet"))  # no run, not even its staging
    assert not (tmp_path / "out" / "latest.json").exists()
    assert temporary_files(tmp_path) == []


def test_score_command_shows_a_traceback_with_debug(
    capfd, tmp_path: Path, champion: Champion, cli_config
) -> None:
    config = cli_config(champion.train, tmp_path / "missing.parquet")
    code, _, err = run_cli(capfd, "score", "--config", config, "--debug")
    assert code == 2
    assert "Traceback" in err and "DataPathError" in err


def test_train_command_with_too_few_rows(capfd, tmp_path: Path, frames, champion, cli_config):
    data = write_parquet_atomic(frames[0].head(30), tmp_path / "short.parquet")
    code, _, err = run_cli(capfd, "train", "--config", cli_config(data, champion.score))
    assert code == 2
    assert_one_line_error(err, [str(data), "30 rows", "train.min_rows=50", "lower min_rows"])


def test_train_command_names_a_missing_key_column(
    capfd, tmp_path: Path, frames, champion, cli_config
) -> None:
    data = write_parquet_atomic(frames[0].drop(columns=[KEY]), tmp_path / "nokey.parquet")
    code, _, err = run_cli(capfd, "train", "--config", cli_config(data, champion.score))
    assert code == 2
    assert_one_line_error(err, [str(data), "['payment_id']"])


def test_score_command_with_numeric_errors_fail(
    capfd, tmp_path: Path, frames, champion, cli_config
) -> None:
    data = write_parquet_atomic(with_text_in_numbers(frames[1]), tmp_path / "text.parquet")
    config = cli_config(champion.train, data, score={"numeric_errors": "fail"})
    code, _, err = run_cli(capfd, "score", "--config", config)
    assert code == 2
    assert_one_line_error(
        err, [str(data), "column 'amount'", f"row {TEXT_ROW}", repr(TEXT_VALUE), "quarantine"]
    )


def test_score_command_quarantines_and_warns(
    capfd, tmp_path: Path, frames, champion, cli_config
) -> None:
    dirty = with_extra_column(with_duplicate_keys(with_text_in_numbers(frames[1])))
    data = write_parquet_atomic(dirty, tmp_path / "dirty.parquet")
    code, out, err = run_cli(capfd, "score", "--config", cli_config(champion.train, data))
    assert code == 0, err
    assert "quarantine: " in out
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert any(EXTRA_COLUMN in line for line in warnings), err
    assert any("repeat the key value" in line for line in warnings), err
    quarantine = read_table(latest_run_dir(tmp_path / "out") / "quarantine.parquet")
    assert quarantine["reason"].tolist() == [
        f"column 'amount' value '{TEXT_VALUE}' is not a number"
    ]


CONFIG_ERRORS = {
    "unknown_key": (
        {"train": {"min_row": 5}, "score": {"batchsize": 5}},
        ["unknown key", "vae-anomaly"],
    ),
    "wrong_type": ({"train": {"min_rows": "many"}, "score": {"batch_size": "big"}}, ["has value"]),
}


@pytest.mark.parametrize("command", ["train", "score"])
@pytest.mark.parametrize("entry", list(CONFIG_ERRORS))
def test_flow_commands_refuse_a_bad_config_file(
    capfd, tmp_path: Path, command: str, entry: str
) -> None:
    sections, fragments = CONFIG_ERRORS[entry]
    config = tmp_path / "bad.yaml"
    import yaml

    config.write_text(yaml.safe_dump({command: sections[command]}))
    key = next(iter(sections[command]))
    value = sections[command][key]
    code, _, err = run_cli(capfd, command, "--config", config)
    assert code == 2
    line = assert_one_line_error(err, [str(config), f"{command}.{key}", *fragments])
    assert repr(value) in line


def test_finite_scores_for_extreme_values_through_score_file(
    capfd, tmp_path: Path, frames, model_dir
) -> None:
    code, err, _, output = score_file(capfd, tmp_path, with_extreme_values(frames[1]), model_dir)
    assert code == 0, err
    scores = read_table(output)
    assert_finite_scores(scores)
    assert np.all(scores["score"].iloc[1:5] > scores["score"].iloc[5:].median())


# -- second round: inputs and settings the first catalogue did not list ----------------------
def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: ")]


@pytest.mark.parametrize("kind", list(NESTED_KEYS))
def test_score_file_refuses_a_nested_key_column(
    capfd, tmp_path: Path, frames, model_dir, kind: str
) -> None:
    data = write_nested_key(frames[1], kind, tmp_path / "nested.parquet")
    output = tmp_path / "scores.parquet"
    code, _, err = run_cli(capfd, "score-file", data, "--model-dir", model_dir, "--output", output)
    assert code == 2, err
    word = NESTED_KEYS[kind][1]
    assert_one_line_error(
        err, [str(data), f"key column '{KEY}' holds {word} values", "a key may hold text"]
    )
    assert not output.exists()


def test_fit_refuses_a_nested_key_column(capfd, tmp_path: Path, frames) -> None:
    data = write_nested_key(frames[0], "struct", tmp_path / "nested.parquet")
    code, _, err = run_cli(capfd, "fit", data, "--model-dir", tmp_path / "m", *FIT_FAST)
    assert code == 2, err
    assert_one_line_error(err, [str(data), f"key column '{KEY}' holds struct values"])
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("entry", list(DRIFT_CASES))
def test_score_file_warns_of_type_drift_per_column(
    capfd, tmp_path: Path, frames, model_dir, entry: str
) -> None:
    code, err, data, output = score_file(
        capfd, tmp_path, with_type_drift(frames[1], entry), model_dir
    )
    assert code == 0, err
    column, before, now = DRIFT_CASES[entry]
    (line,) = [line for line in _warnings(err) if f"column '{column}'" in line]
    assert str(data) in line and f"holds {now}" in line and f"held {before}" in line
    assert len(read_table(output)) == len(frames[1])


def test_score_file_text_infinity_stops_like_text_nan(
    capfd, tmp_path: Path, frames, model_dir
) -> None:
    for spelling in ("inf", "nan", "-Infinity"):
        frame = frames[1].astype({"amount": "string"})
        frame.loc[TEXT_ROW, "amount"] = spelling
        code, err, data, output = score_file(capfd, tmp_path, frame, model_dir)
        assert code == 2, (spelling, err)
        assert_one_line_error(err, [str(data), "column 'amount'", f"row {TEXT_ROW}", spelling])
        assert not output.exists()


def test_fit_quarantines_text_spellings_of_non_finite_numbers(
    capfd, tmp_path: Path, frames
) -> None:
    data = write_parquet_atomic(with_text_spellings(frames[0]), tmp_path / "spell.parquet")
    code, out, err = run_cli(capfd, "fit", data, "--model-dir", tmp_path / "m", *FIT_FAST)
    assert code == 0, err
    (line,) = [line for line in _warnings(err) if "not trained on" in line]
    assert f"{len(TEXT_SPELLINGS)} row(s)" in line and "'inf' is not a finite number" in line
    assert f"rows: {len(frames[0]) - len(TEXT_SPELLINGS)}" in out


def test_score_file_counts_unparseable_timestamps(capfd, tmp_path: Path, frames, model_dir):
    code, err, data, output = score_file(
        capfd, tmp_path, with_garbage_timestamps(frames[1]), model_dir
    )
    assert code == 0, err
    (line,) = [line for line in _warnings(err) if "created_at" in line]
    assert str(data) in line and f"{len(GARBAGE_ROWS)} value(s) that are not timestamps" in line
    assert repr(GARBAGE_TIME) in line
    assert len(read_table(output)) == len(frames[1])


def test_score_file_names_thousands_of_extra_columns_briefly(
    capfd, tmp_path: Path, frames, model_dir
) -> None:
    code, err, _, _ = score_file(capfd, tmp_path, with_many_extra_columns(frames[1]), model_dir)
    assert code == 0, err
    (line,) = [line for line in _warnings(err) if "not used by the model" in line]
    assert f"{N_EXTRA_COLUMNS:,} columns" in line and "'unused_00000'" in line
    assert len(line) < 600


def test_score_file_reports_null_keys_as_null_keys(capfd, tmp_path: Path, frames, model_dir):
    code, err, _, output = score_file(capfd, tmp_path, with_null_keys(frames[1]), model_dir)
    assert code == 0, err
    warnings = _warnings(err)
    assert not any("repeat the key value" in line for line in warnings), err
    (line,) = [line for line in warnings if "null key" in line]
    assert f"{len(NULL_KEY_ROWS)} row(s) have a null key" in line and f"['{KEY}']" in line
    assert len(read_table(output)) == len(frames[1])


def test_score_file_output_below_a_file(capfd, tmp_path: Path, good_files, model_dir) -> None:
    blocker = tmp_path / "reports"
    blocker.write_text("a file where a folder should be")
    output = blocker / "scores.parquet"
    code, _, err = run_cli(
        capfd, "score-file", good_files["score"], "--model-dir", model_dir, "--output", output
    )
    assert code == 2, err
    assert_one_line_error(err, [str(blocker), "is a file, not a directory"])
    assert blocker.read_text() == "a file where a folder should be"


# -- second round: bad settings, through the flow commands -----------------------------------
@pytest.mark.parametrize("command", ["train", "score"])
def test_flow_commands_refuse_a_garbage_tracking_uri(
    capfd, monkeypatch, tmp_path: Path, command: str
) -> None:
    monkeypatch.setenv("VAE_ANOMALY_TRACKING_URI", "garbage-uri")
    code, _, err = run_cli(capfd, command)
    assert code == 2, err
    assert_one_line_error(
        err,
        ["'garbage-uri'", "the environment variable VAE_ANOMALY_TRACKING_URI", "sqlite:///"],
    )
    assert "http(s)://" in err and "maintenance" not in err


def test_a_garbage_tracking_uri_names_the_file_or_the_option(capfd, tmp_path: Path) -> None:
    config = tmp_path / "local.yaml"
    config.write_text("tracking:\n  tracking_uri: not-a-store\n")
    code, _, err = run_cli(capfd, "score", "--config", config)
    assert code == 2
    assert_one_line_error(err, ["'not-a-store'", f"from {config}", "postgresql://"])
    code, _, err = run_cli(capfd, "score", "--config", config, "--tracking-uri", "also-bad")
    assert code == 2
    assert_one_line_error(err, ["'also-bad'", "from the command line"])


@pytest.mark.parametrize("command", ["train", "score"])
def test_flow_commands_refuse_a_missing_config_folder(
    capfd, monkeypatch, tmp_path: Path, command: str
) -> None:
    missing = tmp_path / "no-such-configs"
    monkeypatch.setenv("VAE_ANOMALY_CONFIG_DIR", str(missing))
    code, _, err = run_cli(capfd, command)
    assert code == 2, err
    assert_one_line_error(err, [f"VAE_ANOMALY_CONFIG_DIR={missing}", "does not exist"])


@pytest.mark.parametrize("command", ["train", "score"])
def test_flow_commands_refuse_a_yaml_bomb_quickly(capfd, tmp_path: Path, command: str) -> None:
    import time

    config = tmp_path / "laughs.yaml"
    config.write_text(billion_laughs())
    started = time.perf_counter()
    code, _, err = run_cli(capfd, command, "--config", config)
    assert code == 2, err[:2000]
    line = assert_one_line_error(err, [str(config), "YAML aliases"])
    assert len(line) < 300 and time.perf_counter() - started < 10


def test_a_long_bad_value_is_quoted_as_a_short_excerpt(capfd, tmp_path: Path) -> None:
    config = tmp_path / "long.yaml"
    config.write_text(f"score:\n  batch_size: '{'9x' * 50_000}'\n  nonsense: [{'1, ' * 5000}1]\n")
    code, _, err = run_cli(capfd, "score", "--config", config)
    assert code == 2
    line = assert_one_line_error(err, ["score.batch_size", "score.nonsense", "..."])
    assert len(line) < 800


def test_config_files_over_the_size_limit_are_refused(capfd, tmp_path: Path) -> None:
    config = tmp_path / "huge.yaml"
    config.write_text("# padding\n" * 120_000)
    code, _, err = run_cli(capfd, "train", "--config", config)
    assert code == 2
    assert_one_line_error(err, [str(config), "larger than 1 MiB"])


def test_score_command_names_the_full_reason_when_the_champions_files_are_gone(
    capfd, tmp_path: Path, champion: Champion
) -> None:
    import shutil
    from urllib.parse import unquote, urlparse

    from flows.train_flow import train_flow

    settings = flow_settings(
        champion.store, champion.train, champion.score, tmp_path / "out", name="rel-gone"
    )
    assert train_flow(settings).alias == "champion"
    client = MlflowClient(champion.store, champion.store)
    files = Path(unquote(urlparse(client.get_model_version_download_uri("rel-gone", "1")).path))
    assert files.is_dir()
    shutil.rmtree(files)
    config = write_config(tmp_path / "gone.yaml", settings)  # scores models:/rel-gone@champion
    code, _, err = run_cli(capfd, "score", "--config", config)
    assert code == 2, err
    line = assert_one_line_error(err, ["models:/rel-gone", "cannot download the model files"])
    reason = line.split("artifacts:", 1)[-1] if "artifacts:" in line else line
    assert len(reason.strip()) > 10, line  # the reason itself, not a line cut after the colon


def test_score_file_stops_at_an_unreadable_sensor_timestamp(capfd, tmp_path: Path) -> None:
    from vae_core import SensorVAEDetector

    series = sensor_series(200)
    detector = SensorVAEDetector(
        timestamp_column=SENSOR_TIME,
        window_length=SENSOR_WINDOW,
        detector_params={**TINY_DETECTOR, "hidden_sizes": (16, 8)},
    ).fit(series.iloc[:150])
    model = detector.save(tmp_path / "sensor-model")
    later = with_garbage_timestamps(series.iloc[150:].reset_index(drop=True), SENSOR_TIME)
    data = write_parquet_atomic(later, tmp_path / "later.parquet")
    output = tmp_path / "scores.parquet"
    code, _, err = run_cli(capfd, "score-file", data, "--model-dir", model, "--output", output)
    assert code == 2, err
    assert_one_line_error(
        err, [str(data), f"timestamp column '{SENSOR_TIME}'", repr(GARBAGE_TIME), "not a timestamp"]
    )
    assert not output.exists()


def test_score_command_refuses_an_output_folder_that_is_a_file(
    capfd, tmp_path: Path, champion: Champion, cli_config
) -> None:
    config = cli_config(champion.train, champion.score)
    blocker = tmp_path / "out"  # the config's score.output_dir
    blocker.write_text("a file where the output folder should be")
    code, _, err = run_cli(capfd, "score", "--config", config)
    assert code == 2, err
    assert_one_line_error(err, [f"{blocker} is a file", "the scoring output is a folder"])
    assert blocker.read_text() == "a file where the output folder should be"


def test_score_file_notes_numbers_in_the_carried_timestamp_column(
    capfd, tmp_path: Path, frames, model_dir
) -> None:
    frame = frames[1].assign(created_at=np.arange(len(frames[1])))
    code, err, _, output = score_file(capfd, tmp_path, frame, model_dir)
    assert code == 0, err
    (line,) = [line for line in _warnings(err) if "created_at" in line]
    assert "holds numbers (int64) but held timestamps in training" in line
    assert read_table(output)["created_at"].tolist() == list(range(len(frame)))


def test_a_config_that_is_a_folder_or_not_text_is_refused(capfd, tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    code, _, err = run_cli(capfd, "score", "--config", folder)
    assert code == 2
    assert_one_line_error(err, [str(folder), "is a folder"])
    binary = tmp_path / "model.yaml"
    binary.write_bytes(b"score:\n  top_n: \xff\xfe\n")
    code, _, err = run_cli(capfd, "train", "--config", binary)
    assert code == 2
    assert_one_line_error(err, [str(binary), "not UTF-8 text"])

"""Job settings: the shipped layers, strict keys, clear errors, layering, env overrides.

Fast: no Prefect server, no MLflow. ``environ=`` isolates every test from the caller's
environment (an exported ``MLFLOW_TRACKING_URI`` must not change a result).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows import cli
from flows import config as config_module
from flows.config import ConfigError, DetectorSettings, Settings, json_schema, load_settings
from flows.detectors import build_sensor_detector
from vae_core import VAEAnomalyDetector
from vae_core.errors import InputError

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "configs"


@pytest.fixture
def shipped_configs(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default layers at the repository's configs/, whatever the working dir."""
    monkeypatch.setattr(config_module, "CONFIG_DIR", SHIPPED)
    return SHIPPED


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def problem(overrides: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings([], overrides=overrides, environ={})
    return str(caught.value)


# -- the shipped layers -------------------------------------------------------------------
@pytest.mark.parametrize("job", ["train", "score"])
def test_shipped_layers_validate(shipped_configs: Path, job: str):
    files = config_module.default_files(job)
    assert [p.name for p in files] == ["base.yaml", f"{job}.yaml", "local.yaml"]
    settings = load_settings(job=job, environ={})
    assert isinstance(settings, Settings)
    assert settings.tracking.registered_model == "vae-anomaly"
    assert settings.tracking.tracking_uri == "sqlite:///mlflow.db"


def test_shipped_layers_set_the_job_sections(shipped_configs: Path):
    train = load_settings(job="train", environ={}).train
    assert train.key_columns == ["payment_id"]
    assert train.timestamp_column == "created_at"
    assert train.detector.threshold_method == "iqr"
    score = load_settings(job="score", environ={}).score
    assert score.model_uri == "models:/vae-anomaly@champion"
    assert score.numeric_errors == "quarantine"


def test_base_yaml_matches_the_model_defaults(shipped_configs: Path):
    """An installed CLI run outside the repository (no configs/) behaves the same."""
    assert load_settings([SHIPPED / "base.yaml"], environ={}) == Settings()


def test_settings_are_frozen():
    settings = load_settings([], environ={})
    with pytest.raises(ValidationError):
        settings.tracking.experiment = "other"  # type: ignore[misc]


# -- unknown keys -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, dotted",
    [
        ({"trackin": {"tracking_uri": "x"}}, "trackin"),
        ({"tracking": {"uri": "sqlite:///x.db"}}, "tracking.uri"),
        ({"train": {"detector": {"latent_dims": 4}}}, "train.detector.latent_dims"),
        ({"score": {"top": 5}}, "score.top"),
    ],
)
def test_unknown_key_anywhere_is_named_with_its_value(overrides: dict, dotted: str):
    message = problem(overrides)
    assert f"unknown key '{dotted}'" in message
    leaf = overrides
    while isinstance(leaf, dict):
        leaf = next(iter(leaf.values()))
    assert repr(leaf) in message
    assert "config-schema" in message


def test_unknown_key_in_a_file_names_the_file(tmp_path: Path):
    path = write(tmp_path / "typo.yaml", "train:\n  holdout_fracton: 0.1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings([path], environ={})
    assert "train.holdout_fracton" in str(caught.value)
    assert str(path) in str(caught.value)


def test_config_error_is_an_input_error():
    """So the CLI maps it to exit code 2."""
    assert issubclass(ConfigError, InputError)


# -- wrong values -------------------------------------------------------------------------
def test_bad_literal_names_key_value_and_choices():
    message = problem({"train": {"detector": {"threshold_method": "x"}}})
    assert "train.detector.threshold_method" in message
    assert "'x'" in message
    for choice in ("iqr", "contamination", "fpr", "pot"):
        assert choice in message


@pytest.mark.parametrize(
    "overrides, dotted, value, allowed",
    [
        ({"train": {"holdout_fraction": 2}}, "train.holdout_fraction", "2", "less than 0.5"),
        ({"train": {"holdout_fraction": 0}}, "train.holdout_fraction", "0", "greater than 0"),
        ({"train": {"min_rows": 5}}, "train.min_rows", "5", "greater than or equal to 10"),
        ({"score": {"batch_size": 0}}, "score.batch_size", "0", "greater than or equal to 1"),
        ({"score": {"batch_size": "many"}}, "score.batch_size", "'many'", "valid integer"),
        ({"score": {"numeric_errors": "drop"}}, "score.numeric_errors", "'drop'", "'fail'"),
        ({"train": {"detector": {"beta": -1}}}, "train.detector.beta", "-1", "greater than 0"),
        ({"tracking": "sqlite:///x.db"}, "tracking", "'sqlite:///x.db'", "valid dictionary"),
    ],
)
def test_bad_value_names_key_value_and_what_is_allowed(
    overrides: dict, dotted: str, value: str, allowed: str
):
    message = problem(overrides)
    assert f"key '{dotted}' has value {value}" in message
    assert allowed in message


def test_all_problems_are_reported_at_once():
    message = problem({"train": {"holdout_fraction": 2, "detector": {"bogus": 1}}})
    assert "train.holdout_fraction" in message and "train.detector.bogus" in message


def test_bad_value_of_a_union_field_names_the_field_and_what_is_allowed():
    message = problem({"train": {"detector": {"latent_dim": "x"}}})
    assert "train.detector.latent_dim" in message
    assert "'x'" in message
    assert "'auto'" in message and "integer" in message


def test_union_field_error_names_the_plain_dotted_key():
    message = problem({"train": {"detector": {"latent_dim": "x"}}})
    assert "latent_dim.int" not in message
    assert "literal[" not in message


def test_yaml_dates_are_accepted_for_the_time_window(tmp_path: Path):
    path = write(
        tmp_path / "window.yaml",
        "train:\n  time_window_start: 2024-01-01\n  time_window_end: 2024-02-01T00:00:00Z\n",
    )
    train = load_settings([path], environ={}).train
    assert train.time_window_start is not None and train.time_window_start.year == 2024
    assert train.time_window_end is not None and train.time_window_end.month == 2


# -- layering -----------------------------------------------------------------------------
def test_later_file_wins_and_merges_deeply(tmp_path: Path):
    first = write(
        tmp_path / "a.yaml",
        "tracking:\n  experiment: first\n  registered_model: kept\n"
        "train:\n  detector:\n    beta: 2.0\n    patience: 3\n",
    )
    second = write(
        tmp_path / "b.yaml",
        "tracking:\n  experiment: second\ntrain:\n  detector:\n    beta: 0.5\n",
    )
    settings = load_settings([first, second], environ={})
    assert settings.tracking.experiment == "second"
    assert settings.tracking.registered_model == "kept"  # sibling keys survive the merge
    assert settings.train.detector.beta == 0.5
    assert settings.train.detector.patience == 3
    reversed_order = load_settings([second, first], environ={})
    assert reversed_order.tracking.experiment == "first"
    assert reversed_order.train.detector.beta == 2.0


def test_an_empty_file_is_an_empty_layer(tmp_path: Path):
    empty = write(tmp_path / "empty.yaml", "# nothing here\n")
    assert load_settings([empty], environ={}) == Settings()


def test_local_yaml_overrides_the_job_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write(tmp_path / "base.yaml", "score:\n  top_n: 1\n")
    write(tmp_path / "score.yaml", "score:\n  top_n: 2\n  batch_size: 7\n")
    write(tmp_path / "local.yaml", "score:\n  top_n: 3\n")
    monkeypatch.setattr(config_module, "CONFIG_DIR", tmp_path)
    score = load_settings(job="score", environ={}).score
    assert (score.top_n, score.batch_size) == (3, 7)


ENV_CASES = [
    ("VAE_ANOMALY_TRACKING_URI", ("tracking", "tracking_uri"), "http://tracking:5000"),
    ("MLFLOW_TRACKING_URI", ("tracking", "tracking_uri"), "http://mlflow:5000"),
    ("VAE_ANOMALY_TRAIN_DATA", ("train", "data_path"), "s3://bucket/train/"),
    ("VAE_ANOMALY_SCORE_INPUT", ("score", "input_path"), "s3://bucket/today/*.parquet"),
    ("VAE_ANOMALY_OUTPUT_DIR", ("score", "output_dir"), "/srv/scores"),
]


def _get(settings: Settings, path: tuple[str, str]) -> object:
    return getattr(getattr(settings, path[0]), path[1])


@pytest.mark.parametrize("variable, path, value", ENV_CASES)
def test_env_var_overrides_files(tmp_path: Path, variable: str, path: tuple, value: str):
    section, key = path
    layer = write(tmp_path / "layer.yaml", f"{section}:\n  {key}: from-file\n")
    assert _get(load_settings([layer], environ={}), path) == "from-file"
    assert _get(load_settings([layer], environ={variable: value}), path) == value


@pytest.mark.parametrize("variable, path, value", ENV_CASES)
def test_explicit_override_wins_over_env(variable: str, path: tuple, value: str):
    section, key = path
    settings = load_settings([], overrides={section: {key: "from-cli"}}, environ={variable: value})
    assert _get(settings, path) == "from-cli"


def test_vae_anomaly_tracking_uri_wins_over_mlflow_tracking_uri():
    settings = load_settings(
        [],
        environ={"MLFLOW_TRACKING_URI": "http://mlflow", "VAE_ANOMALY_TRACKING_URI": "http://vae"},
    )
    assert settings.tracking.tracking_uri == "http://vae"


def test_empty_env_var_is_ignored():
    settings = load_settings([], environ={"VAE_ANOMALY_TRACKING_URI": ""})
    assert settings.tracking.tracking_uri == Settings().tracking.tracking_uri


def test_environ_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VAE_ANOMALY_OUTPUT_DIR", "from-process-env")
    assert load_settings([]).score.output_dir == "from-process-env"
    assert load_settings([], environ={}).score.output_dir == Settings().score.output_dir


# -- bad files ----------------------------------------------------------------------------
def test_missing_file_is_named(tmp_path: Path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match="does not exist") as caught:
        load_settings([path], environ={})
    assert str(path) in str(caught.value)


def test_invalid_yaml_is_named(tmp_path: Path):
    path = write(tmp_path / "broken.yaml", "train:\n  key_columns: [a, b\n")
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        load_settings([path], environ={})
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_top_level_is_named(tmp_path: Path, text: str):
    path = write(tmp_path / "list.yaml", text)
    with pytest.raises(ConfigError, match="mapping") as caught:
        load_settings([path], environ={})
    assert str(path) in str(caught.value)


def test_python_object_tag_is_refused(tmp_path: Path):
    path = write(tmp_path / "evil.yaml", '!!python/object/apply:os.system ["echo hi"]\n')
    with pytest.raises(ConfigError) as caught:
        load_settings([path], environ={})
    assert str(path) in str(caught.value)


def test_python_object_tag_runs_nothing(tmp_path: Path):
    marker = tmp_path / "ran"
    path = write(
        tmp_path / "evil.yaml",
        f'tracking:\n  experiment: !!python/object/apply:os.system ["touch {marker}"]\n',
    )
    with pytest.raises(ConfigError):
        load_settings([path], environ={})
    assert not marker.exists()


# -- CLI ----------------------------------------------------------------------------------
def test_config_schema_command_prints_json(capsys: pytest.CaptureFixture[str]):
    assert cli.main(["config-schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"tracking", "train", "score"} <= set(schema["properties"])
    assert schema == json_schema()
    assert schema.get("additionalProperties") is False


@pytest.mark.parametrize("job", ["train", "score", "serve"])
def test_flow_command_with_unknown_key_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], job: str
):
    bad = write(tmp_path / "bad.yaml", "tracking:\n  experimnt: x\n")
    code = cli.main([job, "--config", str(bad)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "tracking.experimnt" in lines[0] and str(bad) in lines[0]


def test_flow_command_with_missing_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    code = cli.main(["score", "--config", str(tmp_path / "absent.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "absent.yaml" in err


# -- detector parameters ------------------------------------------------------------------
def test_estimator_params_build_a_matching_detector():
    settings = DetectorSettings()
    params = settings.estimator_params(["payment_id"])
    detector = VAEAnomalyDetector(**params)
    got = detector.get_params()
    assert {k: got[k] for k in params} == params
    assert got["key_columns"] == ("payment_id",)


def test_estimator_params_with_explicit_sizes():
    settings = DetectorSettings(
        latent_dim=3,
        hidden_sizes=[32, 16],
        max_epochs=5,
        batch_size=64,
        threshold_method="pot",
        random_state=None,
        n_models=2,
    )
    params = settings.estimator_params([])
    assert params["hidden_sizes"] == (32, 16)  # a tuple, as the estimator stores it
    detector = VAEAnomalyDetector(**params)
    got = detector.get_params()
    assert {k: got[k] for k in params} == params
    assert set(DetectorSettings.model_fields) | {"key_columns"} == set(params)


# -- the sensor section -------------------------------------------------------------------
def test_sensor_layer_validates_and_sets_the_split_timestamp(shipped_configs: Path):
    files = [SHIPPED / "base.yaml", SHIPPED / "train.yaml", SHIPPED / "sensor.yaml"]
    train = load_settings(files, environ={}).train
    assert train.sensor is not None and train.sensor.entity_columns == ["rig"]
    assert train.timestamp_column == "timestamp" == train.sensor.timestamp_column
    inherited = load_settings(
        [], environ={}, overrides={"train": {"sensor": {"timestamp_column": "ts"}}}
    ).train
    assert inherited.timestamp_column == "ts" and inherited.sensor.window_length == 20


def test_sensor_detector_scores_windows_with_the_gaussian_by_default(shipped_configs: Path):
    files = [SHIPPED / "base.yaml", SHIPPED / "train.yaml", SHIPPED / "sensor.yaml"]
    train = load_settings(files, environ={}).train
    assert train.detector.numeric_dof == 30.0  # the tabular default ...
    assert build_sensor_detector(train).detector_params["numeric_dof"] is None  # ... not here
    heavy = load_settings(
        [],
        environ={},
        overrides={"train": {"sensor": {"timestamp_column": "ts", "numeric_dof": 10}}},
    ).train
    assert build_sensor_detector(heavy).detector_params["numeric_dof"] == 10


def test_sensor_section_errors_name_the_key():
    with pytest.raises(ConfigError, match="alarm_k=3 must not exceed alarm_n=2"):
        load_settings(
            [],
            environ={},
            overrides={"train": {"sensor": {"timestamp_column": "ts", "alarm_k": 3, "alarm_n": 2}}},
        )
    with pytest.raises(ConfigError, match="differs from sensor.timestamp_column"):
        load_settings(
            [],
            environ={},
            overrides={
                "train": {"timestamp_column": "created_at", "sensor": {"timestamp_column": "ts"}}
            },
        )
    with pytest.raises(ConfigError, match="max_train_rows samples single rows"):
        load_settings(
            [],
            environ={},
            overrides={"train": {"max_train_rows": 1000, "sensor": {"timestamp_column": "ts"}}},
        )
    with pytest.raises(ConfigError, match="train.sensor.window_lenght"):
        load_settings(
            [],
            environ={},
            overrides={"train": {"sensor": {"timestamp_column": "ts", "window_lenght": 5}}},
        )

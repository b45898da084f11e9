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
from flows.config import (
    THRESHOLD_SETTINGS,
    ConfigError,
    DetectorSettings,
    IQRThreshold,
    Settings,
    check_applies,
    json_schema,
    load_settings,
    loading,
)
from flows.detectors import build_sensor_detector
from vae_core import SensorVAEDetector, VAEAnomalyDetector
from vae_core.errors import InputError
from vae_core.threshold import THRESHOLD_METHODS, THRESHOLD_RULES

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "configs"


@pytest.fixture
def shipped_configs(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default layers at the repository's configs/, whatever the working dir."""
    monkeypatch.setattr(loading, "CONFIG_DIR", SHIPPED)
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
    assert train.detector.threshold == IQRThreshold(factor=3.0)
    score = load_settings(job="score", environ={}).score
    assert score.model_uri == "models:/vae-anomaly@champion"
    assert score.numeric_errors == "quarantine"


def test_base_yaml_matches_the_model_defaults(shipped_configs: Path):
    """An installed CLI run outside the repository (no configs/) behaves the same."""
    assert load_settings([SHIPPED / "base.yaml"], environ={}) == Settings()
    assert load_settings([SHIPPED / "base.yaml"], environ={}).model_dump(exclude_unset=True) == {}


@pytest.mark.parametrize(
    "job, on_purpose",
    [
        ("train", {"train": {"key_columns": ["payment_id"], "timestamp_column": "created_at"}}),
        ("score", {}),
    ],
)
def test_layered_defaults_are_the_code_defaults_but_for_what_the_files_set(
    shipped_configs: Path, job: str, on_purpose: dict
):
    settings = load_settings(job=job, environ={})
    assert settings.model_dump(exclude_unset=True) == on_purpose
    assert settings == Settings.model_validate(on_purpose)


def test_detector_defaults_are_the_librarys():
    library = VAEAnomalyDetector().get_params()
    params = DetectorSettings().estimator_params([])
    differs = {k for k in params if params[k] != library[k]}
    assert differs == {"random_state"}  # jobs are reproducible by default
    assert DetectorSettings().random_state == 0 and library["random_state"] is None


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
    message = problem({"score": {"task_runner": "x"}})
    assert "score.task_runner" in message
    assert "'x'" in message
    for choice in ("local", "dask"):
        assert choice in message


def test_unknown_threshold_method_names_key_value_and_choices():
    message = problem({"train": {"detector": {"threshold": {"method": "x"}}}})
    assert "train.detector.threshold" in message
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
    monkeypatch.setattr(loading, "CONFIG_DIR", tmp_path)
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
    # A value every one of these keys accepts (a tracking URI must have a store's form).
    layer = write(tmp_path / "layer.yaml", f"{section}:\n  {key}: sqlite:///from-file.db\n")
    assert _get(load_settings([layer], environ={}), path) == "sqlite:///from-file.db"
    assert _get(load_settings([layer], environ={variable: value}), path) == value


@pytest.mark.parametrize("variable, path, value", ENV_CASES)
def test_explicit_override_wins_over_env(variable: str, path: tuple, value: str):
    section, key = path
    overrides = {section: {key: "sqlite:///from-cli.db"}}
    settings = load_settings([], overrides=overrides, environ={variable: value})
    assert _get(settings, path) == "sqlite:///from-cli.db"


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
        threshold={"method": "pot", "risk": 0.02},
        random_state=None,
        n_models=2,
    )
    params = settings.estimator_params([])
    assert params["hidden_sizes"] == (32, 16)  # a tuple, as the estimator stores it
    assert (params["threshold_method"], params["pot_risk"]) == ("pot", 0.02)
    detector = VAEAnomalyDetector(**params)
    got = detector.get_params()
    assert {k: got[k] for k in params} == params
    assert set(params) == set(got) - {"verbose"}  # every parameter but the log switch


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
    inner = build_sensor_detector(train).detector_params
    assert inner["numeric_dof"] is None  # ... not here
    fence = (inner["threshold_method"], inner["iqr_factor"], inner["iqr_min_alert_rate"])
    assert fence == ("iqr", 4.0, 0.0)
    heavy = load_settings(
        [],
        environ={},
        overrides={"train": {"sensor": {"timestamp_column": "ts", "numeric_dof": 10}}},
    ).train
    assert build_sensor_detector(heavy).detector_params["numeric_dof"] == 10


def test_sensor_window_scores_weigh_the_kl_as_the_loss_unless_set():
    def inner(**sensor: object) -> dict:
        overrides = {
            "train": {"detector": {"beta": 0.5}, "sensor": {"timestamp_column": "ts", **sensor}}
        }
        train = load_settings([], environ={}, overrides=overrides).train
        return build_sensor_detector(train).detector_params

    assert load_settings([], environ={}).train.detector.kl_weight == "auto"  # tabular
    assert inner()["kl_weight"] == 0.5
    assert inner(kl_weight="auto")["kl_weight"] == "auto"
    assert inner(kl_weight=2.0)["kl_weight"] == 2.0


@pytest.mark.parametrize("slow", ["auto", None, ["temp"]])
def test_sensor_slow_channels_reach_the_window_detector(slow):
    overrides = {"train": {"sensor": {"timestamp_column": "ts", "slow_channels": slow}}}
    train = load_settings([], environ={}, overrides=overrides).train
    assert build_sensor_detector(train).slow_channels == slow
    default = load_settings([], environ={}, overrides={"train": {"sensor": SENSOR}}).train
    assert default.sensor.slow_channels == "auto"


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


# -- the threshold rule -------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, flat",
    [
        ("{method: iqr, factor: 2.5}", {"threshold_method": "iqr", "iqr_factor": 2.5}),
        ("{method: contamination, rate: 0.02}", {"contamination": 0.02}),
        ("{method: fpr, rate: 0.005}", {"threshold_method": "fpr", "target_fpr": 0.005}),
        ("{method: pot, risk: 0.02, initial_quantile: 0.8}", {"pot_initial_quantile": 0.8}),
        ("{method: pot}", {"threshold_method": "pot", "pot_risk": 0.01}),
    ],
)
def test_threshold_in_a_file_reaches_the_detector(tmp_path: Path, text: str, flat: dict):
    path = write(tmp_path / "rule.yaml", f"train:\n  detector:\n    threshold: {text}\n")
    detector = load_settings([path], environ={}).train.detector
    got = VAEAnomalyDetector(**detector.estimator_params([])).get_params()
    assert {k: got[k] for k in flat} == flat
    assert got["threshold_method"] == detector.threshold.method


def test_threshold_settings_are_the_rules_with_their_bounds():
    assert tuple(THRESHOLD_SETTINGS) == THRESHOLD_METHODS
    defs = json_schema()["$defs"]
    for rule in THRESHOLD_RULES:
        model = THRESHOLD_SETTINGS[rule.method]
        assert model().rule() == rule()  # same defaults
        props = defs[model.__name__]["properties"]
        for name, (low, high) in rule.bounds.items():
            closed = "minimum" if name in rule.closed_low else "exclusiveMinimum"
            assert props[name][closed] == low
            assert props[name].get("exclusiveMaximum") == high


def test_threshold_out_of_its_rules_bounds_names_the_key():
    message = problem({"train": {"detector": {"threshold": {"method": "fpr", "rate": 0.7}}}})
    assert "key 'train.detector.threshold.rate' has value 0.7" in message
    message = problem({"train": {"detector": {"threshold": {"method": "iqr", "rate": 0.1}}}})
    assert "unknown key 'train.detector.threshold.rate'" in message


def test_a_later_layer_with_another_method_replaces_the_rule(tmp_path: Path):
    first = write(tmp_path / "a.yaml", "train:\n  detector:\n    threshold: {method: iqr}\n")
    second = write(
        tmp_path / "b.yaml", "train:\n  detector:\n    threshold: {method: fpr, rate: 0.02}\n"
    )
    third = write(tmp_path / "c.yaml", "train:\n  detector:\n    threshold: {rate: 0.03}\n")
    threshold = load_settings([first, second, third], environ={}).train.detector.threshold
    assert threshold.rule().estimator_params() == {"threshold_method": "fpr", "target_fpr": 0.03}


@pytest.mark.parametrize(
    "text, named, form",
    [
        (
            "detector:\n    iqr_factor: 2.0",
            "'train.detector.iqr_factor'",
            "{method: iqr, factor: 2.0, min_alert_rate: 0.05}",
        ),
        (
            "detector:\n    threshold_method: pot\n    pot_risk: 0.02",
            "'train.detector.threshold_method', 'train.detector.pot_risk'",
            "{method: pot, risk: 0.02, initial_quantile: 0.9}",
        ),
        ("detector:\n    contamination: 0.1", "'train.detector.contamination'", "{method: iqr"),
        (
            "sensor:\n    timestamp_column: ts\n    iqr_factor: 5.0",
            "'train.sensor.iqr_factor'",
            "train.sensor.threshold: {method: iqr, factor: 5.0, min_alert_rate: 0.0}",
        ),
    ],
)
def test_old_threshold_keys_name_the_key_and_show_the_new_form(
    tmp_path: Path, text: str, named: str, form: str
):
    path = write(tmp_path / "old.yaml", f"train:\n  {text}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings([path], environ={})
    message = str(caught.value)
    assert named in message and form in message and str(path) in message


def test_train_with_an_old_key_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    old = write(tmp_path / "old.yaml", "train:\n  detector:\n    target_fpr: 0.02\n")
    code = cli.main(["train", "--config", str(old)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "'train.detector.target_fpr'" in err
    assert "train.detector.threshold: {method: iqr, factor: 3.0, min_alert_rate: 0.05}" in err


# -- settings that do not apply to the model kind -----------------------------------------
SENSOR = {"timestamp_column": "ts"}


@pytest.mark.parametrize(
    "detector, key",
    [
        ({"threshold": {"method": "iqr", "factor": 3.0}}, "threshold"),
        ({"numeric_dof": 30.0}, "numeric_dof"),
        ({"kl_weight": 2.0}, "kl_weight"),
    ],
)
def test_detector_settings_a_sensor_model_replaces_are_refused(detector: dict, key: str):
    message = problem({"train": {"detector": detector, "sensor": SENSOR}})
    assert f"train.detector.{key} does not apply to a sensor model" in message
    assert f"set train.sensor.{key} instead" in message
    load_settings([], overrides={"train": {"detector": detector}}, environ={})  # tabular: fine


def test_sensor_threshold_reaches_the_window_detector():
    train = load_settings(
        [],
        environ={},
        overrides={
            "train": {
                "detector": {"patience": 3},  # other detector settings still apply
                "sensor": {**SENSOR, "threshold": {"method": "contamination", "rate": 0.02}},
            }
        },
    ).train
    inner = build_sensor_detector(train).detector_params
    assert (inner["threshold_method"], inner["contamination"]) == ("contamination", 0.02)
    assert inner["patience"] == 3


@pytest.mark.parametrize(
    "key, value",
    [("concurrency", 2), ("partition_rows", 1000), ("task_runner", "local"), ("dask_address", "x")],
)
def test_partition_settings_are_refused_for_a_sensor_model(key: str, value: object):
    score = load_settings([], overrides={"score": {key: value}}, environ={}).score
    check_applies(score, VAEAnomalyDetector())  # partitions apply to independent rows
    with pytest.raises(ConfigError) as caught:
        check_applies(score, SensorVAEDetector(timestamp_column="ts"))
    assert f"score.{key} does not apply" in str(caught.value)
    assert "scored as one stream" in str(caught.value)


def test_shipped_score_layers_apply_to_a_sensor_model(shipped_configs: Path):
    files = [SHIPPED / "base.yaml", SHIPPED / "score.yaml", SHIPPED / "sensor.yaml"]
    check_applies(load_settings(files, environ={}).score, SensorVAEDetector(timestamp_column="t"))


def test_every_setting_is_described():
    schema = json_schema()
    for name, model in schema["$defs"].items():
        for key, prop in model["properties"].items():
            assert prop.get("description"), f"{name}.{key}"
    assert all(prop.get("description") for prop in schema["properties"].values())


def test_the_config_dir_variable_names_the_layers(tmp_path: Path):
    write(tmp_path / "score.yaml", "score:\n  top_n: 4\n")
    environ = {"VAE_ANOMALY_CONFIG_DIR": str(tmp_path)}
    assert load_settings(job="score", environ=environ).score.top_n == 4


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.write_text("x")])
def test_a_config_dir_that_is_not_a_folder_is_refused(tmp_path: Path, make):
    target = tmp_path / "confs"
    make(target)
    with pytest.raises(ConfigError) as caught:
        load_settings(job="score", environ={"VAE_ANOMALY_CONFIG_DIR": str(target)})
    message = str(caught.value)
    assert message.startswith(f"VAE_ANOMALY_CONFIG_DIR={target} (from the environment)")
    assert ("does not exist" if not target.exists() else "is not a folder") in message

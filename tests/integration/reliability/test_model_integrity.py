"""Safe models: tamper-evident weights, nothing unpickled, fast and clear resolution failures,
and a training run that diverges leaves the registry as it was."""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest
from mlflow import MlflowClient
from reliability_helpers import (
    MODEL_NAME,
    Champion,
    assert_one_line_error,
    flow_settings,
    run_cli,
    write_config,
)

from flows.mlops.tracking import ModelResolutionError
from flows.score_flow import score_flow
from vae_core.errors import ModelFileError
from vae_core.persistence import MANIFEST_NAME, WEIGHTS_NAME

pytestmark = pytest.mark.usefixtures("prefect_server")

REPO = Path(__file__).resolve().parents[3]


# -- damaged model files ---------------------------------------------------------------------
def _flip_a_byte(model: Path) -> None:
    weights = model / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))


def _truncate(model: Path) -> None:
    weights = model / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:-100])


def _future_format(model: Path) -> None:
    manifest = json.loads((model / MANIFEST_NAME).read_text())
    manifest["format_version"] = 99
    (model / MANIFEST_NAME).write_text(json.dumps(manifest))


def _manifest_not_json(model: Path) -> None:
    (model / MANIFEST_NAME).write_text("{'pickled': True")


def _no_manifest(model: Path) -> None:
    (model / MANIFEST_NAME).unlink()


DAMAGE: dict[str, tuple[Callable[[Path], None], str, tuple[str, ...]]] = {
    # entry: (damage, file named in the error, fragments of the error)
    "tampered_weights": (
        _flip_a_byte,
        WEIGHTS_NAME,
        ("sha256", "truncated or modified", "re-train"),
    ),
    "truncated_weights": (_truncate, WEIGHTS_NAME, ("sha256", "truncated or modified")),
    "incompatible_format_version": (
        _future_format,
        MANIFEST_NAME,
        ("format_version 99", "reads version 1"),
    ),
    "manifest_not_json": (_manifest_not_json, MANIFEST_NAME, ("not valid JSON", "re-save")),
    "manifest_missing": (_no_manifest, "", ("is not a saved model", "model.json is missing")),
}


@pytest.mark.parametrize("entry", list(DAMAGE))
def test_score_file_refuses_a_damaged_model(
    capfd, tmp_path: Path, model_dir: Path, good_files, entry: str
) -> None:
    damage, culprit, fragments = DAMAGE[entry]
    model = Path(shutil.copytree(model_dir, tmp_path / "model"))
    damage(model)
    output = tmp_path / "scores.parquet"
    code, _, err = run_cli(
        capfd, "score-file", good_files["score"], "--model-dir", model, "--output", output
    )
    assert code == 2
    assert_one_line_error(err, [str(model / culprit).rstrip("/"), *fragments])
    assert not output.exists()


@pytest.fixture
def registered_weights(champion: Champion) -> Path:
    """The champion's weights file in the MLflow artifact store; restored after the test."""
    client = MlflowClient(champion.store, champion.store)
    root = client.get_model_version_download_uri(MODEL_NAME, "1")
    (weights,) = Path(urlparse(root).path).glob(f"**/detector/{WEIGHTS_NAME}")
    original = weights.read_bytes()
    yield weights
    weights.write_bytes(original)


@pytest.mark.parametrize("damage", [_flip_a_byte, _truncate], ids=["tampered", "truncated"])
def test_scoring_refuses_damaged_registered_weights(
    capfd, tmp_path: Path, champion: Champion, registered_weights: Path, damage
) -> None:
    damage(registered_weights.parent)
    settings = flow_settings(champion.store, champion.train, champion.score, tmp_path / "out")
    with pytest.raises(ModelFileError) as caught:
        score_flow(settings)
    message = str(caught.value)
    assert f"models:/{MODEL_NAME}/1" in message and champion.store in message
    assert f"detector/{WEIGHTS_NAME} has sha256" in message
    assert not (tmp_path / "out").exists()

    code, _, err = run_cli(capfd, "score", "--config", write_config(tmp_path / "c.yaml", settings))
    assert code == 2
    assert_one_line_error(err, [f"models:/{MODEL_NAME}/1", "truncated or modified"])


def test_the_registered_model_holds_no_pickle(champion: Champion) -> None:
    files = [p for p in champion.folder.glob("mlruns/**/*") if p.is_file()]
    assert any(p.name == WEIGHTS_NAME for p in files)
    assert [p for p in files if p.suffix in (".pkl", ".pickle", ".pt", ".pth", ".joblib")] == []


UNSAFE_CALLS = {
    r"\bpickle\.loads?\(": "pickle can run code while loading",
    r"\bcloudpickle\.": "pickle can run code while loading",
    r"\bjoblib\.load\(": "joblib unpickles",
    r"\byaml\.(?:unsafe_load|full_load)\(": "use yaml.safe_load",
    r"allow_pickle\s*=\s*True": "numpy would unpickle",
}
#: yaml.load is safe only with a loader derived from yaml.SafeLoader in the same file.
YAML_LOAD = re.compile(r"\byaml\.load\(([^)]*)\)")


def _unsafe_yaml_loads(text: str) -> list[str]:
    safe = set(re.findall(r"class (\w+)\(yaml\.SafeLoader\)", text)) | {"yaml.SafeLoader"}
    unsafe = []
    for call in YAML_LOAD.finditer(text):
        loader = re.search(r"Loader\s*=\s*([\w.]+)", call.group(1))
        if loader is None or loader.group(1) not in safe:
            unsafe.append(f"{call.group(0)} (use yaml.safe_load or a yaml.SafeLoader)")
    return unsafe


def test_no_code_path_unpickles_or_loads_yaml_unsafely() -> None:
    sources = sorted([*REPO.glob("vae_core/**/*.py"), *REPO.glob("flows/**/*.py")])
    assert len(sources) > 20
    problems = []
    for path in sources:
        text = path.read_text()
        for pattern, why in UNSAFE_CALLS.items():
            problems += [f"{path.name}: {m.group(0)} ({why})" for m in re.finditer(pattern, text)]
        problems += [f"{path.name}: {unsafe}" for unsafe in _unsafe_yaml_loads(text)]
        for call in re.finditer(r"\btorch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in call.group(1):
                problems.append(f"{path.name}: torch.load without weights_only=True")
    assert problems == []


def test_the_guard_catches_what_it_looks_for() -> None:
    sample = "data = pickle.load(fh)\nyaml.load(text)\ntorch.load(path)\n"
    assert re.search(r"\bpickle\.loads?\(", sample)
    assert _unsafe_yaml_loads(sample)
    assert _unsafe_yaml_loads("yaml.load(t, Loader=yaml.UnsafeLoader)")
    assert _unsafe_yaml_loads("class L(yaml.Loader): ...\nyaml.load(t, Loader=L)")
    assert not _unsafe_yaml_loads("class L(yaml.SafeLoader): ...\nyaml.load(t, Loader=L)")
    assert re.search(r"\byaml\.(?:unsafe_load|full_load)\(", "yaml.full_load(t)")
    assert "weights_only=True" not in re.search(r"\btorch\.load\(([^)]*)\)", sample).group(1)


# -- a model that cannot be resolved ---------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_missing_champion_alias_fails_naming_uri_and_alias(
    capfd, tmp_path: Path, champion: Champion
) -> None:
    settings = flow_settings(
        champion.store,
        champion.train,
        champion.score,
        tmp_path / "out",
        score={"model_uri": f"models:/{MODEL_NAME}@production"},
    )
    code, _, err = run_cli(capfd, "score", "--config", write_config(tmp_path / "c.yaml", settings))
    assert code == 2
    assert_one_line_error(
        err,
        [
            f"models:/{MODEL_NAME}@production",
            "alias @production",
            champion.store,
            "@champion -> v1",
        ],
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("how", ["flow", "command"])
def test_an_unreachable_registry_fails_fast_naming_it(
    capfd, tmp_path: Path, champion: Champion, how: str
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    settings = flow_settings(uri, champion.train, champion.score, tmp_path / "out")
    started = time.perf_counter()
    if how == "flow":
        with pytest.raises(ModelResolutionError) as caught:
            score_flow(settings)
        message = str(caught.value)
    else:
        code, _, err = run_cli(
            capfd, "score", "--config", write_config(tmp_path / "c.yaml", settings)
        )
        assert code == 2
        message = assert_one_line_error(err, [])
    assert time.perf_counter() - started < 30  # MLflow's default retries take minutes
    assert uri in message and "unreachable" in message and "@champion" in message
    assert not (tmp_path / "out").exists()


# -- a training run whose loss becomes non-finite --------------------------------------------
def test_a_diverging_training_run_fails_and_leaves_the_champion(
    capfd, tmp_path: Path, champion: Champion
) -> None:
    client = MlflowClient(champion.store, champion.store)
    versions = len(client.search_model_versions(f"name='{MODEL_NAME}'"))
    settings = flow_settings(
        champion.store,
        champion.train,
        champion.score,
        tmp_path / "out",
        train={"detector": {"learning_rate": 1e30, "max_epochs": 3}},
    )
    code, _, err = run_cli(capfd, "train", "--config", write_config(tmp_path / "t.yaml", settings))
    assert code == 1
    assert_one_line_error(err, ["NonFiniteLossError", "loss became nan", "Lower the learning rate"])
    assert len(client.search_model_versions(f"name='{MODEL_NAME}'")) == versions
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == "1"
    experiment = client.get_experiment_by_name("rel")
    (run,) = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    assert run.info.status == "FAILED" and run.info.run_name == "train"

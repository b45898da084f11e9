"""The ``vae-anomaly`` command line on real Parquet files: exit codes, messages, outputs.

Fits use ``--epochs 2 --threads 1`` on a few hundred rows: the point is the plumbing, the
detection quality is tested with the detector.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from flows import cli
from flows.demo_data import ANOMALY_KINDS, KEY_COLUMNS, make_demo_data, make_demo_frames
from flows.pipeline.score_file import score_file
from flows.pipeline.writers import write_parquet_atomic
from vae_core import VAEAnomalyDetector
from vae_core.io import read_table

REPO = Path(__file__).resolve().parents[4]
FAST = ["--epochs", "2", "--seed", "0"]
SCORE_COLUMNS = ["recon_error", "kl", "score", "is_anomaly"]


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = cli.main(["--threads", "1", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    train, score, _ = make_demo_frames(seed=1, n_train=400, n_score=120)
    return {
        "root": root,
        "train": write_parquet_atomic(train, root / "train.parquet"),
        "score": write_parquet_atomic(score, root / "score.parquet"),
    }


@pytest.fixture(scope="module")
def model_dir(demo_files: dict[str, Path]) -> Path:
    target = demo_files["root"] / "model"
    code = cli.main(
        ["--threads", "1", "fit", str(demo_files["train"]), "--model-dir", str(target)]
        + ["--key-column", "payment_id", *FAST]
    )
    assert code == 0
    return target


# -- help and version ------------------------------------------------------------------
def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    names = ("version", "fit", "score-file", "train", "score", "demo", "serve", "config-schema")
    for name in names:
        assert name in out


@pytest.mark.parametrize(
    "name", ["version", "fit", "score-file", "train", "score", "demo", "serve", "config-schema"]
)
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, _ = run(capsys, name, "--help")
    assert code == 0
    assert f"usage: vae-anomaly {name}" in out


def test_fit_help_documents_each_option(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "fit", "--help")
    for option in ("--model-dir", "--key-column", "--epochs", "--threshold-method", "--seed"):
        assert option in out
    assert "contamination,fpr,pot" in out


def test_version_prints_package_and_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    import vae_core

    code, out, _ = run(capsys, "version")
    assert code == 0
    assert f"vae-anomaly {vae_core.__version__}" in out
    assert f"torch {torch.__version__}" in out
    assert "CUDA available:" in out


def test_version_cuda_asks_torch(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "version", "--cuda")
    assert code == 0
    expected = "CUDA available: yes" if torch.cuda.is_available() else "CUDA available: no"
    assert expected in out


def test_version_without_torch_reads_the_torch_build(capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cli import library_commands

    build = library_commands._torch_build()
    assert build is not None
    assert (build["cuda"], build["hip"]) == (torch.version.cuda, torch.version.hip)
    code, out, _ = run(capsys, "version")
    assert code == 0
    if torch.version.cuda is None and torch.version.hip is None:
        assert "CUDA available: no (this torch build is CPU-only" in out
    if "CUDA available: no" in out:  # a "no" without torch must be torch's answer too
        assert not torch.cuda.is_available()


def test_version_on_a_cuda_build_looks_for_the_nvidia_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.cli import library_commands

    monkeypatch.setattr(library_commands, "_torch_build", lambda: {"cuda": "12.4", "hip": None})
    line = library_commands.cuda_without_torch()
    gpus = Path("/proc/driver/nvidia/gpus")
    if sys.platform == "linux" and not (gpus.is_dir() and any(gpus.iterdir())):
        assert line.startswith("CUDA available: no (no NVIDIA GPU driver loaded")
    else:
        assert line.startswith("CUDA available: not checked (torch built for CUDA 12.4")
        assert "version --cuda" in line


def test_threads_option_does_not_leak_out_of_main(capsys: pytest.CaptureFixture[str]) -> None:
    before = torch.get_num_threads()
    assert run(capsys, "version")[0] == 0
    assert torch.get_num_threads() == before


def test_thread_changes_are_undone_to_the_first_value() -> None:
    from flows.cli.registry import restore_torch_threads, set_torch_threads

    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    try:
        set_torch_threads(target)
        set_torch_threads(target)  # 'demo' after '--threads': still back to the first value
        assert torch.get_num_threads() == target
    finally:
        restore_torch_threads()
    assert torch.get_num_threads() == before


# -- usage errors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "required: COMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["fit", "x.parquet"], "--model-dir"),
        (["fit", "x.parquet", "--model-dir", "m", "--epochs", "0"], "not a positive integer"),
        (["fit", "x.parquet", "--model-dir", "m", "--threshold-method", "max"], "'max'"),
        (["fit", "x.parquet", "--model-dir", "m", "--contamination", "0.7"], "between 0 and 0.5"),
        (["score-file", "x.parquet", "--model-dir", "m"], "--output"),
        (["fit", "x.parquet", "--model-dir", "m", "--device", "tpu:x"], "not a torch device"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, fragment, "--help")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_a_missing_gpu_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "fit", "x.parquet", "--model-dir", "m", "--device", "cuda")
    assert code == 2
    assert_one_line_error(err, "0 CUDA device(s)")


# -- fit -------------------------------------------------------------------------------
def test_fit_saves_a_loadable_model_and_prints_a_summary(
    capsys: pytest.CaptureFixture[str], demo_files: dict[str, Path], tmp_path: Path
) -> None:
    target = tmp_path / "model"
    code, out, err = run(
        capsys, "fit", demo_files["train"], "--model-dir", target,
        "--key-column", "payment_id", "--threshold-method", "contamination",
        "--contamination", "0.1", *FAST,
    )  # fmt: skip
    assert code == 0, err
    # The model format's own files (the library's tests pin the full list).
    assert {"model.json", "weights.safetensors"} <= {p.name for p in target.iterdir()}
    assert "rows: 400" in out
    assert "carried: payment_id, created_at" in out
    assert "threshold:" in out and "contamination=0.1" in out
    assert "expected alert rate" in out
    assert "epochs: 2" in out and "seed 0" in out
    loaded = VAEAnomalyDetector.load(target)
    assert loaded.threshold_.method == "contamination"
    assert loaded.key_columns == ("payment_id",)


def test_fit_refuses_an_existing_model_before_training(
    capsys: pytest.CaptureFixture[str], demo_files: dict[str, Path], model_dir: Path
) -> None:
    before = (model_dir / "model.json").read_bytes()
    code, _, err = run(capsys, "fit", demo_files["train"], "--model-dir", model_dir, *FAST)
    assert code == 2
    assert_one_line_error(err, str(model_dir), "already exists", "--overwrite")
    assert (model_dir / "model.json").read_bytes() == before


def test_fit_overwrite_replaces_the_model(
    capsys: pytest.CaptureFixture[str], demo_files: dict[str, Path], tmp_path: Path
) -> None:
    target = tmp_path / "model"
    args = ["fit", demo_files["train"], "--model-dir", target, *FAST]
    assert run(capsys, *args)[0] == 0
    assert run(capsys, *args, "--overwrite", "--seed", "3")[0] == 0
    assert VAEAnomalyDetector.load(target).random_state_ == 3


def test_fit_on_a_missing_file_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.parquet"
    code, _, err = run(capsys, "fit", missing, "--model-dir", tmp_path / "m")
    assert code == 2
    assert_one_line_error(err, str(missing), "no such file")
    assert "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_fit_on_a_file_that_is_not_parquet_names_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "data.parquet"
    bad.write_text("id,value\n1,2\n")
    code, _, err = run(capsys, "fit", bad, "--model-dir", tmp_path / "m")
    assert code == 2
    assert_one_line_error(err, str(bad), "cannot be read as Parquet")


def test_fit_with_an_unknown_key_column_exits_2(
    capsys: pytest.CaptureFixture[str], demo_files: dict[str, Path], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, "fit", demo_files["train"], "--model-dir", tmp_path / "m",
        "--key-column", "customer", *FAST,
    )  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "'customer'")


def test_warnings_become_one_line_each(
    capsys: pytest.CaptureFixture[str], demo_files: dict[str, Path], tmp_path: Path
) -> None:
    frame = read_table(demo_files["train"]).assign(site="plant-1")
    data = write_parquet_atomic(frame, tmp_path / "constant.parquet")
    code, _, err = run(capsys, "fit", data, "--model-dir", tmp_path / "m", *FAST)
    assert code == 0
    (line,) = [line for line in err.splitlines() if "site" in line]
    assert line.startswith("warning: ")


def test_debug_prints_the_traceback_and_keeps_the_exit_code(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.parquet"
    for argv in (["--debug", "fit", missing], ["fit", missing, "--debug"]):
        code, _, err = run(capsys, *argv, "--model-dir", tmp_path / "m")
        assert code == 2
        assert "Traceback" in err
        assert err.strip().splitlines()[-1].startswith("error: ")


def test_unexpected_errors_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk\non fire")

    monkeypatch.setattr("vae_core.io.read_table", explode)
    code, _, err = run(capsys, "fit", tmp_path / "x.parquet", "--model-dir", tmp_path / "m")
    assert code == 1
    assert_one_line_error(err, "RuntimeError: disk on fire")


# -- score -----------------------------------------------------------------------------
def test_score_writes_keys_and_scores_in_input_order(
    capsys: pytest.CaptureFixture[str], demo_files: dict[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out" / "scores.parquet"
    code, out, err = run(
        capsys, "score-file", demo_files["score"], "--model-dir", model_dir,
        "--output", output, "--top", "4",
    )  # fmt: skip
    assert code == 0, err
    scores = read_table(output)
    source = read_table(demo_files["score"])
    assert list(scores.columns[:6]) == ["payment_id", "created_at", *SCORE_COLUMNS]
    assert {"top_feature_1", "top_feature_1_share", "top_feature_3"} <= set(scores.columns)
    assert scores["payment_id"].tolist() == source["payment_id"].tolist()
    pd.testing.assert_series_equal(scores["created_at"], source["created_at"])
    assert scores["score"].to_numpy() == pytest.approx(
        VAEAnomalyDetector.load(model_dir).decision_function(source), rel=1e-6
    )
    flagged = int(scores["is_anomaly"].sum())
    assert "rows scored: 120" in out
    assert f"rows flagged: {flagged}" in out
    top = scores.nlargest(4, "score")
    assert "top 4 rows by score" in out
    for payment_id, feature in zip(top["payment_id"], top["top_feature_1"], strict=True):
        assert payment_id in out and feature in out


def test_score_in_small_batches_matches_one_batch(
    capsys: pytest.CaptureFixture[str], demo_files: dict[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    outputs = []
    for size in ("7", "100000"):
        output = tmp_path / f"scores-{size}.parquet"
        argv = ["score-file", demo_files["score"], "--model-dir", model_dir, "--output", output]
        assert run(capsys, *argv, "--batch-size", size, "--top", "0")[0] == 0
        outputs.append(read_table(output))
    pd.testing.assert_frame_equal(outputs[0], outputs[1])


def test_score_file_summary_keeps_the_top_rows_with_their_output_positions(
    demo_files: dict[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    detector = VAEAnomalyDetector.load(model_dir)
    output = tmp_path / "scores.parquet"
    summary = score_file(detector, str(demo_files["score"]), output, top=5, batch_size=7)
    scores = read_table(output)
    assert summary.rows == len(scores) == 120
    assert summary.flagged == int(scores["is_anomaly"].sum())
    # Across 18 batches: the five highest scores of the file, each at its output row.
    expected = scores.nlargest(5, "score")
    assert summary.top["row"].tolist() == expected.index.tolist()
    assert summary.top["score"].tolist() == expected["score"].tolist()
    assert summary.top["payment_id"].tolist() == expected["payment_id"].tolist()


def test_score_reads_a_partitioned_directory(
    capsys: pytest.CaptureFixture[str], demo_files: dict[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    frame = read_table(demo_files["score"])
    for part, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
        write_parquet_atomic(frame.iloc[rows], tmp_path / "in" / f"part={part}" / "0.parquet")
    output = tmp_path / "scores.parquet"
    code, _, err = run(
        capsys, "score-file", tmp_path / "in", "--model-dir", model_dir, "--output", output
    )
    assert code == 0, err
    assert read_table(output)["payment_id"].tolist() == frame["payment_id"].tolist()


def test_score_with_a_missing_model_exits_2(
    capsys: pytest.CaptureFixture[str], demo_files: dict[str, Path], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, "score-file", demo_files["score"], "--model-dir", tmp_path / "none",
        "--output", tmp_path / "o.parquet",
    )  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "is not a saved model")


def test_score_with_a_missing_feature_exits_2_and_leaves_the_old_output(
    capsys: pytest.CaptureFixture[str], demo_files: dict[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "scores.parquet"
    output.write_bytes(b"previous results")
    data = read_table(demo_files["score"]).drop(columns=["fee"])
    source = write_parquet_atomic(data, tmp_path / "nofee.parquet")
    code, _, err = run(capsys, "score-file", source, "--model-dir", model_dir, "--output", output)
    assert code == 2
    assert_one_line_error(err, "['fee']", "nofee.parquet")
    assert output.read_bytes() == b"previous results"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nofee.parquet", "scores.parquet"]


def test_score_with_a_missing_key_column_exits_2(
    capsys: pytest.CaptureFixture[str], demo_files: dict[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    data = read_table(demo_files["score"]).drop(columns=["payment_id"])
    source = write_parquet_atomic(data, tmp_path / "nokey.parquet")
    code, _, err = run(
        capsys, "score-file", source, "--model-dir", model_dir, "--output", tmp_path / "o.parquet"
    )
    assert code == 2
    assert_one_line_error(err, "key column(s) ['payment_id']")


def test_score_refuses_to_overwrite_its_input(
    capsys: pytest.CaptureFixture[str], demo_files: dict[str, Path], model_dir: Path
) -> None:
    data = demo_files["score"]
    code, _, err = run(capsys, "score-file", data, "--model-dir", model_dir, "--output", data)
    assert code == 2
    assert_one_line_error(err, "is the input file")


@pytest.mark.parametrize("kind", ["device", "directory", "fifo"])
def test_score_refuses_an_output_that_is_not_a_regular_file(
    capsys: pytest.CaptureFixture[str],
    demo_files: dict[str, Path],
    model_dir: Path,
    tmp_path: Path,
    kind: str,
) -> None:
    output = tmp_path / "scores.parquet"
    if kind == "device":
        try:
            os.mknod(output, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs root")
    elif kind == "directory":
        output.mkdir()
    else:
        os.mkfifo(output)
    before = os.lstat(output)
    code, _, err = run(
        capsys, "score-file", demo_files["score"], "--model-dir", model_dir, "--output", output
    )
    assert code == 2
    assert_one_line_error(err, str(output), "Choose another output path")
    after = os.lstat(output)
    assert (after.st_mode, after.st_rdev, after.st_ino) == (
        before.st_mode, before.st_rdev, before.st_ino,
    )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet"]


# -- the installed entry point ---------------------------------------------------------
def test_module_entry_point_in_a_subprocess(tmp_path: Path) -> None:
    missing = tmp_path / "missing.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "fit", str(missing), "--model-dir",
         str(tmp_path / "m")],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    assert_one_line_error(result.stderr, str(missing))


# -- demo data and demo ----------------------------------------------------------------
def test_demo_top_rows_are_numbered_by_their_position_in_the_scores(tmp_path: Path) -> None:
    from flows.demo import top_rows

    scores = pd.DataFrame({"payment_id": ["a", "b", "c", "d"], "score": [1.0, 9.0, 3.0, 7.0]})
    write_parquet_atomic(scores, tmp_path / "scores.parquet")
    top = top_rows(tmp_path / "scores.parquet", 2)
    assert top["row"].tolist() == [1, 3] and top["payment_id"].tolist() == ["b", "d"]


def test_demo_data_is_deterministic_and_keeps_labels_apart() -> None:
    first = make_demo_data(seed=5, n_train=300, n_score=200)
    second = make_demo_data(seed=5, n_train=300, n_score=200)
    pd.testing.assert_frame_equal(first.train, second.train)
    pd.testing.assert_frame_equal(first.score, second.score)
    other = make_demo_data(seed=6, n_train=300, n_score=200)
    assert not first.score["amount"].equals(other.score["amount"])
    for frame in (first.train, first.score):
        assert not {"is_injected_anomaly", "anomaly_kind", "label"} & set(frame.columns)
    assert first.score_labels.index.equals(first.score.index)
    assert first.score_labels.sum() == 4  # 2% of 200
    assert set(first.score_kinds[first.score_labels == 1]) == set(ANOMALY_KINDS)


def test_demo_data_is_mixed_type_with_missing_values() -> None:
    train, score, labels = make_demo_frames(seed=0, n_train=500, n_score=100)
    assert train.columns.tolist() == score.columns.tolist()
    assert train[KEY_COLUMNS[0]].is_unique
    assert not set(train[KEY_COLUMNS[0]]) & set(score[KEY_COLUMNS[0]])
    assert pd.api.types.is_datetime64_any_dtype(train["created_at"])
    assert score["created_at"].min() > train["created_at"].max()
    numeric = train.select_dtypes("number").columns
    assert len(numeric) == 8
    assert train["card_present"].dtype == bool
    assert train[["channel", "merchant_category"]].map(type).isin([str, float]).all().all()
    assert train.isna().any().sum() >= 2
    assert np.corrcoef(train["amount"], train["avg_amount_30d"])[0, 1] > 0.5
    assert labels.isin([0, 1]).all()


def test_score_file_scores_a_sensor_model_as_one_ordered_stream(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from vae_core import SensorVAEDetector

    rng = np.random.default_rng(2)
    t = np.arange(300)
    frame = pd.DataFrame(
        {
            "ts": pd.Timestamp("2024-05-01") + pd.to_timedelta(t, unit="s"),
            "pressure": np.sin(t / 6) + 0.05 * rng.normal(size=len(t)),
            "flow": np.cos(t / 6) + 0.05 * rng.normal(size=len(t)),
        }
    )
    params = {"max_epochs": 3, "hidden_sizes": (8,), "latent_dim": 2, "random_state": 0}
    detector = SensorVAEDetector(timestamp_column="ts", window_length=5, detector_params=params)
    model_dir = detector.fit(frame.iloc[:200]).save(tmp_path / "sensor-model")
    source = write_parquet_atomic(frame.iloc[200:], tmp_path / "incoming.parquet")
    output = tmp_path / "scores.parquet"
    code, out, err = run(
        capsys, "score-file", source, "--model-dir", model_dir, "--output", output,
        "--batch-size", "16", "--top", "3",
    )  # fmt: skip
    assert code == 0, err
    scores = read_table(output)
    # Batches of 16 rows carry each window's tail: the scores equal one-piece scoring.
    expected = detector.score_frame(frame.iloc[200:].reset_index(drop=True))
    assert scores["window_status"].tolist() == expected["window_status"].tolist()
    np.testing.assert_allclose(scores["score"], expected["score"], rtol=1e-6)
    assert "rows scored: 100" in out and "top 3 rows by score" in out


def test_fit_passes_the_conformal_threshold_and_its_fdr(capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cli.library_commands import detector_from_args

    argv = ["fit", "data.parquet", "--model-dir", "m", "--threshold-method", "conformal"]
    detector = detector_from_args(cli.build_parser().parse_args([*argv, "--fdr", "0.2"]))
    assert (detector.threshold_method, detector.fdr) == ("conformal", 0.2)
    assert cli.main([*argv, "--fdr", "1"]) == 2
    assert "must lie strictly between 0 and 1" in capsys.readouterr().err


def test_fit_passes_the_fences_min_alert_rate(capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cli.library_commands import detector_from_args

    argv = ["fit", "data.parquet", "--model-dir", "m"]
    default = detector_from_args(cli.build_parser().parse_args(argv))
    assert (default.threshold_method, default.iqr_min_alert_rate) == ("iqr", 0.05)
    plain = detector_from_args(cli.build_parser().parse_args([*argv, "--min-alert-rate", "0"]))
    assert plain.iqr_min_alert_rate == 0.0
    assert cli.main([*argv, "--min-alert-rate", "0.5"]) == 2
    assert "must be at least 0 and below 0.5" in capsys.readouterr().err

"""Score fingerprints: proof that a code change leaves the detectors' output bit-identical.

Fits the detectors through the public API only (``VAEAnomalyDetector``, ``SensorVAEDetector``:
``fit``, ``decision_function``, ``predict``) on the public data sets, one seed, each set capped
in size so a run takes a few minutes on two cores with one torch thread. For every case it
records the SHA-256 of the float64 scores and of the flags on the test part, the threshold,
the number of rows and a few leading scores (for reading). The data preparation mirrors the
project detector's in the shared evaluation harnesses, so the cases are the benchmark cases,
only smaller:

- ``adbench/*`` and ``adbench-small/*`` (``bench_tabular.py``): label column dropped, float64
  features, a stratified subsample to ``--max-rows``, a stratified 70/30 split;
- ``nslkdd/kddtest_plus`` (``bench_mixed.py``): ``label`` dropped, attacks sampled to 5% of
  rows, then a stratified subsample to ``--max-rows`` and a stratified 70/30 split, raw frame;
- ``skab/valve1/*`` (``benchmarks/skab.py``): fit on the first 400 rows, the rest scored
  after them (the whole file is scored, the rows after the first 400 are fingerprinted).

The ``cli/*`` cases cover the command line's output file instead: the same train and test
parts of ``adbench/6_cardio``, ``nslkdd/kddtest_plus`` and ``adbench-small/43_WDBC``, with an
integer key column ``row_id`` (the row's number in the data file), are written to Parquet and
run through ``python -m flows.cli --threads 1 fit`` (``--key-column row_id --seed``) and
``score-file --top 5`` in a subprocess with this interpreter and environment. Recorded: the
output's column names and Arrow types in order, its row count, the null count and SHA-256 of
each column's values (``pandas.util.hash_pandas_object``, so values, not Parquet file bytes),
and the SHA-256 of the stdout of ``score-file`` (the counts, threshold and top table).

Before/after check: record the fingerprints of the old code from a worktree of the old commit,
then of the new code, and compare::

    git worktree add --detach ../before HEAD      # before the change
    PYTHONPATH=../before python benchmarks/score_fingerprint.py --out before.json
    python benchmarks/score_fingerprint.py --out after.json   # after the change
    python benchmarks/score_fingerprint.py --compare before.json after.json

``vae_core`` and ``flows`` are imported from whichever tree comes first on ``sys.path``, in
this process and in the command line's; the output records which ones were used.
``--compare`` prints SAME or DIFFERENT per case and exits 1 on any difference or on a case
missing from either file.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from sklearn.model_selection import train_test_split

SEED = 0
MAX_ROWS = 3000
TEST_SIZE = 0.3
ATTACK_RATE = 0.05
SKAB_TRAIN_ROWS = 400
SKAB_FILES = 2
LEADING = 5
KEY_COLUMN = "row_id"
CLI_TOP = 5
CLI_TABULAR = ("adbench/6_cardio", "adbench-small/43_WDBC")
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO_ROOT / ".." / "shared" / "datasets"
#: Fields compared by ``--compare``; the rest of a record is for reading.
COMPARED = (
    "scores_sha256",
    "predict_sha256",
    "predict_dtype",
    "threshold",
    "n_rows",
    "columns",
    "columns_sha256",
    "null_counts",
    "stdout_sha256",
)

Case = Callable[[], dict[str, Any]]


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def fingerprint(scores: np.ndarray, flags: np.ndarray, threshold: Any) -> dict[str, Any]:
    scores = np.asarray(scores, dtype=np.float64)
    flags = np.asarray(flags)
    return {
        "scores_sha256": sha256(scores),
        "predict_sha256": sha256(flags),
        "predict_dtype": str(flags.dtype),
        "threshold": repr(float(threshold)),
        "n_rows": int(len(scores)),
        "n_flagged": int(np.count_nonzero(flags)),
        "leading_scores": [repr(float(s)) for s in scores[:LEADING]],
    }


def cap_rows(X: Any, y: np.ndarray, max_rows: int, seed: int) -> tuple[Any, np.ndarray]:
    """Stratified subsample to ``max_rows``, as ``bench_tabular.py`` caps a large set."""
    if max_rows and len(X) > max_rows:
        X, _, y, _ = train_test_split(X, y, train_size=max_rows, stratify=y, random_state=seed)
    return X, y


def fit_and_score(train: Any, test: Any, seed: int) -> dict[str, Any]:
    from vae_core import VAEAnomalyDetector

    detector = VAEAnomalyDetector(random_state=seed).fit(train)
    scores = detector.decision_function(test)
    flags = detector.predict(test)
    return fingerprint(scores, flags, detector.threshold_.value)


Split = tuple[pd.DataFrame, pd.DataFrame]


def tabular_split(path: Path, max_rows: int, seed: int) -> Split:
    """Train and test parts of a labelled set: float64 features, the file's row numbers."""
    frame = pd.read_parquet(path)
    y = frame.pop("label").to_numpy()
    X = frame.astype(np.float64)
    X, y = cap_rows(X, y, max_rows, seed)
    train, test, _, _ = train_test_split(X, y, test_size=TEST_SIZE, stratify=y, random_state=seed)
    return train, test


def mixed_split(path: Path, max_rows: int, seed: int) -> Split:
    """Train and test parts of NSL-KDD: the raw mixed-type frame, attacks at 5%."""
    frame = pd.read_parquet(path).drop(columns=["label"])
    normal, attack = frame[frame["is_attack"] == 0], frame[frame["is_attack"] == 1]
    n_attack = int(round(len(normal) * ATTACK_RATE / (1 - ATTACK_RATE)))
    data = pd.concat([normal, attack.sample(n_attack, random_state=seed)])
    y = data.pop("is_attack").to_numpy()
    data, y = cap_rows(data, y, max_rows, seed)
    train, test, _, _ = train_test_split(
        data, y, test_size=TEST_SIZE, stratify=y, random_state=seed
    )
    return train, test


def tabular_case(path: Path, max_rows: int, seed: int) -> dict[str, Any]:
    train, test = tabular_split(path, max_rows, seed)
    return fit_and_score(train.to_numpy(), test.to_numpy(), seed)


def mixed_case(path: Path, max_rows: int, seed: int) -> dict[str, Any]:
    return fit_and_score(*mixed_split(path, max_rows, seed), seed)


def sensor_case(path: Path, seed: int) -> dict[str, Any]:
    from vae_core import SensorVAEDetector

    frame = pd.read_parquet(path).drop(columns=["anomaly", "changepoint"])
    detector = SensorVAEDetector(
        timestamp_column="timestamp",
        detector_params={"random_state": seed, "device": "cpu"},
    ).fit(frame.iloc[:SKAB_TRAIN_ROWS])
    scores = detector.decision_function(frame)[SKAB_TRAIN_ROWS:]
    flags = detector.predict(frame)[SKAB_TRAIN_ROWS:]
    return fingerprint(scores, flags, detector.threshold_.value)


def cli_environment() -> dict[str, str]:
    """The environment of this process, with ``PYTHONPATH`` absolute (the CLI runs elsewhere)."""
    env = dict(os.environ)
    entries = [e for e in env.get("PYTHONPATH", "").split(os.pathsep) if e]
    if entries:
        env["PYTHONPATH"] = os.pathsep.join(str(Path(e).resolve()) for e in entries)
    return env


def run_python(folder: Path, *args: str) -> str:
    """Run this interpreter with ``args`` in ``folder``; return stdout, raise on failure."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=folder,
        env=cli_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def run_cli(folder: Path, *args: str) -> str:
    return run_python(folder, "-m", "flows.cli", "--threads", "1", *args)


def with_key(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the integer key column first: the row's number in the data file."""
    keyed = frame.reset_index(drop=True)
    keyed.insert(0, KEY_COLUMN, frame.index.to_numpy(dtype=np.int64))
    return keyed


def column_sha256(column: pa.ChunkedArray) -> str:
    hashed = pd.util.hash_pandas_object(column.to_pandas(), index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def table_fingerprint(table: pa.Table, stdout: str) -> dict[str, Any]:
    return {
        "columns": [[field.name, str(field.type)] for field in table.schema],
        "columns_sha256": {name: column_sha256(table[name]) for name in table.column_names},
        "null_counts": {name: table[name].null_count for name in table.column_names},
        "n_rows": table.num_rows,
        "stdout_sha256": hashlib.sha256(stdout.encode()).hexdigest(),
        "stdout": stdout.splitlines(),
    }


def cli_fit(folder: Path, seed: int) -> None:
    model = ["--model-dir", "model", "--key-column", KEY_COLUMN, "--seed", str(seed)]
    run_cli(folder, "fit", "train.parquet", *model)


def cli_score(folder: Path) -> str:
    output = ["--output", "scores.parquet", "--top", str(CLI_TOP)]
    return run_cli(folder, "score-file", "test.parquet", "--model-dir", "model", *output)


def cli_case(split: Split, seed: int) -> dict[str, Any]:
    """Fit and score the split through the command line; fingerprint its output file."""
    train, test = split
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with_key(train).to_parquet(folder / "train.parquet", index=False)
        with_key(test).to_parquet(folder / "test.parquet", index=False)
        cli_fit(folder, seed)
        stdout = cli_score(folder)
        table = pq.read_table(folder / "scores.parquet")
    return table_fingerprint(table, stdout)


def parquet_files(folder: Path) -> list[Path]:
    return [Path(p) for p in sorted(glob.glob(os.path.join(folder, "*.parquet")))]


def cases(data_root: Path, max_rows: int, seed: int) -> Iterator[tuple[str, Case]]:
    for group in ("adbench", "adbench-small"):
        for path in parquet_files(data_root / group):
            yield f"{group}/{path.stem}", lambda p=path: tabular_case(p, max_rows, seed)
    nslkdd = data_root / "nslkdd" / "kddtest_plus.parquet"
    yield "nslkdd/kddtest_plus", lambda: mixed_case(nslkdd, max_rows, seed)
    for path in parquet_files(data_root / "skab" / "valve1")[:SKAB_FILES]:
        yield f"skab/valve1/{path.stem}", lambda p=path: sensor_case(p, seed)
    yield from cli_cases(data_root, max_rows, seed)


def cli_cases(data_root: Path, max_rows: int, seed: int) -> Iterator[tuple[str, Case]]:
    for name in CLI_TABULAR:
        path = data_root / f"{name}.parquet"
        yield f"cli/{name}", lambda p=path: cli_case(tabular_split(p, max_rows, seed), seed)
    nslkdd = data_root / "nslkdd" / "kddtest_plus.parquet"
    yield "cli/nslkdd/kddtest_plus", lambda: cli_case(mixed_split(nslkdd, max_rows, seed), seed)


def cli_module() -> str:
    """Where the command line's subprocess finds ``flows.cli``."""
    code = (
        "import importlib.util as u; s = u.find_spec('flows.cli'); "
        "print(s.origin or [*s.submodule_search_locations][0])"
    )
    with tempfile.TemporaryDirectory() as tmp:
        return str(Path(run_python(Path(tmp), "-c", code).strip()).resolve())


def environment() -> dict[str, str]:
    import flows
    import vae_core

    return {
        "vae_core": str(Path(vae_core.__file__).resolve().parent),
        "flows": str(Path(flows.__file__).resolve().parent),
        "flows.cli (subprocess)": cli_module(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def record(data_root: Path, max_rows: int, seed: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    env = environment()
    for package in ("vae_core", "flows", "flows.cli (subprocess)"):
        print(f"{package} from {env[package]}", file=sys.stderr)
    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    for name, run_case in cases(data_root, max_rows, seed):
        t0 = time.perf_counter()
        results[name] = run_case()
        seconds[name] = round(time.perf_counter() - t0, 2)
        digest = results[name].get("scores_sha256") or results[name]["stdout_sha256"]
        print(f"{name}: {digest[:16]} ({seconds[name]} s)", flush=True)
    total = round(time.perf_counter() - started, 1)
    settings = {"seed": seed, "max_rows": max_rows, "torch_threads": 1}
    return {
        "environment": env,
        "settings": settings,
        "cases": results,
        "seconds": seconds,
        "total_seconds": total,
    }


def compare(path_a: Path, path_b: Path) -> int:
    a = json.loads(path_a.read_text())["cases"]
    b = json.loads(path_b.read_text())["cases"]
    failed = False
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"MISSING    {name} (only in {path_a if name in a else path_b})")
            failed = True
            continue
        fields = [f for f in COMPARED if a[name].get(f) != b[name].get(f)]
        failed = failed or bool(fields)
        print(f"DIFFERENT  {name}: {', '.join(fields)}" if fields else f"SAME       {name}")
    print("all cases identical" if not failed else "fingerprints differ")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path, help="record fingerprints into this JSON file")
    mode.add_argument("--compare", nargs=2, type=Path, metavar=("A.json", "B.json"))
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--max-rows", type=int, default=MAX_ROWS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    result = record(args.data_root.resolve(), args.max_rows, args.seed)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(result['cases'])} cases in {result['total_seconds']} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

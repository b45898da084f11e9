"""The suite's guard fails the run, naming the test, when a test replaces /dev/null.

Run in a child pytest with the suite's own conftest, pointed at a device node of its own
inside the temporary folder, so the machine's /dev/null is never at risk.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

CONFTEST = Path(__file__).with_name("conftest.py")

DAMAGING_TESTS = """
import os
from pathlib import Path

import conftest

conftest._DEV_NULL = os.environ["FAKE_DEV_NULL"]


def test_harmless():
    pass


def test_replaces_the_device():
    staging = Path(conftest._DEV_NULL).with_name("staging")
    staging.write_bytes(b"tensors")
    os.replace(staging, conftest._DEV_NULL)


def test_after_the_damage():
    pass
"""


def test_a_replaced_device_fails_the_run_and_names_the_test(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "null"
    try:
        os.mknod(fake, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    monkeypatch.setenv("FAKE_DEV_NULL", str(fake))
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_damage=DAMAGING_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=3, errors=1)
    output = result.stdout.str()
    assert "test_damage.py::test_replaces_the_device" in output
    assert "is no longer a character device" in output
    assert "mknod -m 666" in output


def test_an_intact_device_passes(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_fine="def test_fine():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1)

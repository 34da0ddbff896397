"""The distribution: an sdist, a wheel built from it, and the suite run from a fresh install.

The editable install is what every other test runs against; this one checks
what users get from a package index.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (found,) = out.glob("storekit-*.whl")
    return found


def test_the_wheel_holds_the_three_packages_the_marker_and_the_entry_points(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "storekit/__init__.py",
        "storekit/py.typed",
        "storekit/plugin.py",
        "storekit/conformance/test_get.py",
        "storekit/conformance/linearizability.py",
        "storekit/reference/memory.py",
        "storekit/reference/cluster/__init__.py",
        "storekit/reference/cluster/wire.py",
        "storekit/reference/sticky/__init__.py",
        "storekit/reference/sticky/routing.py",
        "storekit/reference/redis/__init__.py",
        "storekit/testing/__init__.py",
        "storekit/codec/__init__.py",
        "storekit/codec/fast_json.py",
        "storekit/testing/redis_server.py",
        "storekit/ecosystem/cachelib.py",
        "storekit/flask.py",
        "storekit/django.py",
    ):
        assert expected in names
    assert not [n for n in names if n.startswith(("conformance/", "reference/", "tests/"))]
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[pytest11]\nstorekit = storekit.plugin" in text
    assert "storekit = storekit.cli:main" in text


def test_the_suite_runs_from_a_fresh_install_with_rewritten_asserts(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    work = tmp_path / "work"
    work.mkdir()
    (work / "pytest.ini").write_text("[pytest]\n")  # no configuration from the directories above
    (work / "conftest.py").write_text(
        "import sys\n"
        "def pytest_sessionfinish(session):\n"
        "    module = sys.modules['storekit.conformance.test_get']\n"
        "    print('REWRITTEN' if '@py_builtins' in vars(module) else 'NOT REWRITTEN')\n"
        "    print('FROM', module.__file__)\n"
    )
    result = subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-s",
         "--storekit=storekit.reference:MemoryStore", "--storekit-report=r.json"],
        cwd=work, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert "REWRITTEN" in result.stdout
    assert "NOT REWRITTEN" not in result.stdout
    assert f"FROM {env_dir}" in result.stdout
    report = json.loads((work / "r.json").read_text())
    assert report["targets"][0]["level"] == "full"
    cli = subprocess.run([str(env_dir / "bin" / "storekit"), "--help"], capture_output=True, text=True)
    assert cli.returncode == 0

"""The storekit command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def storekit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storekit", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_check_without_targets_verifies_the_reference_stores(tmp_path: Path) -> None:
    result = storekit("check", "--report", "r.json", "--badge", "b.svg", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    levels = {t["name"]: t["level"] for t in report["targets"]}
    assert levels == {
        "MemoryStore": "full",
        "AsyncMemoryStore": "full",
        "ClusterStore": "sticky",
        "AsyncClusterStore": "sticky",
    }
    assert (tmp_path / "b.svg").exists()
    assert "MemoryStore: level full" in result.stdout


def test_check_runs_a_store_beside_the_user_and_ignores_their_pytest_config(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    (tmp_path / "mystore.py").write_text("from storekit.reference import MemoryStore\nmake = MemoryStore\n")
    result = storekit("check", "mystore:make", "-k", "destroy", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "make: level" in result.stdout


def test_check_of_a_failing_store_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / "leaky.py").write_text(
        "from storekit.reference import MemoryStore\n"
        "class Leaky(MemoryStore):\n"
        "    def destroy(self, sid):\n"
        "        pass\n"
    )
    result = storekit("check", "leaky:Leaky", "-k", "test_get_after_destroy", cwd=tmp_path)
    assert result.returncode == 1
    assert "failed          destroy.1" in result.stdout


def test_a_bad_target_is_a_clear_error(tmp_path: Path) -> None:
    result = storekit("check", "not-a-target", cwd=tmp_path)
    assert result.returncode == 4
    assert "--storekit=not-a-target: expects 'module:attribute', got 'not-a-target'" in result.stderr


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = storekit("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "check" in result.stdout
    assert "serve" in result.stdout


ROOT = Path(__file__).resolve().parent.parent


def test_check_from_the_source_checkout_prints_no_assert_rewrite_warning() -> None:
    """The checkout holds storekit.egg-info; neither way of starting the command may make
    pytest take it for a second storekit whose asserts it cannot rewrite."""
    commands = [[str(Path(sys.executable).parent / "storekit")], [sys.executable, "-m", "storekit"]]
    for command in commands:
        result = subprocess.run(
            [*command, "check", "-k", "get_of_an_unknown"],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert "passed          get.1" in result.stdout
        assert "PytestAssertRewriteWarning" not in result.stdout + result.stderr, command


def test_check_finds_a_store_beside_the_user_without_putting_the_directory_first_on_sys_path(
    tmp_path: Path,
) -> None:
    (tmp_path / "multiprocess.py").write_text(
        "raise RuntimeError('a module beside the user shadowed one installed')\n"
    )
    (tmp_path / "nearby.py").write_text("from storekit.reference import MemoryStore\nmake = MemoryStore\n")
    script = Path(sys.executable).parent / "storekit"
    result = subprocess.run(
        [str(script), "check", "nearby:make", "-k", "test_get_after_destroy"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "passed          destroy.1" in result.stdout


def test_the_demo_is_described_for_what_it_is(tmp_path: Path) -> None:
    result = storekit("--help", cwd=tmp_path)
    assert "seed" not in result.stdout
    assert "/hello app on 4 sticky worker processes that share sessions" in " ".join(result.stdout.split())


def test_check_takes_a_known_failures_file_and_then_passes(tmp_path: Path) -> None:
    (tmp_path / "leaky.py").write_text(
        "from storekit.reference import MemoryStore\n"
        "class Leaky(MemoryStore):\n"
        "    def destroy(self, sid):\n"
        "        pass\n"
    )
    (tmp_path / "known.txt").write_text("destroy.1: destroy keeps the session, see issue 1\n")
    selected = ("-k", "test_destroy", "--report", "r.json")
    declared = storekit("check", "leaky:Leaky", *selected, "--known-failures", "known.txt", cwd=tmp_path)
    assert declared.returncode == 0, declared.stdout[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    verdicts = {c["id"]: c["verdict"] for c in report["targets"][0]["clauses"]}
    assert verdicts["destroy.1"] == "known"
    undeclared = storekit("check", "leaky:Leaky", *selected, cwd=tmp_path)
    assert undeclared.returncode == 1

"""threads.1 and process.2 have teeth: a store that tears a session, or whose length() or all()
walks its dict without the lock, fails threads.1; a shared store that tears fails process.2; the
reference stores pass both clauses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
TORN = ["Locked", "FieldByField", "AsyncFieldByField", "LocklessLength", "LocklessAll", "RacyCount"]
REFERENCE = ["MemoryStore", "AsyncMemoryStore", "cluster_target"]
Reports = dict[str, dict[str, dict[str, Any]]]


def run_suite(cwd: Path, targets: list[str], select: str) -> tuple[Reports, str]:
    """Run the selected clauses on ``targets`` in a fresh pytest: {target: {clause: row}}, output."""
    (cwd / "pytest.ini").write_text("[pytest]\n")  # no configuration from the directories above
    env = {key: value for key, value in os.environ.items() if key != "STOREKIT_TARGET"}
    env["PYTHONPATH"] = str(HERE)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-q"]
    command += [f"--storekit={target}" for target in targets]
    command += ["--storekit-report=r.json", "-k", select]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    report = json.loads((cwd / "r.json").read_text())
    rows = {target["name"]: {c["id"]: c for c in target["clauses"]} for target in report["targets"]}
    return rows, done.stdout + done.stderr


@pytest.fixture(scope="module")
def torn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Reports, str]:
    """threads.1 on every store of torn_stores, in one run."""
    return run_suite(tmp_path_factory.mktemp("torn"), [f"torn_stores:{name}" for name in TORN], "threads")


def failure(torn: tuple[Reports, str], name: str) -> str:
    rows, out = torn
    row = rows[name]["threads.1"]
    assert row["verdict"] == "failed", (name, row, out[-3000:])
    message: str = row["message"]
    assert message.startswith("threads.1: "), message
    return message


def test_the_locked_store_that_the_others_break_passes_threads_1(torn: tuple[Reports, str]) -> None:
    rows, out = torn
    assert rows["Locked"]["threads.1"]["verdict"] == "passed", out[-3000:]


@pytest.mark.parametrize("name", ["FieldByField", "AsyncFieldByField"])
def test_a_store_that_writes_field_by_field_fails_threads_1_with_a_torn_read(
    torn: tuple[Reports, str], name: str
) -> None:
    message = failure(torn, name)
    assert "torn read of sid 'sk-race-" in message, message
    assert "gave a session whose fields no one write made" in message, message
    assert "from client " in message, message  # the write that the fields it kept came from


@pytest.mark.parametrize(("name", "method"), [("LocklessLength", "length"), ("LocklessAll", "all")])
def test_a_store_that_walks_its_dict_without_the_lock_fails_threads_1(
    torn: tuple[Reports, str], name: str, method: str
) -> None:
    message = failure(torn, name)
    assert f"{method}() raised RuntimeError: dictionary" in message, message


def test_a_store_whose_count_loses_updates_fails_threads_1_with_a_miscount(torn: tuple[Reports, str]) -> None:
    message = failure(torn, "RacyCount")
    assert "length() returned " in message, message
    assert "sessions were live" in message, message


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Reports, str]:
    """threads.1 and process.2 on the reference stores and on a shared store that tears, in one run."""
    targets = [f"storekit.reference:{name}" for name in REFERENCE] + ["torn_stores:field_files"]
    return run_suite(tmp_path_factory.mktemp("processes"), targets, "threads or test_concurrent_processes")


def test_the_reference_stores_pass_threads_1_and_process_2(processes: tuple[Reports, str]) -> None:
    rows, out = processes
    verdicts = {
        name: (rows[name]["threads.1"]["verdict"], rows[name]["process.2"]["verdict"]) for name in rows
    }
    del verdicts["FieldFiles"]
    assert verdicts == {
        "MemoryStore": ("passed", "not applicable"),
        "AsyncMemoryStore": ("passed", "not applicable"),
        "ClusterStore": ("passed", "passed"),
    }, out[-3000:]


def test_a_shared_store_that_writes_file_by_file_fails_process_2_with_a_torn_read(
    processes: tuple[Reports, str],
) -> None:
    rows, out = processes
    row = rows["FieldFiles"]["process.2"]
    assert row["verdict"] == "failed", (row, out[-3000:])
    assert row["message"].startswith("process.2: "), row["message"]
    assert "torn read of sid 'sk-p2-" in row["message"], row["message"]

"""The process and errors clauses pass for a correct shared store and fail for broken ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import nothing_left_in_session

HERE = Path(__file__).parent
SHARED = ["process.1", "process.2", "process.3", "process.4", "errors.1"]


def run(
    tmp_path: Path, target: str, session: list[int] | None = None, select: str = "process or errors"
) -> tuple[dict[str, Any], str]:
    """Run the process and errors clauses on ``target``; its session id goes in ``session``."""
    env = {key: value for key, value in os.environ.items() if key != "STOREKIT_TARGET"}
    env["PYTHONPATH"] = str(HERE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--storekit=shared_stores:{target}",
         "--storekit-report=r.json", "-k", select],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    if session is not None:
        session.append(process.pid)
    out, _ = process.communicate(timeout=600)
    (report,) = json.loads((tmp_path / "r.json").read_text())["targets"]
    return {c["id"]: c for c in report["clauses"]}, out


def test_a_correct_shared_store_passes_every_process_clause_and_errors(tmp_path: Path) -> None:
    clauses, out = run(tmp_path, "file_store")
    assert {c: clauses[c]["verdict"] for c in SHARED} == dict.fromkeys(SHARED, "passed"), out[-3000:]


def test_a_process_local_store_that_claims_to_be_shared_fails_every_process_clause(tmp_path: Path) -> None:
    clauses, out = run(tmp_path, "local_claiming_shared")
    for clause in SHARED[:4]:
        assert clauses[clause]["verdict"] == "failed", (clause, clauses[clause])
        assert clause in clauses[clause]["message"]
    assert "after the parent's set" in clauses["process.1"]["message"]
    assert "no linearization for sid" in out
    assert clauses["errors.1"]["verdict"] == "not applicable"


def test_a_process_local_store_that_claims_to_be_shared_fails_round_robin_stickiness(tmp_path: Path) -> None:
    clauses, out = run(tmp_path, "local_claiming_shared", select="sticky")
    verdicts = {c: clauses[c]["verdict"] for c in ("sticky.1", "sticky.2", "sticky.3", "sticky.5")}
    assert verdicts == {
        "sticky.1": "passed",
        "sticky.2": "passed",
        "sticky.3": "failed",
        "sticky.5": "passed",
    }, out
    assert "a shared store lost the session across workers" in clauses["sticky.3"]["message"]


def test_a_store_that_answers_none_during_an_outage_fails_errors_1(tmp_path: Path) -> None:
    clauses, out = run(tmp_path, "none_on_outage")
    assert clauses["errors.1"]["verdict"] == "failed", out[-3000:]
    assert "get() during the outage returned None" in clauses["errors.1"]["message"]


@pytest.mark.parametrize("name", ["file_store", "local_claiming_shared"])
def test_no_worker_process_outlives_the_run(tmp_path: Path, name: str) -> None:
    session: list[int] = []
    run(tmp_path, name, session)
    assert session
    nothing_left_in_session(session[0])

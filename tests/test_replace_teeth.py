"""replace.4 and replace.5 have teeth: a replace that looks before it writes, so that a destroy in
between is undone, fails them, from threads, from tasks and from processes; a replace that looks and
writes in one step passes, and so do the reference stores."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from test_concurrency_teeth import Reports, run_suite

RACY = ["RacyReplace", "AsyncRacyReplace"]
PASSING = ["LockedReplace", "MemoryStore", "AsyncMemoryStore", "ClusterStore"]


@pytest.fixture(scope="module")
def replaced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Reports, str]:
    """The replace clauses on the toys and on the reference stores, in two runs side by side."""
    toys = [f"torn_stores:{name}" for name in ["LockedReplace", *RACY, "whole_files"]]
    reference = [
        f"storekit.reference:{name}" for name in ["MemoryStore", "AsyncMemoryStore", "cluster_target"]
    ]
    with ThreadPoolExecutor(2) as pool:
        runs = list(
            pool.map(
                lambda job: run_suite(tmp_path_factory.mktemp(f"replace{job[0]}"), job[1], "test_replace"),
                enumerate([toys, reference]),
            )
        )
    rows = {name: row for found, _ in runs for name, row in found.items()}
    return rows, "\n".join(out for _, out in runs)


@pytest.mark.parametrize("name", PASSING)
def test_an_atomic_replace_passes_every_replace_clause(replaced: tuple[Reports, str], name: str) -> None:
    rows, out = replaced
    verdicts = {clause: row["verdict"] for clause, row in rows[name].items() if clause.startswith("replace.")}
    shared = "passed" if name == "ClusterStore" else "not applicable"
    expected = {"replace.1": "passed", "replace.2": "passed", "replace.3": "passed", "replace.4": "passed"}
    if name != "LockedReplace":
        assert verdicts == {**expected, "replace.5": shared}, out[-3000:]
    else:  # a toy that keeps no expiry and writes what json.dumps takes: replace.4 is its business
        assert verdicts["replace.4"] == "passed", out[-3000:]


@pytest.mark.parametrize("name", RACY)
def test_a_replace_that_looks_then_writes_fails_replace_4(replaced: tuple[Reports, str], name: str) -> None:
    rows, out = replaced
    row = rows[name]["replace.4"]
    assert row["verdict"] == "failed", (row, out[-3000:])
    assert row["message"].startswith("replace.4: "), row["message"]
    assert "no linearization for sid 'sk-rp4-" in row["message"], row["message"]
    assert "replace(" in row["message"], row["message"]


def test_a_shared_replace_that_looks_then_writes_fails_replace_5(replaced: tuple[Reports, str]) -> None:
    rows, out = replaced
    row = rows["WholeFiles"]["replace.5"]
    assert row["verdict"] == "failed", (row, out[-3000:])
    assert "no linearization for sid 'sk-rp5-" in row["message"], row["message"]


def test_a_store_without_replace_keeps_its_level_and_shows_not_offered(replaced: tuple[Reports, str]) -> None:
    from storekit.report import levels

    verdicts = dict.fromkeys(("model",), "passed")
    from storekit.clauses import ADDED_OPTIONAL, CLAUSES

    for clause in CLAUSES:
        if clause.section in (
            "sid",
            "get",
            "set",
            "destroy",
            "ttl",
            "threads",
            "touch",
            "length",
            "clear",
            "all",
        ):
            verdicts[clause.id] = "passed"
        elif clause.section in ADDED_OPTIONAL:
            verdicts[clause.id] = "not offered"
    assert levels(verdicts)["json"] == "full"
    verdicts["replace.4"] = "failed"
    assert levels(verdicts)["json"] == "core"

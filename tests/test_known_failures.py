"""--storekit-known-failures: declared failures show as known, never raise a level, do not fail
the run, and a declaration that no longer fails is reported until it is removed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from storekit.known import KnownFailure, KnownFailures

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent
SET_TESTS = "test_a_second_set_replaces"
"""The test of set.1, which broken_stores.merging fails."""
DESTROY_TESTS = "test_get_after_destroy or test_destroy_of_an_unknown or test_destroy_removes"


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    monkeypatch.delenv("STOREKIT_TARGET", raising=False)
    return pytester


def run(suite: pytest.Pytester, known: str | None, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    if known is not None:
        (suite.path / "known.txt").write_text(known, encoding="utf-8")
        args = ("--storekit-known-failures=known.txt", *args)
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "--storekit-report=r.json", *args)
    path = suite.path / "r.json"
    return result, json.loads(path.read_text()) if path.exists() else {}


def clauses(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (target,) = report["targets"]
    return {c["id"]: c for c in target["clauses"]}


# the file


def test_a_file_gives_each_clause_its_reason_and_link() -> None:
    text = (
        "# what mystore fails\n"
        "\n"
        "get.2: pickles sessions https://example.org/issues/7\n"
        "   set.4 :  no limit, see the docs: http://example.org/a#b  \n"
        "model: breaks touch.1 (a reason may hold colons: like this)\n"
    )
    known = KnownFailures.parse(text, "known.txt")
    assert known.path == "known.txt"
    assert known.entries == {
        "get.2": KnownFailure("get.2", "pickles sessions", "https://example.org/issues/7", 3),
        "set.4": KnownFailure("set.4", "no limit, see the docs:", "http://example.org/a#b", 4),
        "model": KnownFailure("model", "breaks touch.1 (a reason may hold colons: like this)", None, 5),
    }
    assert known.get("get.1") is None
    assert KnownFailures.parse("", "empty.txt").entries == {}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("get.2 pickles\n", "line 1: expected 'CLAUSE: REASON [LINK]', got 'get.2 pickles'"),
        ("# ok\n: no clause\n", "line 2: expected 'CLAUSE: REASON [LINK]', got ': no clause'"),
        ("get 2: a space\n", "line 1: expected 'CLAUSE: REASON [LINK]', got 'get 2: a space'"),
        ("\n\nget.9: no such clause\n", "line 3: unknown clause 'get.9'; known: sid.1, "),
        ("get.2:\n", "line 1: get.2 has no reason; say why it fails: 'CLAUSE: REASON [LINK]'"),
        ("get.2: https://example.org/1\n", "line 1: get.2 has no reason"),
        ("get.2: one\nset.1: two\nget.2: again\n", "line 3: get.2 is declared twice (first on line 1)"),
    ],
)
def test_a_line_that_is_not_a_declaration_is_an_error_naming_it(text: str, says: str) -> None:
    with pytest.raises(ValueError) as raised:
        KnownFailures.parse(text, "known.txt")
    assert str(raised.value).startswith(says)


# the plugin


def test_a_known_failure_that_fails_is_known_and_does_not_fail_the_run(suite: pytest.Pytester) -> None:
    known = "set.1: merges on purpose https://example.org/issues/3\n"
    result, report = run(suite, known, "--storekit=broken_stores:merging", "-k", SET_TESTS)
    assert result.ret == 0, result.stdout.str()[-3000:]
    result.assert_outcomes(xfailed=1)
    found = clauses(report)["set.1"]
    assert found["verdict"] == "known"
    assert found["message"].startswith("set.1: get after two sets returned")
    assert found["known"] == {"reason": "merges on purpose", "link": "https://example.org/issues/3"}
    assert report["known_failures"] == "known.txt"
    result.stdout.fnmatch_lines(
        [
            "*storekit conformance (contract v2)*",
            "  known           set.1      set.1: get after two sets returned * "
            "[[]known: merges on purpose https://example.org/issues/3[]]",
            "*1 known*",
        ]
    )
    assert "storekit: known failures from known.txt: set.1" in result.stdout.str()


def test_without_the_file_the_same_failure_fails_the_run(suite: pytest.Pytester) -> None:
    result, report = run(suite, None, "--storekit=broken_stores:merging", "-k", SET_TESTS)
    assert result.ret == 1
    assert clauses(report)["set.1"]["verdict"] == "failed"
    assert "known" not in clauses(report)["set.1"]
    assert report["known_failures"] is None


def test_a_known_failure_that_passes_says_to_remove_it(suite: pytest.Pytester) -> None:
    known = "destroy.1: was flaky https://example.org/issues/9\n"
    result, report = run(suite, known, "--storekit=storekit.reference:MemoryStore", "-k", DESTROY_TESTS)
    assert result.ret == 0, result.stdout.str()[-3000:]
    result.assert_outcomes(passed=2, xpassed=1)
    found = clauses(report)["destroy.1"]
    assert found["verdict"] == "unexpected pass"
    assert found["message"] == "known failure destroy.1 passed: remove it from known.txt"
    assert found["known"]["reason"] == "was flaky"
    result.stdout.fnmatch_lines(
        [
            "  unexpected pass destroy.1  known failure destroy.1 passed: remove it from known.txt",
            "*1 unexpected pass*",
        ]
    )


def test_a_known_failure_that_passes_is_reported_even_under_strict_xfail(suite: pytest.Pytester) -> None:
    known = "destroy.1: was flaky\n"
    args = ("--storekit=storekit.reference:MemoryStore", "-k", DESTROY_TESTS, "-o", "xfail_strict=true")
    result, report = run(suite, known, *args)
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert clauses(report)["destroy.1"]["verdict"] == "unexpected pass"


def test_a_known_failure_never_raises_the_level_and_the_badge_counts_it(suite: pytest.Pytester) -> None:
    """merging fails set.1 only: declared, the run passes, but the level stays none."""
    known = "set.1: merges\n"
    selection = "not test_store_agrees and not test_sticky"
    result, report = run(
        suite, known, "--storekit=broken_stores:merging", "-k", selection, "--storekit-badge=b.svg"
    )
    assert result.ret == 0, result.stdout.str()[-3000:]
    (target,) = report["targets"]
    assert target["level"] == "none"
    assert target["levels"] == {"json": "none", "python-values": "none"}
    assert [c for c, v in clauses(report).items() if v["verdict"] in ("known", "failed")] == ["set.1"]
    endpoint = json.loads((suite.path / "b.json").read_text())
    assert endpoint == {
        "schemaVersion": 1,
        "label": "storekit v2",
        "message": "fails core (1 known)",
        "color": "red",
    }


def test_a_declared_clause_the_store_does_not_offer_stays_not_offered(suite: pytest.Pytester) -> None:
    result, report = run(suite, "touch.1: no touch yet\n", "--storekit=broken_stores:minimal", "-k", "touch")
    assert result.ret == 0, result.stdout.str()[-3000:]
    found = clauses(report)["touch.1"]
    assert (found["verdict"], found["known"]["reason"]) == ("not offered", "no touch yet")


@pytest.mark.parametrize(
    ("known", "says"),
    [
        ("# mine\nget.9: typo\n", "line 2: unknown clause 'get.9'; known: sid.1, "),
        ("get.2 pickles\n", "line 1: expected 'CLAUSE: REASON [LINK]', got 'get.2 pickles'"),
        ("get.2:   \n", "line 1: get.2 has no reason"),
        ("get.2: a\nget.2: b\n", "line 2: get.2 is declared twice (first on line 1)"),
        (b"get.2: caf\xe9\n", "not UTF-8 text"),
    ],
)
def test_a_bad_file_is_a_usage_error_naming_the_line(
    suite: pytest.Pytester, known: str | bytes, says: str
) -> None:
    path = suite.path / "known.txt"
    path.write_bytes(known if isinstance(known, bytes) else known.encode())
    result = suite.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--storekit=storekit.reference:MemoryStore",
        "--storekit-known-failures=known.txt",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (error,) = [line for line in result.stderr.lines if line.startswith("ERROR: ")]
    assert error.startswith(f"ERROR: --storekit-known-failures=known.txt: {says}")
    assert "Traceback" not in result.stderr.str()
    assert "passed" not in result.stdout.str()


def test_a_missing_file_is_a_usage_error(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--storekit=storekit.reference:MemoryStore",
        "--storekit-known-failures=nope.txt",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--storekit-known-failures=nope.txt: no such file" in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_the_file_without_a_target_is_a_usage_error(suite: pytest.Pytester) -> None:
    (suite.path / "known.txt").write_text("get.2: x\n")
    suite.makepyfile(test_app="def test_app():\n    pass\n")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "--storekit-known-failures=known.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--storekit-known-failures=known.txt needs a target: name one with --storekit=MODULE:ATTR" in (
        result.stderr.str()
    )

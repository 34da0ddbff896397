"""Verdicts and levels, from outcomes alone."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from storekit import Target
from storekit import __all__ as exported
from storekit.clauses import CLAUSES, CONTRACT, LEVELS, by_id
from storekit.known import KnownFailures
from storekit.report import Outcome, Results


def results_for(target: Target, outcomes: dict[str, str]) -> Results:
    """Every clause passes unless ``outcomes`` says otherwise."""
    results = Results([target])
    for clause in CLAUSES:
        if clause.section in ("process", "sticky", "errors") and not target.shared:
            continue
        results.collected(target.name, clause.id)
        kind, _, message = outcomes.get(clause.id, "passed").partition(":")
        results.add(target.name, clause.id, Outcome(f"node-{clause.id}", kind, message.strip()))
    return results


def local() -> Target:
    return Target(dict, name="local")


def test_everything_passing_in_a_local_store_is_level_full() -> None:
    assert results_for(local(), {}).level(local()) == "full"


@pytest.mark.parametrize(
    ("outcomes", "level"),
    [
        ({"touch.1": "not offered: no touch"}, "core"),
        ({"length.1": "failed: wrong"}, "core"),
        ({"get.1": "failed: wrong"}, "none"),
        ({"threads.1": "skipped: depends on get.2"}, "none"),
        ({"clear.3": "not applicable: no namespaces"}, "full"),
    ],
)
def test_the_level_stops_at_the_first_section_that_does_not_hold(
    outcomes: dict[str, str], level: str
) -> None:
    assert results_for(local(), outcomes).level(local()) == level


def test_shared_and_sticky_need_their_clauses_passed_not_waived() -> None:
    shared = Target(dict, name="shared", shared=True)
    assert results_for(shared, {}).level(shared) == "sticky"
    assert results_for(shared, {"sticky.2": "failed: lost"}).level(shared) == "shared"
    assert results_for(shared, {"process.2": "failed: stale"}).level(shared) == "full"
    assert results_for(local(), {}).level(local()) == "full"  # not shared: process is not applicable


def test_a_failing_model_holds_the_target_below_core() -> None:
    results = results_for(local(), {})
    results.collected("local", "model")
    results.add("local", "model", Outcome("node-model", "failed", "get.2: wrong"))
    assert results.level(local()) == "none"


def test_a_failure_wins_over_passes_and_names_its_clause() -> None:
    results = Results([local()])
    results.collected("local", "set.2")
    results.add("local", "set.2", Outcome("a", "passed"))
    results.add("local", "set.2", Outcome("b", "failed", "TypeError: boom"))
    (verdict,) = [v for v in results.verdicts(local()) if v.clause == "set.2"]
    assert verdict.verdict == "failed"
    assert verdict.message == "set.2: TypeError: boom"


def test_clauses_nobody_ran_say_why() -> None:
    results = Results([local()])
    results.collected("local", "get.1")
    results.deselected("local", "get.1")
    found = {v.clause: v for v in results.verdicts(local())}
    assert found["get.1"].verdict == "skipped"
    assert found["process.1"].verdict == "not applicable"
    assert "not shared" in found["process.1"].message
    assert "outage hook" in found["errors.1"].message


def test_the_badge_shows_the_lowest_level_of_all_targets(tmp_path: Path) -> None:
    full, core = Target(dict, name="a"), Target(dict, name="b")
    results = Results([full, core])
    for target, outcomes in ((full, {}), (core, {"all.1": "not offered: none"})):
        for name, per in results_for(target, outcomes)._outcomes[target.name].items():
            for outcome in per:
                results.add(target.name, name, outcome)
    results.write_badge(tmp_path / "badge.svg")
    assert (tmp_path / "badge.json").read_text().count('"core"') == 1


def test_the_catalogue_is_consistent() -> None:
    ids = [c.id for c in CLAUSES]
    assert len(ids) == len(set(ids))
    assert {section for _, sections in LEVELS for section in sections} <= {c.section for c in CLAUSES}
    assert by_id("get.1").summary
    with pytest.raises(KeyError, match=r"unknown clause 'get\.9'"):
        by_id("get.9")


def test_the_public_names_are_sorted_and_importable() -> None:
    import storekit

    assert exported == sorted(exported)
    for name in exported:
        assert getattr(storekit, name) is not None


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"ttl_resolution": -1}, "ttl_resolution"),
        ({"default_ttl": 0}, "default_ttl"),
        ({"max_session_bytes": 0}, "max_session_bytes"),
    ],
)
def test_a_target_refuses_nonsense(kwargs: dict[str, float], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Target(dict, **kwargs)  # type: ignore[arg-type]


def test_a_target_is_named_after_its_factory() -> None:
    assert Target(dict).name == "dict"
    assert Target.of(Target(dict, name="x")).name == "x"
    with pytest.raises(TypeError, match="zero-argument callable"):
        Target.of(42)


def report_of(when: str, outcome: str, longrepr: object = None, **properties: str) -> SimpleNamespace:
    """What pytest hands storekit.suite: a test report, reduced to what Outcome reads."""
    return SimpleNamespace(
        nodeid="storekit/x::test_x[t]",
        when=when,
        failed=outcome == "failed",
        skipped=outcome == "skipped",
        longrepr=longrepr,
        user_properties=list(properties.items()),
    )


def test_a_skip_verdict_is_read_from_data_never_from_the_message() -> None:
    words = ("f.py", 1, "Skipped: not offered: store has no touch(); touch is recommended")
    plain = Outcome.from_report(report_of("call", "skipped", words))
    assert plain == Outcome(
        "storekit/x::test_x[t]", "skipped", "not offered: store has no touch(); touch is recommended"
    )
    data = report_of("call", "skipped", words, storekit_verdict="not offered", storekit_reason="no touch()")
    assert Outcome.from_report(data) == Outcome("storekit/x::test_x[t]", "not offered", "no touch()")
    setup = report_of(
        "setup", "skipped", ("f.py", 1, "x"), storekit_verdict="not applicable", storekit_reason="r"
    )
    assert Outcome.from_report(setup) == Outcome("storekit/x::test_x[t]", "not applicable", "r")
    assert Outcome.from_report(report_of("setup", "passed")) is None
    info = report_of("call", "passed", storekit_info="needs sticky routing")
    assert Outcome.from_report(info) == Outcome("storekit/x::test_x[t]", "info", "needs sticky routing")


def test_the_suites_skips_carry_their_kind() -> None:
    from storekit.conformance._support import Skip, depends, not_applicable, not_offered

    with pytest.raises(Skip) as offered:
        not_offered("touch")
    assert (offered.value.kind, offered.value.reason) == (
        "not offered",
        "store has no touch(); touch is recommended",
    )
    assert isinstance(offered.value, pytest.skip.Exception)
    with pytest.raises(Skip) as applicable:
        not_applicable("the target is not shared")
    assert (applicable.value.kind, applicable.value.reason) == ("not applicable", "the target is not shared")
    with pytest.raises(Skip) as moot:
        depends(False, "get.1", "get returned {}")
    assert moot.value.kind == "skipped"
    assert moot.value.depends_on == "get.1"
    assert moot.value.reason == "depends on get.1, which does not hold here: get returned {}"


def test_no_module_reads_a_verdict_from_message_text() -> None:
    root = Path(__file__).resolve().parent.parent
    for path in [*root.joinpath("storekit").glob("*.py"), *root.joinpath("conformance").glob("*.py")]:
        text = path.read_text()
        for prefix in ('"not offered: "', '"not applicable: "', '"depends on"', '"info: "'):
            assert prefix not in text, f"{path.name} spells the message prefix {prefix}"


def test_the_verdicts_table_gives_every_reason_the_report_writes_for_a_clause_that_did_not_run() -> None:
    contract = (Path(__file__).resolve().parent.parent / "docs" / "contract.md").read_text()
    verdicts = contract[contract.index("## Verdicts") : contract.index("## The report")]
    shared, outage = Target(dict, name="s", shared=True), Target(dict, name="o")
    results = Results([shared, outage])
    results.collected("s", "get.2")
    results.deselected("s", "get.1")
    reasons = {
        results._unrun(outage, "process.1")[1],
        results._unrun(outage, "errors.1")[1],
        results._unrun(shared, "get.1")[1],
        results._unrun(shared, "get.2")[1],
        results._unrun(shared, "get.3")[1],
    }
    assert len(reasons) == 5
    missing = [reason for reason in reasons if reason not in verdicts]
    assert missing == []
    assert "no check for it" not in verdicts  # every section has its checks now, sticky included


def test_an_xfailed_report_is_a_failure_of_its_clause() -> None:
    """The tests of a declared known failure are xfail: to their clause, a failure is a failure."""
    crash = SimpleNamespace(reprcrash=SimpleNamespace(message="AssertionError: set.1: merged"))
    xfailed = report_of("call", "skipped", crash)
    xfailed.wasxfail = "known failure set.1: merges"
    assert Outcome.from_report(xfailed) == Outcome("storekit/x::test_x[t]", "failed", "set.1: merged")
    xpassed = report_of("call", "passed")
    xpassed.wasxfail = "known failure set.1: merges"
    assert Outcome.from_report(xpassed) == Outcome("storekit/x::test_x[t]", "passed", "")


def test_a_declared_clause_is_known_when_it_fails_and_an_unexpected_pass_when_it_holds() -> None:
    known = KnownFailures.parse(
        "set.1: merges https://example.org/1\nget.1: flaky\nall.1: info\nprocess.1: n/a\n", "k.txt"
    )
    results = _with_known(
        results_for(local(), {"set.1": "failed: set.1: merged", "all.1": "info: counted"}), known
    )
    found = {v.clause: v for v in results.verdicts(local())}
    assert (found["set.1"].verdict, found["set.1"].message) == ("known", "set.1: merged")
    assert found["set.1"].shown() == "set.1: merged [known: merges https://example.org/1]"
    assert found["get.1"].verdict == "unexpected pass"
    assert found["get.1"].message == "known failure get.1 passed: remove it from k.txt"
    assert found["get.1"].shown() == found["get.1"].message
    assert found["all.1"].verdict == "unexpected pass"  # info holds, as passed does
    assert (found["process.1"].verdict, found["process.1"].shown()) == (
        "not applicable",
        found["process.1"].message + " [known: n/a]",
    )
    assert found["get.2"].known is None
    assert results.levels(local()) == {"json": "none", "python-values": "none"}
    table = results.table()
    assert table[0] == "local: level none; python-values: none"
    assert "1 known, 2 unexpected pass" in table[-1]
    data = results.as_json()
    assert data["known_failures"] == "k.txt"
    clause = next(c for c in data["targets"][0]["clauses"] if c["id"] == "set.1")
    assert clause == {
        "id": "set.1",
        "verdict": "known",
        "message": "set.1: merged",
        "known": {"reason": "merges", "link": "https://example.org/1"},
    }


def _with_known(results: Results, known: KnownFailures) -> Results:
    """``results`` again, reading its outcomes with ``known`` declared."""
    again = Results(results.targets, known)
    for target, clauses in results._outcomes.items():
        for clause, outcomes in clauses.items():
            again.collected(target, clause)
            for outcome in outcomes:
                again.add(target, clause, outcome)
    return again


def test_the_report_names_the_contract_version() -> None:
    data = results_for(local(), {}).as_json()
    assert data["contract"] == CONTRACT
    assert data["known_failures"] is None
    assert data["targets"][0]["levels"] == {"json": "full", "python-values": "full"}
    assert results_for(local(), {}).title() == f"storekit conformance (contract v{CONTRACT})"

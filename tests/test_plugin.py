"""The pytest plugin, run for real against stores written to break one clause each."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import broken_stores
import pytest

from storekit.clauses import CLAUSES, CONTRACT
from storekit.conformance._support import NAMESPACE_PATTERN
from storekit.target import Target

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent
DESTROY_TESTS = "test_get_after_destroy or test_destroy_of_an_unknown or test_destroy_removes"
"""The three tests of section destroy."""
CATALOGUE = ["correct", "replacing", "renewing", "minimal", *broken_stores.BROKEN]
SHIELDS_KEYS = {
    "schemaVersion", "label", "message", "color", "labelColor", "isError", "namedLogo",
    "logoSvg", "logoColor", "logoWidth", "style", "cacheSeconds",
}  # fmt: skip


def run_suite(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run pytest with the plugin in a fresh process, as a store author would."""
    (cwd / "pytest.ini").write_text("[pytest]\n")  # no configuration from the directories above
    full_env = {key: value for key, value in os.environ.items() if key != "STOREKIT_TARGET"}
    full_env.update({"PYTHONPATH": str(HERE), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def verdicts(report: dict[str, Any], name: str) -> dict[str, str]:
    (target,) = [t for t in report["targets"] if t["name"] == name]
    return {clause["id"]: clause["verdict"] for clause in target["clauses"]}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One suite run per half of the catalogue, side by side: (report, output)."""
    halves = [CATALOGUE[::2], CATALOGUE[1::2]]
    runs = []
    for index, names in enumerate(halves):
        cwd = tmp_path_factory.mktemp(f"catalogue{index}")
        (cwd / "pytest.ini").write_text("[pytest]\n")
        args = [f"--storekit=broken_stores:{name}" for name in names]
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
        command += ["--storekit-report=report.json", "-k", "not test_store_agrees"]
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        env.pop("STOREKIT_TARGET", None)
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        runs.append((cwd, process))
    merged: dict[str, Any] = {"targets": []}
    output = ""
    for cwd, process in runs:
        out, _ = process.communicate(timeout=600)
        output += out.decode()
        merged["targets"] += json.loads((cwd / "report.json").read_text())["targets"]
    return {"report": merged, "output": output}


@pytest.mark.parametrize("name", list(broken_stores.BROKEN))
def test_a_broken_store_fails_exactly_the_clause_it_breaks(catalogue: dict[str, Any], name: str) -> None:
    clause, _ = broken_stores.BROKEN[name]
    found = verdicts(catalogue["report"], name)
    failed = sorted(c for c, verdict in found.items() if verdict == "failed")
    assert failed == [clause], f"{name} should fail only {clause}; failed {failed}"
    (target,) = [t for t in catalogue["report"]["targets"] if t["name"] == name]
    message = next(c["message"] for c in target["clauses"] if c["id"] == clause)
    assert clause in message, f"the failure message should name the clause: {message!r}"


def test_every_clause_of_the_single_process_sections_has_a_broken_store() -> None:
    broken = {clause for clause, _ in broken_stores.BROKEN.values()}
    single_process = {c.id for c in CLAUSES if c.section not in ("process", "sticky", "errors")}
    single_process.discard("replace.5")  # from processes: tests/test_replace_teeth.py breaks it
    assert single_process <= broken


def test_a_correct_store_reaches_full(catalogue: dict[str, Any]) -> None:
    (target,) = [t for t in catalogue["report"]["targets"] if t["name"] == "correct"]
    assert target["level"] == "full"
    rows = [c for c in target["clauses"] if c["id"] != "model"]  # the model is deselected here
    assert not [c for c in rows if c["verdict"] in ("failed", "skipped")]


def test_a_correct_replace_passes_its_clauses_and_reaches_full(catalogue: dict[str, Any]) -> None:
    found = verdicts(catalogue["report"], "replacing")
    assert [found[f"replace.{n}"] for n in range(1, 6)] == ["passed"] * 4 + ["not applicable"]
    (target,) = [t for t in catalogue["report"]["targets"] if t["name"] == "replacing"]
    assert target["level"] == "full"


def test_a_correct_renew_passes_its_clauses_and_reaches_full(catalogue: dict[str, Any]) -> None:
    found = verdicts(catalogue["report"], "renewing")
    assert [found[f"renew.{n}"] for n in range(1, 4)] == ["passed"] * 3
    (target,) = [t for t in catalogue["report"]["targets"] if t["name"] == "renewing"]
    assert target["level"] == "full"


def test_a_store_without_optional_methods_is_not_offered_and_reaches_core(catalogue: dict[str, Any]) -> None:
    found = verdicts(catalogue["report"], "minimal")
    optional = {c.id for c in CLAUSES if c.section in ("touch", "length", "clear", "all")}
    assert {found[c] for c in optional} == {"not offered"}
    assert "failed" not in found.values()
    (target,) = [t for t in catalogue["report"]["targets"] if t["name"] == "minimal"]
    assert target["level"] == "core"


def test_the_report_names_each_clause_once_with_a_known_verdict(catalogue: dict[str, Any]) -> None:
    for target in catalogue["report"]["targets"]:
        ids = [c["id"] for c in target["clauses"] if c["id"] != "model"]
        assert ids == [c.id for c in CLAUSES]
        assert {c["verdict"] for c in target["clauses"]} <= {
            "passed", "failed", "skipped", "not offered", "not applicable", "info",
        }  # fmt: skip


def test_the_stateful_model_finds_a_bug_and_prints_a_replayable_program(tmp_path: Path) -> None:
    result = run_suite(tmp_path, "--storekit=broken_stores:touch_rewrites", "-k", "test_store_agrees")
    assert result.returncode == 1
    assert "state = StoreMachine()" in result.stdout
    assert "state.touch_session(" in result.stdout
    assert "touch.1" in result.stdout
    printed = result.stdout[result.stdout.index("state = StoreMachine()") :]
    printed = printed[: printed.index("state.teardown()")]
    program = "".join(line[line.index("state") :] + "\n" for line in printed.splitlines() if "state" in line)
    replay = (
        "from broken_stores import touch_rewrites\n"
        "from storekit.conformance.test_model import StoreMachine, replay_on\n"
        "replay_on(touch_rewrites)\n" + program + "state.agrees_with_the_model()\n"
    )
    (tmp_path / "replay.py").write_text(replay)
    replayed = subprocess.run(
        [sys.executable, "replay.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(HERE)},
    )  # fmt: skip
    assert "ClauseViolation: touch.1" in replayed.stderr, replayed.stderr[-2000:]


def test_an_async_store_is_driven_through_the_whole_suite(tmp_path: Path) -> None:
    result = run_suite(tmp_path, "--storekit=storekit.reference:AsyncMemoryStore", "--storekit-report=r.json")
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["targets"][0]["level"] == "full"
    assert "64 tasks" not in result.stdout  # nothing failed, so no message mentions them


def test_an_async_store_that_breaks_a_clause_fails_it(tmp_path: Path) -> None:
    (tmp_path / "async_broken.py").write_text(
        "from storekit import Target\n"
        "from broken_stores import Merging\n"
        "class AsyncMerging:\n"
        "    def __init__(self):\n"
        "        self.inner = Merging()\n"
        "    async def get(self, sid):\n"
        "        return self.inner.get(sid)\n"
        "    async def set(self, sid, session):\n"
        "        self.inner.set(sid, session)\n"
        "    async def destroy(self, sid):\n"
        "        self.inner.destroy(sid)\n"
        "target = Target(AsyncMerging, ttl_resolution=0.2)\n"
    )
    result = run_suite(
        tmp_path, "--storekit=async_broken:target", "--storekit-report=r.json", "-k", "not model"
    )
    report = json.loads((tmp_path / "r.json").read_text())
    found = verdicts(report, "AsyncMerging")
    assert sorted(c for c, v in found.items() if v == "failed") == ["set.1"]
    assert result.returncode == 1


def test_a_lambda_factory_works_and_is_named_after_its_attribute(tmp_path: Path) -> None:
    (tmp_path / "lambdas.py").write_text(
        "from storekit.reference import MemoryStore\nmake_store = lambda: MemoryStore()\n"
    )
    result = run_suite(
        tmp_path, "--storekit=lambdas:make_store", "-k", "get or set", "--storekit-report=r.json"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["targets"][0]["name"] == "make_store"
    assert "storekit: target make_store (lambdas:make_store)" in result.stdout


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (
            "mypkg.make_store",
            "--storekit=mypkg.make_store: expects 'module:attribute', got 'mypkg.make_store'",
        ),
        ("mypkg.make_store", "did you mean mypkg:make_store?"),
        (":make_store", "expects 'module:attribute'"),
        ("storekit.reference:", "expects 'module:attribute'"),
        ("no_such_module_here:make", "cannot import module 'no_such_module_here'"),
        ("storekit.reference:NoSuchStore", "has no attribute 'NoSuchStore'"),
        ("storekit:__version__", "a storekit target is a storekit.Target or a zero-argument callable"),
        ("exploding:make", "importing 'exploding' raised RuntimeError: boom"),
    ],
)
def test_a_bad_storekit_value_is_a_usage_error_that_names_the_problem(
    tmp_path: Path, value: str, says: str
) -> None:
    (tmp_path / "exploding.py").write_text("raise RuntimeError('boom')\n")
    result = run_suite(tmp_path, f"--storekit={value}")
    assert result.returncode == 4  # pytest's exit code for usage errors
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_the_report_and_badge_are_written_and_valid(tmp_path: Path) -> None:
    result = run_suite(
        tmp_path,
        "--storekit=storekit.reference:MemoryStore",
        "--storekit-report=out/report.json",
        "--storekit-badge=out/badge.svg",
    )
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads((tmp_path / "out/report.json").read_text())
    assert report["schema"] == 1
    assert report["storekit"] == __import__("storekit").__version__
    assert report["contract"] == CONTRACT == "2"
    assert report["known_failures"] is None
    (target,) = report["targets"]
    assert target["name"] == "MemoryStore"
    assert target["level"] == "full"
    assert target["levels"] == {"json": "full", "python-values": "full"}
    found = {c["id"]: c for c in target["clauses"]}
    assert found["get.1"] == {"id": "get.1", "verdict": "passed", "message": ""}
    assert found["process.1"]["verdict"] == "not applicable"
    svg = ET.parse(tmp_path / "out/badge.svg").getroot()
    assert svg.tag.endswith("svg")
    assert "full" in "".join(svg.itertext())
    endpoint = json.loads((tmp_path / "out/badge.json").read_text())
    assert set(endpoint) <= SHIELDS_KEYS
    assert endpoint == {"schemaVersion": 1, "label": "storekit v2", "message": "full", "color": "green"}
    assert "storekit v2" in "".join(svg.itertext())
    assert_the_contract_shows_this_table(result.stdout)


def assert_the_contract_shows_this_table(output: str) -> None:
    """contract.md's sample table is this run's, line for line (sticky.3's counts vary)."""
    contract = (HERE.parent / "docs" / "contract.md").read_text()
    report = contract[contract.index("## The report") :]
    sample = report[report.index("```text\n") + 8 : report.index("```\n", report.index("```text\n") + 8)]

    def steady(line: str) -> str:
        return re.sub(r"counted \[[\d, ]+\] across \d+ workers", "counted [...]", line)

    shown = [steady(line) for line in sample.splitlines()]
    real = [steady(line) for line in output.splitlines()]
    start = real.index(shown[0])
    assert real[start : start + len(shown)] == shown


def test_the_terminal_summary_shows_the_clause_table_and_the_level(tmp_path: Path) -> None:
    result = run_suite(tmp_path, "--storekit=broken_stores:merging", "-k", "set")
    assert result.returncode == 1
    assert "storekit conformance" in result.stdout
    assert "storekit conformance (contract v2)" in result.stdout
    assert "merging: level none" in result.stdout
    assert "merging: level none; python-values: none" in result.stdout
    assert "failed          set.1" in result.stdout
    assert "storekit: target merging (broken_stores:merging)" in result.stdout


def test_the_env_var_names_a_target_when_the_option_is_absent(tmp_path: Path) -> None:
    result = run_suite(
        tmp_path, "-k", DESTROY_TESTS, env={"STOREKIT_TARGET": "storekit.reference:MemoryStore"}
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "storekit: target MemoryStore" in result.stdout
    assert "passed          destroy.1" in result.stdout


def test_a_run_without_storekit_is_untouched(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import pytest\n@pytest.fixture\ndef store():\n    return {}\n")
    pytester.makepyfile(test_app="def test_app(store):\n    assert store == {}\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "storekit conformance" not in result.stdout.str()
    assert "storekit: target" not in result.stdout.str()
    fixtures = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    assert "storekit_store" not in fixtures.stdout.str()


def test_the_plugin_imports_nothing_heavy_until_asked() -> None:
    code = (
        "import sys, storekit.plugin\n"
        "heavy = {'hypothesis', 'multiprocess', 'anybadge', 'storekit.conformance', 'storekit.suite'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_suite_is_collected_whatever_the_users_config(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\npython_files = check_*.py\npython_functions = check_*\n"
        "python_classes = Spec\ntestpaths = nowhere\naddopts = --strict-markers\n"
    )
    pytester.makeconftest("import pytest\n@pytest.fixture\ndef storekit_thing():\n    return 1\n")
    result = pytester.runpytest_subprocess(
        "--storekit=storekit.reference:MemoryStore", "-p", "no:cacheprovider", "-k", DESTROY_TESTS
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*passed          destroy.1*"])


def test_a_user_store_fixture_does_not_replace_the_suites(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "import pytest\n"
        "@pytest.fixture\ndef store():\n    raise RuntimeError('the suite must not use this')\n"
        "@pytest.fixture\ndef target():\n    raise RuntimeError('nor this')\n"
    )
    result = pytester.runpytest_subprocess(
        "--storekit=storekit.reference:MemoryStore", "-p", "no:cacheprovider", "-k", "get"
    )
    assert result.ret == 0, result.stdout.str()[-2000:]


def test_explicit_paths_run_beside_the_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine="def test_mine():\n    pass\n")
    result = pytester.runpytest_subprocess(
        "test_mine.py",
        "--storekit=storekit.reference:MemoryStore",
        "-p",
        "no:cacheprovider",
        "-k",
        f"test_mine or {DESTROY_TESTS}",
    )
    result.assert_outcomes(passed=4)


def test_the_suite_asserts_are_rewritten(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        broken="from storekit.reference import MemoryStore\n"
        "class Extra(MemoryStore):\n"
        "    def get(self, sid):\n"
        "        got = super().get(sid)\n"
        "        return None if got is None else {**got, 'extra': 1}\n"
    )
    result = pytester.runpytest_subprocess(
        "--storekit=broken:Extra", "-p", "no:cacheprovider", "-k", "test_a_second_set_replaces"
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*set.1: get after two sets returned*"])


def test_two_targets_each_get_the_whole_suite(tmp_path: Path) -> None:
    result = run_suite(
        tmp_path,
        "--storekit=storekit.reference:MemoryStore",
        "--storekit=broken_stores:correct",
        "-k", DESTROY_TESTS,
        "--storekit-report=r.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert [t["name"] for t in report["targets"]] == ["MemoryStore", "correct"]
    assert "6 passed" in result.stdout


UNUSABLE_SAYS = {
    "raising_factory": "its factory raised RuntimeError: no database at localhost:5432",
    "returns_none": "its factory did not return a store: None is not a store",
    "returns_a_class": "its factory did not return a store: DictStore is a class, not a store",
    "lacks_set": "it has no set(); a store needs get, set and destroy",
    "mixed_async": "mixes the two contracts",
    "one_instance": "its factory returned the same instance twice",
    "one_connection": "Cannot operate on a closed database. (at ",
    "refusing_namespaces": "its namespaced hook, called as namespaced('sk_check_",
}


@pytest.mark.parametrize("name", list(broken_stores.UNUSABLE))
def test_a_target_the_suite_cannot_run_is_one_usage_error_before_any_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    result = pytester.runpytest_subprocess(f"--storekit=broken_stores:{name}", "-p", "no:cacheprovider")
    assert result.ret == 4, result.stdout.str()[-2000:]
    errors = [line for line in result.stderr.lines if line.startswith("ERROR: ")]
    assert len(errors) == 1, result.stderr.str()
    assert errors[0].startswith(f"ERROR: --storekit=broken_stores:{name}: target {name!r}: ")
    assert UNUSABLE_SAYS[name] in errors[0]
    assert "Traceback" not in result.stderr.str()
    assert "passed" not in result.stdout.str()
    assert "failed" not in result.stdout.str()


def test_a_shared_instance_that_the_suite_closes_says_so_and_how_to_fix_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    for name in ("one_instance", "one_connection"):
        result = pytester.runpytest_subprocess(f"--storekit=broken_stores:{name}", "-p", "no:cacheprovider")
        assert result.ret == 4
        said = result.stderr.str()
        assert "the suite closes each store it builds, after the test that used it" in said
        assert "return a new store from each call" in said


def test_a_namespaced_hook_that_fails_is_reported_once_and_names_the_alphabet(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    result = pytester.runpytest_subprocess(
        "--storekit=broken_stores:refusing_namespaces", "-p", "no:cacheprovider"
    )
    assert result.ret == 4
    said = result.stderr.str()
    assert said.count("ValueError: no table may be named") == 1
    assert f"the suite passes namespaces that match {NAMESPACE_PATTERN}" in said


def test_the_suites_namespaces_can_be_sql_table_names(tmp_path: Path) -> None:
    result = run_suite(
        tmp_path,
        "--storekit=broken_stores:sqlite_tables",
        "-k",
        "clear or length",
        "--storekit-report=r.json",
    )
    assert result.returncode == 0, result.stdout[-3000:]
    found = verdicts(json.loads((tmp_path / "r.json").read_text()), "sqlite_tables")
    assert {c: found[c] for c in ("clear.1", "clear.2", "clear.3", "length.1")} == dict.fromkeys(
        ("clear.1", "clear.2", "clear.3", "length.1"), "passed"
    )


def test_every_namespace_matches_the_documented_alphabet() -> None:
    from storekit.conformance import _support

    names = [_support.new_namespace(), _support.new_namespace("a"), _support.new_namespace("check")]
    assert all(re.fullmatch(NAMESPACE_PATTERN, name) for name in names), names
    assert not any(a != b and b.startswith(a) for a in names for b in names)
    assert NAMESPACE_PATTERN in (Target.__doc__ or "")
    assert NAMESPACE_PATTERN in (HERE.parent / "docs" / "authors.md").read_text()
    assert NAMESPACE_PATTERN in (HERE.parent / "docs" / "contract.md").read_text()


def test_the_target_check_enters_serve_and_closes_every_store_it_builds(pytester: pytest.Pytester) -> None:
    log = pytester.path / "log.txt"
    pytester.makepyfile(
        counted=f"import contextlib\n"
        "from storekit import Target\n"
        "from storekit.reference import MemoryStore\n"
        f"LOG = {str(log)!r}\n"
        "def note(what):\n"
        "    with open(LOG, 'a') as f:\n"
        "        f.write(what + '\\n')\n"
        "class Counted(MemoryStore):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        note('made')\n"
        "    def close(self):\n"
        "        note('closed')\n"
        "@contextlib.contextmanager\n"
        "def serve():\n"
        "    note('serve')\n"
        "    yield\n"
        "    note('served')\n"
        "target = Target(Counted, serve=serve, namespaced=lambda ns: Counted())\n"
    )
    result = pytester.runpytest_subprocess(
        "--storekit=counted:target", "-p", "no:cacheprovider", "-k", "no_test_is_named_so"
    )
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED, result.stderr.str()
    lines = log.read_text().splitlines()
    assert lines[0] == "serve"
    assert lines[-1] == "served"
    assert lines.count("made") == lines.count("closed") == 3  # the factory twice, the namespaced hook once


def test_a_skip_of_the_suite_carries_its_verdict_to_the_report_as_data(tmp_path: Path) -> None:
    result = run_suite(
        tmp_path, "--storekit=broken_stores:minimal", "-k", "touch", "-rs", "--storekit-report=r.json"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    (target,) = json.loads((tmp_path / "r.json").read_text())["targets"]
    found = {c["id"]: c for c in target["clauses"]}
    assert found["touch.1"] == {
        "id": "touch.1", "verdict": "not offered", "message": "store has no touch(); touch is recommended",
    }  # fmt: skip
    assert "SKIPPED" in result.stdout  # pytest's own summary still says why, in words


def test_destroy_2_says_that_get_returned_the_session_after_the_destroy(tmp_path: Path) -> None:
    run_suite(
        tmp_path,
        "--storekit=broken_stores:destroy_creates",
        "--storekit=broken_stores:empty_for_unknown",
        "-k", "test_destroy_of_an_unknown", "--storekit-report=r.json",
    )  # fmt: skip
    report = json.loads((tmp_path / "r.json").read_text())
    messages = {t["name"]: {c["id"]: c for c in t["clauses"]}["destroy.2"] for t in report["targets"]}
    creates = messages["destroy_creates"]
    assert creates["verdict"] == "failed"
    assert "returned {} after destroy of that unknown sid" in creates["message"]
    assert "created" not in creates["message"]
    empty = messages["empty_for_unknown"]
    assert empty["verdict"] == "skipped"
    assert empty["message"].startswith("depends on get.1, which does not hold here: get(")
    assert "of an unknown sid returned {}" in empty["message"]


def test_the_model_names_one_clause_for_a_merging_set(tmp_path: Path) -> None:
    result = run_suite(
        tmp_path, "--storekit=broken_stores:merging", "-k", "test_store_agrees", "--storekit-report=r.json"
    )
    assert result.returncode == 1
    (target,) = json.loads((tmp_path / "r.json").read_text())["targets"]
    model = {c["id"]: c for c in target["clauses"]}["model"]
    assert model["verdict"] == "failed"
    assert model["message"].startswith("model: set.1: get(")
    assert "left from the session that the last set replaced" in model["message"]
    assert "get.2" not in model["message"]

"""The contract's version, its profiles, and every profile's level computed from verdicts alone."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from storekit.clauses import CLAUSES, CONTRACT, LEVELS, PROFILES, STATEFUL, profile
from storekit.report import VERDICTS, badge, levels

DOCS = Path(__file__).resolve().parent.parent / "docs"
ORDER = ["none"] + [level for level, _ in LEVELS]
IDS = [clause.id for clause in CLAUSES]


def passing(**changed: str) -> dict[str, str]:
    """Every clause passed, the model too, except ``changed`` (``get_2="failed"``)."""
    verdicts = dict.fromkeys([*IDS, STATEFUL], "passed")
    verdicts.update({key.replace("_", "."): value for key, value in changed.items()})
    return verdicts


def local(**changed: str) -> dict[str, str]:
    """A process-local store that passes everything it can."""
    not_shared = {c.replace(".", "_"): "not applicable" for c in IDS if c.startswith("process.")}
    return passing(**{**not_shared, **changed})


PICKLING = {"get_2": "failed", "set_2": "failed", "set_4": "failed"}


def test_the_contract_version_is_a_string_the_report_can_carry() -> None:
    assert CONTRACT == "2"


def test_the_profiles_keep_every_level_and_waive_only_clauses_that_exist() -> None:
    assert [p.name for p in PROFILES] == ["json", "python-values"]
    assert profile("json").waived == ()
    assert profile("python-values").waived == ("get.2", "set.2", "set.4")
    for each in PROFILES:
        assert set(each.waived) <= set(IDS)
        every = [clause for level, _ in LEVELS for clause in each.requires(level)]
        assert len(every) == len(set(every))
        assert sorted(every + list(each.waived)) == sorted(c.id for c in CLAUSES if c.section != "errors")
    with pytest.raises(KeyError, match="unknown profile 'yaml'; profiles: json, python-values"):
        profile("yaml")


def test_the_json_profile_is_the_levels_as_they_were() -> None:
    for level, sections in LEVELS:
        assert profile("json").requires(level) == tuple(c.id for c in CLAUSES if c.section in sections)


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        (passing(), {"json": "sticky", "python-values": "sticky"}),
        (local(), {"json": "full", "python-values": "full"}),
        (local(**PICKLING), {"json": "none", "python-values": "full"}),
        (passing(**PICKLING), {"json": "none", "python-values": "sticky"}),
        (local(**PICKLING, touch_1="not offered"), {"json": "none", "python-values": "core"}),
        (local(**PICKLING, ttl_3="failed"), {"json": "none", "python-values": "none"}),
        (local(set_3="failed"), {"json": "none", "python-values": "none"}),
        (local(get_2="failed", model="failed"), {"json": "none", "python-values": "none"}),
        (local(model="skipped"), {"json": "full", "python-values": "full"}),
        (passing(sticky_2="failed"), {"json": "shared", "python-values": "shared"}),
        (passing(process_1="not applicable"), {"json": "full", "python-values": "full"}),
        (passing(errors_1="failed"), {"json": "sticky", "python-values": "sticky"}),
    ],
)
def test_each_profile_has_its_level(verdicts: dict[str, str], expected: dict[str, str]) -> None:
    assert levels(verdicts) == expected


@pytest.mark.parametrize("verdict", ["known", "unexpected pass"])
@pytest.mark.parametrize("clause", ["get.1", "all.1", STATEFUL])
def test_a_declared_known_failure_holds_the_level_back_whether_it_failed_or_passed(
    verdict: str, clause: str
) -> None:
    found = levels({**local(), clause: verdict})
    assert found["json"] == ("none" if clause in ("get.1", STATEFUL) else "core")
    assert found == levels({**local(), clause: "failed"})


def test_a_clause_missing_from_the_verdicts_holds_the_level_back() -> None:
    verdicts = local()
    del verdicts["ttl.6"]
    assert levels(verdicts) == {"json": "none", "python-values": "none"}
    del verdicts[STATEFUL]  # a report without the model row: nothing holds it back
    assert levels(local(model="passed")) == levels({k: v for k, v in local().items() if k != STATEFUL})


def test_python_values_is_never_below_json() -> None:
    rng = random.Random(14)
    for _ in range(2000):
        verdicts = {c: rng.choice(["passed"] * 12 + list(VERDICTS)) for c in [*IDS, STATEFUL]}
        found = levels(verdicts)
        assert ORDER.index(found["python-values"]) >= ORDER.index(found["json"]), verdicts


def test_the_saved_reports_of_the_matrix_get_their_level_back() -> None:
    """levels() on a saved report gives the level the run wrote: the matrix can be re-rendered."""
    reports = sorted((DOCS / "compatibility" / "reports").glob("*.json"))
    checked = 0
    for path in reports:
        data = json.loads(path.read_text(encoding="utf-8"))
        for target in data.get("targets", []):
            verdicts = {c["id"]: c["verdict"] for c in target["clauses"]}
            assert levels(verdicts)["json"] == target["level"], path.name
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ([local()], ("full", "green")),
        ([passing()], ("sticky", "brightgreen")),
        ([local(touch_1="not offered")], ("core", "yellow")),
        ([local(**PICKLING)], ("python-values: full", "blue")),
        ([local(**PICKLING), local()], ("python-values: full", "blue")),
        ([local(**PICKLING), local(ttl_3="failed")], ("fails core", "red")),
        ([local(get_1="failed")], ("fails core", "red")),
        ([local(), local(touch_1="not offered")], ("core", "yellow")),
        ([local(all_1="known")], ("core (1 known)", "yellow")),
        ([local(all_1="known"), local(clear_1="unexpected pass")], ("core (2 known)", "yellow")),
        ([local(all_1="known"), local(all_1="known")], ("core (1 known)", "yellow")),
        ([local(get_1="known")], ("fails core (1 known)", "red")),
        ([local(get_2="known", set_2="known", set_4="known")], ("python-values: full", "blue")),
        (
            [local(get_2="known", set_2="known", set_4="known", all_1="known")],
            ("python-values: core (1 known)", "blue"),
        ),
        ([local(errors_1="known")], ("full", "green")),
    ],
)
def test_the_badge_shows_json_then_python_values_then_fails_core(
    targets: list[dict[str, str]], expected: tuple[str, str]
) -> None:
    assert badge(targets) == expected


def test_no_badge_of_no_targets_claims_a_level() -> None:
    assert badge([]) == ("fails core", "red")


def section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    level = heading.split(" ")[0]
    ends = [m.start() for m in re.finditer(rf"\n#{{1,{len(level)}}} ", text) if m.start() > start]
    return text[start : ends[0] if ends else len(text)]


def test_contract_md_has_the_profiles_table_and_a_section_per_profile() -> None:
    contract = (DOCS / "contract.md").read_text(encoding="utf-8")
    profiles = section(contract, "## Profiles")
    rows = re.findall(r"^\| `([\w-]+)` \|\s*([\w., ]*?)\s*\|", profiles, re.M)
    assert [(name, tuple(w.strip() for w in waived.split(",") if w.strip())) for name, waived in rows] == [
        (p.name, p.waived) for p in PROFILES
    ]
    for each in PROFILES:
        (heading,) = re.findall(rf"^### {re.escape(each.name)}: .+$", profiles, re.M)
        promises = section(contract, heading)
        for level, _ in LEVELS:
            assert f"- **`{level}`**:" in promises, (each.name, level)
        for waived in each.waived:
            assert f"[{waived}](#{waived.replace('.', '')})" in promises


def test_contract_md_names_its_version() -> None:
    contract = (DOCS / "contract.md").read_text(encoding="utf-8")
    assert contract.startswith(f"# The storekit contract, version {CONTRACT}\n")
    assert f'"contract": "{CONTRACT}"' in contract
    assert f"storekit v{CONTRACT}" in contract
    assert f"storekit conformance (contract v{CONTRACT})" in contract


def test_the_levels_table_says_which_verdicts_each_level_accepts() -> None:
    from storekit.report import ACCEPTED

    contract = (DOCS / "contract.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| [\w, ]+ \| ([`\w, ]+) \|", section(contract, "## Levels"), re.M)
    assert [level for level, _ in rows] == [level for level, _ in LEVELS] == list(ACCEPTED)
    for level, accepted in rows:
        assert set(re.findall(r"`([\w ]+)`", accepted)) == ACCEPTED[level]

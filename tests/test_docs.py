"""docs/contract.md and docs/authors.md say what the code does.

Every clause of the catalogue has its section in contract.md, and no other
clause ID is named; every ```python block runs (blocks marked with a preceding
``<!-- not-run -->`` only have to compile); the example store in authors.md
passes the real suite at the level the guide shows, and so does the pickling
store with the guide's known-failures file; the tables of arguments, levels and
verdicts match the code; the API list matches ``storekit.__all__``.
"""

from __future__ import annotations

import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import storekit
from storekit.clauses import CLAUSES, LEVELS, SECTIONS
from storekit.clauses import CONTRACT as VERSION
from storekit.report import VERDICTS
from storekit.target import Target

DOCS = Path(__file__).resolve().parent.parent / "docs"
CONTRACT = DOCS / "contract.md"
AUTHORS = DOCS / "authors.md"
NOT_RUN = "<!-- not-run -->"
CLAUSE_ID = re.compile(rf"\b(?:{'|'.join(SECTIONS)})\.\d+\b")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
MODULE_NAME = re.compile(r"# ([\w/]+\.py)\b")
TEXT_FILE = re.compile(r"# ([\w-]+\.txt):")
"""A text block that is a file, such as the guide's known-failures file, names itself so."""
SID = re.compile(r"sk-s-\d+-\d+-[0-9a-f]{8}")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    language: str
    code: str
    run: bool

    @property
    def module(self) -> str | None:
        """The file name on the block's first line (``# mystore.py``), if any."""
        match = MODULE_NAME.match(self.code)
        return match.group(1) if match else None

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        marked = bool(before) and before[-1].strip() == NOT_RUN
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(path.name, line, match.group(1), match.group(2), not marked))
    return found


def python_blocks() -> list[Block]:
    return [b for path in (CONTRACT, AUTHORS) for b in blocks(path) if b.language == "python"]


def headings(text: str) -> list[tuple[int, str]]:
    """Each Markdown heading outside code blocks: (offset of its line, its text)."""
    found, offset, fenced = [], 0, False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.+)$", line)):
            found.append((offset, match.group(1)))
        offset += len(line)
    return found


def section(path: Path, heading: str) -> str:
    """The text under ``heading`` (a whole heading line) up to the next heading."""
    text = path.read_text(encoding="utf-8")
    marks = headings(text)
    starts = [offset for offset, title in marks if "#" * heading.count("#") + " " + title == heading]
    assert len(starts) == 1, f"{path.name} has {len(starts)} headings {heading!r}"
    ends = [offset for offset, _ in marks if offset > starts[0]]
    return text[starts[0] : ends[0] if ends else len(text)]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(title) for _, title in headings(path.read_text(encoding="utf-8"))}


def clean_env(pythonpath: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STOREKIT_TARGET", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(pythonpath)
    return env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding every named example module, and a pytest.ini that keeps
    pytest from picking up any configuration above it."""
    root = tmp_path_factory.mktemp("docs")
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    for block in python_blocks():
        if block.run and block.module:
            (root / block.module).write_text(block.code, encoding="utf-8")
    for block in blocks(AUTHORS):
        if block.language == "text" and (named := TEXT_FILE.match(block.code)):
            (root / named.group(1)).write_text(block.code, encoding="utf-8")
    return root


# (a) clauses


def test_contract_md_has_a_heading_for_every_clause_in_catalogue_order() -> None:
    titles = [title for _, title in headings(CONTRACT.read_text(encoding="utf-8"))]
    assert [t for t in titles if CLAUSE_ID.fullmatch(t)] == [clause.id for clause in CLAUSES]


def test_contract_md_has_a_heading_for_every_http_clause_in_catalogue_order() -> None:
    from storekit.clauses import HTTP_CLAUSES

    titles = [title for _, title in headings(CONTRACT.read_text(encoding="utf-8"))]
    assert [t for t in titles if re.fullmatch(r"http\.\d+", t)] == [clause.id for clause in HTTP_CLAUSES]


@pytest.mark.parametrize("path", [CONTRACT, AUTHORS], ids=lambda p: p.name)
def test_the_docs_name_no_clause_that_does_not_exist(path: Path) -> None:
    named = set(CLAUSE_ID.findall(path.read_text(encoding="utf-8")))
    assert named <= {clause.id for clause in CLAUSES}
    if path == CONTRACT:
        assert named == {clause.id for clause in CLAUSES}


@pytest.mark.parametrize("path", [CONTRACT, AUTHORS], ids=lambda p: p.name)
def test_every_link_to_a_heading_finds_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    targets = {"": anchors(path), "contract.md": anchors(CONTRACT), "authors.md": anchors(AUTHORS)}
    links = re.findall(r"\]\(((?:contract|authors)\.md|)#([^)]+)\)", text)
    assert links
    missing = [f"{doc}#{anchor}" for doc, anchor in links if anchor not in targets[doc]]
    assert missing == []


# (b) examples


def test_the_examples_are_few_sketches_and_many_runnable_modules() -> None:
    found = python_blocks()
    assert sum(not b.run for b in found) <= 2
    modules = [b.module for b in found if b.module]
    assert len(modules) == len(set(modules))
    assert "mystore.py" in modules


@pytest.mark.parametrize("block", [b for b in python_blocks() if not b.run], ids=str)
def test_a_sketch_compiles(block: Block) -> None:
    compile(block.code, str(block), "exec")


@pytest.mark.parametrize("block", [b for b in python_blocks() if b.run], ids=str)
def test_an_example_runs(block: Block, workdir: Path) -> None:
    script = workdir / (block.module or f"block_{block.doc.replace('.', '_')}_{block.line}.py")
    if not block.module:
        script.write_text(block.code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=workdir,
        env=clean_env(workdir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@dataclass
class SuiteRun:
    returncode: int
    output: str
    report: dict[str, Any]


def start_suite(workdir: Path, name: str, *args: str) -> tuple[Path, subprocess.Popen[str]]:
    report = workdir / f"{name}.json"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
    process = subprocess.Popen(
        [*command, f"--storekit-report={report}"],
        cwd=workdir,
        env=clean_env(workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return report, process


@pytest.fixture(scope="module")
def suite_runs(workdir: Path) -> Iterator[dict[str, SuiteRun]]:
    """The guide's example store through the whole suite, its async twin through
    the sections that need no waiting, and its pickling store with the guide's
    known-failures file through the whole suite, side by side."""
    started = {
        "mystore": start_suite(workdir, "mystore", "--storekit=mystore:make_store"),
        "pickled": start_suite(
            workdir,
            "pickled",
            "-p",
            "no:randomly",  # the table shows each clause's first failure: keep the order
            "--storekit=picklestore:PickleStore",
            "--storekit-known-failures=known-failures.txt",
            f"--storekit-badge={workdir / 'badge' / 'pickled.svg'}",
        ),
        "async": start_suite(
            workdir,
            "async",
            "--storekit=myasyncstore:AsyncDictStore",
            "-k",
            "test_get or test_set or test_destroy or test_sid or threads",
        ),
    }
    runs = {}
    try:
        for key, (report, process) in started.items():
            output, _ = process.communicate(timeout=600)
            found = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
            runs[key] = SuiteRun(process.returncode, output, found)
        yield runs
    finally:
        for _, process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_example_store_passes_the_suite_as_the_guide_shows(suite_runs: dict[str, SuiteRun]) -> None:
    run = suite_runs["mystore"]
    assert run.returncode == 0, run.output[-4000:]
    (target,) = run.report["targets"]
    assert target["level"] == "full"
    shown = section(AUTHORS, "## Your store in five minutes")
    table = next(b.code for b in blocks(AUTHORS) if "storekit conformance" in b.code and b.code in shown)
    lines = [
        line for line in table.splitlines() if line.strip() not in ("", "...") and not line.startswith("=")
    ]
    assert "make_store: level full; python-values: full" in lines
    output = run.output.splitlines()
    assert [line for line in lines if line not in output] == []


def test_the_async_example_store_passes_what_it_ran(suite_runs: dict[str, SuiteRun]) -> None:
    run = suite_runs["async"]
    assert run.returncode == 0, run.output[-4000:]
    (target,) = run.report["targets"]
    verdicts = {c["id"]: c["verdict"] for c in target["clauses"]}
    ran = [c.id for c in CLAUSES if c.section in ("sid", "get", "set", "destroy", "threads")]
    assert {clause: verdicts[clause] for clause in ran} == dict.fromkeys(ran, "passed")


def test_the_known_failures_example_runs_as_the_guide_shows(
    suite_runs: dict[str, SuiteRun], workdir: Path
) -> None:
    run = suite_runs["pickled"]
    assert run.returncode == 0, run.output[-4000:]  # known failures do not fail the run
    (target,) = run.report["targets"]
    assert run.report["known_failures"] == "known-failures.txt"
    assert target["levels"] == {"json": "none", "python-values": "core"}
    found = {c["id"]: c for c in target["clauses"]}
    assert {c for c, v in found.items() if v["verdict"] == "known"} == {"get.2", "set.2", "set.4"}
    assert found["get.2"]["known"] == {
        "reason": "sessions are pickled, so a tuple comes back as a tuple",
        "link": "https://github.com/mypkg/mypkg/issues/12",
    }
    assert found["set.2"]["known"]["link"] is None
    shown = section(AUTHORS, "## Known failures")
    table = next(b.code for b in blocks(AUTHORS) if "storekit conformance" in b.code and b.code in shown)
    output = [SID.sub("sk-s-...", line) for line in run.output.splitlines()]
    assert [line for line in table.splitlines() if line not in output] == []
    assert "python-values: core" in section(AUTHORS, "## A store that keeps Python values")
    endpoint = json.loads((workdir / "badge" / "pickled.json").read_text(encoding="utf-8"))
    assert (endpoint["label"], endpoint["message"], endpoint["color"]) == (
        f"storekit v{VERSION}",
        "python-values: core",
        "blue",
    )


def test_the_report_example_has_the_real_reports_keys(suite_runs: dict[str, SuiteRun]) -> None:
    shown = section(CONTRACT, "## The report")
    (example,) = [json.loads(b.code) for b in blocks(CONTRACT) if b.language == "json" and b.code in shown]
    real = suite_runs["mystore"].report
    assert example.keys() == real.keys()
    assert example["schema"] == real["schema"]
    assert example["contract"] == real["contract"] == VERSION
    assert example["targets"][0]["levels"] == real["targets"][0]["levels"]
    assert example["targets"][0].keys() == real["targets"][0].keys()
    for clause in example["targets"][0]["clauses"]:
        assert clause.keys() == real["targets"][0]["clauses"][0].keys()
        assert clause["verdict"] in VERDICTS


def test_storekit_check_takes_the_documented_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "storekit", "check", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for option in ("--report", "--badge", "--known-failures"):
        assert option in done.stdout


# (c) what the docs say about the code


def test_the_api_list_is_what_storekit_exports() -> None:
    listed = re.findall(r"^- `(\w+)`:", section(AUTHORS, "## API"), re.M)
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(storekit.__all__)


def test_the_names_listed_elsewhere_exist() -> None:
    listed = re.findall(r"^- `([\w.]+)`:", section(AUTHORS, "### Elsewhere in storekit"), re.M)
    assert listed
    for name in listed:
        pkgutil.resolve_name(name)


def test_the_target_table_lists_every_argument() -> None:
    rows = re.findall(r"^\| `(\w+)` \|", section(CONTRACT, "## Targets"), re.M)
    assert rows == list(inspect.signature(Target).parameters)


def test_the_levels_table_matches_the_catalogue() -> None:
    rows = re.findall(r"^\| `(\w+)` \| ([\w, ]+) \|", section(CONTRACT, "## Levels"), re.M)
    assert [(level, tuple(s.strip() for s in sections.split(","))) for level, sections in rows] == LEVELS


def test_the_verdicts_table_lists_every_verdict() -> None:
    rows = re.findall(r"^\| `([\w ]+)` \|", section(CONTRACT, "## Verdicts"), re.M)
    assert sorted(rows) == sorted(VERDICTS)

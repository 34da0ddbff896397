"""Run the conformance suite on every ecosystem target and write docs/compatibility.md.

    python scripts/compatibility.py                 # run every target, then write the page
    python scripts/compatibility.py --only "Beaker file"
    python scripts/compatibility.py --render-only   # rewrite the page from the saved reports

Each target runs in a subprocess of its own (``python -m pytest -p no:cacheprovider
--storekit=... --storekit-report=...``), two at a time at most. Reports are kept in
docs/compatibility/reports/ so that the page can be regenerated without a rerun; the
runs' output goes to build/compatibility/.
The matrix is also written as JSON, docs/compatibility/matrix.json (versions, and per
target its level, per-clause verdicts and each failure's classification). Reports that
third parties send are kept in docs/compatibility/submitted/ and rendered as rows marked
"(submitted)"; the page says how to make one.
The page's explanations are not written here: they live in
docs/compatibility/explanations.md, which the script reads, so that regeneration
never loses them. A failure without an explanation is marked as such, and an
explanation for a clause that no longer fails is listed as stale.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _explanations import Notes, failure_lines
from _explanations import read_explanations as parse_explanations

from storekit.clauses import CLAUSES, CONTRACT, SECTIONS
from storekit.ecosystem import TARGETS
from storekit.report import levels

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGE = DOCS / "compatibility.md"
REPORTS = DOCS / "compatibility" / "reports"
EXPLANATIONS = DOCS / "compatibility" / "explanations.md"
SUBMITTED = DOCS / "compatibility" / "submitted"
MATRIX = DOCS / "compatibility" / "matrix.json"
LOGS = ROOT / "build" / "compatibility"
TIMEOUT = 1200.0
KINDS = ("real bug", "design difference", "adapter translation")
PACKAGES = (
    "aiohttp", "aiohttp-session", "aiomcache", "Beaker", "cachelib", "Django", "django-redis",
    "Flask", "Flask-Session", "Flask-SQLAlchemy", "litestar", "msgspec", "pymemcache", "redis",
    "SQLAlchemy", "starsessions", "storekit",
)  # fmt: skip
"""The distributions whose versions the page and matrix.json record."""


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# -- running ---------------------------------------------------------------------


def run_target(name: str, spec: str) -> tuple[str, float, int]:
    """Run the suite on one target in a subprocess; return its name, seconds and exit code."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    report = REPORTS / f"{slug(name)}.json"
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{slug(name)}.log"
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
        f"--storekit={spec}", f"--storekit-report={report}",
    ]  # fmt: skip
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="storekit-compat-") as cwd, log.open("w") as out:
        try:
            code = subprocess.run(
                command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=TIMEOUT, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
            out.write(f"\nstorekit compatibility: timed out after {TIMEOUT}s\n")
    return name, time.monotonic() - start, code


def record_versions() -> None:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    found["redis-server"] = _server_version(["redis-server", "--version"], r"v=(\S+)")
    found["memcached"] = _server_version(["memcached", "-V"], r"memcached (\S+)")
    (REPORTS / "versions.json").write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")


def _server_version(command: list[str], pattern: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return "not installed"
    match = re.search(pattern, done.stdout)
    return match.group(1) if match else "unknown"


def run(names: list[str], jobs: int) -> None:
    REPORTS.mkdir(parents=True, exist_ok=True)
    record_versions()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for name, seconds, code in pool.map(lambda n: run_target(n, TARGETS[n]), names):
            print(
                f"{name}: exit {code} in {seconds:.0f}s (log: build/compatibility/{slug(name)}.log)",
                flush=True,
            )


# -- explanations ------------------------------------------------------------------


TargetNotes = Notes


def read_explanations(
    path: Path = EXPLANATIONS, names: list[str] | None = None
) -> tuple[str, list[str], dict[str, Notes]]:
    """Parse the explanations file (:func:`_explanations.read_explanations`) for the rows
    named ``names`` (every row's by default); kept sections come back as their text."""
    known = names if names is not None else [row.name for row in all_rows(list(TARGETS))]
    intro, kept, notes = parse_explanations(path, known, KINDS)
    return intro, [f"## {title}\n\n{body}" for title, body in kept], notes


# -- rows: the ecosystem's targets and the reports third parties submitted -------------------


@dataclass(frozen=True)
class Row:
    """One row of the matrix: a target's name, how to reproduce it, and its saved report."""

    name: str
    command: str
    report: dict[str, Any] | None
    submitted: str | None = None
    """The submitted report's path in the repository, for a third party's row."""


def _report_file(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _with_run(target: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """A report's target with what its report says of the run (storekit's and the contract's
    version; a report without one was checked against contract v1) and its level in every
    profile, computed again from its verdicts, so that a saved report gets the current profiles."""
    contract = data.get("contract", data.get("contract_version")) or "1"
    every = levels({clause["id"]: clause["verdict"] for clause in target["clauses"]})
    return {**target, "storekit": data.get("storekit"), "contract": contract, "levels": every}


def all_rows(names: list[str]) -> list[Row]:
    """The ecosystem targets ``names`` (from docs/compatibility/reports/), then every target of
    every report in docs/compatibility/submitted/, by file name."""
    rows = []
    for name in names:
        path = REPORTS / f"{slug(name)}.json"
        report = None
        if path.exists():
            data = _report_file(path)
            report = _with_run(data["targets"][0], data)
        rows.append(Row(name, f"storekit check {TARGETS[name]}", report))
    for path in sorted(SUBMITTED.glob("*.json")) if SUBMITTED.is_dir() else []:
        data = _report_file(path)
        where = path.relative_to(ROOT).as_posix()
        for target in data.get("targets", []):
            report = _with_run(target, data)
            rows.append(Row(target["name"], f"submitted as {where}", report, submitted=where))
    return rows


def section_cell(clauses: list[dict[str, Any]]) -> str:
    verdicts = {c["verdict"] for c in clauses}
    failed = [c["id"] for c in clauses if c["verdict"] == "failed"]
    if failed:
        return "**FAIL** " + ", ".join(f.partition(".")[2] for f in failed).join("()")
    if verdicts <= {"passed", "info"}:
        return "pass"
    if "passed" in verdicts and verdicts <= {"passed", "skipped", "info"}:
        return "pass (some skipped)"
    if verdicts == {"not offered"}:
        return "not offered"
    if verdicts == {"skipped"}:
        return "skipped"
    if verdicts <= {"not applicable", "skipped"}:
        return "n/a"
    return ", ".join(sorted(verdicts))


def sections_of(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    by_section: dict[str, list[dict[str, Any]]] = {s: [] for s in SECTIONS}
    for clause in report["clauses"]:
        section = clause["id"].partition(".")[0]
        if section in by_section:
            by_section[section].append(clause)
    return by_section


HTTP_START, HTTP_END = "<!-- http-matrix:start -->", "<!-- http-matrix:end -->"


def keep_http_matrix(text: str) -> str:
    """``text`` with the page's middleware matrix (between the markers, written by
    scripts/http_matrix.py) kept as it is on the page now."""
    current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
    if HTTP_START not in text or HTTP_START not in current:
        return text
    kept = current[current.index(HTTP_START) : current.index(HTTP_END)]
    return text[: text.index(HTTP_START)] + kept + text[text.index(HTTP_END) :]


def render(names: list[str]) -> str:
    rows = all_rows(names)
    intro, kept, notes = read_explanations(names=[row.name for row in rows])
    versions_file = REPORTS / "versions.json"
    versions = json.loads(versions_file.read_text()) if versions_file.exists() else {}
    sections = list(SECTIONS)
    lines = [
        "# Compatibility: the Python ecosystem's session backends under the suite",
        "",
        "<!-- Generated by scripts/compatibility.py from docs/compatibility/reports/*.json,",
        "     docs/compatibility/submitted/*.json and docs/compatibility/explanations.md.",
        "     Edit the explanations file, not this page. -->",
        "",
        intro,
        "",
        "Versions in the last run: "
        + (", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "unknown")
        + ".",
        "",
        "## The matrix",
        "",
        "Verdicts by contract section, from the last run of `python scripts/compatibility.py`. "
        "**FAIL** (n, m) names the failing clauses of the section; *not offered* is an optional "
        "method the backend lacks; *n/a* a section the target does not claim (`process` needs a "
        "shared backend, `errors` an outage hook); *skipped* a section whose checks depend on a clause that "
        "fails (threads needs destroy to work). The same matrix, clause by clause with each "
        "failure's classification, is in [`compatibility/matrix.json`](compatibility/matrix.json).",
        "",
        "| target | level | python-values | " + " | ".join(sections) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in sections) + " |",
    ]
    for row in rows:
        label = f"{row.name} (submitted)" if row.submitted else row.name
        if row.report is None:
            lines.append(f"| {label} | not run | | " + " | ".join("" for _ in sections) + " |")
            continue
        by_section = sections_of(row.report)
        cells = [section_cell(by_section[s]) for s in sections]
        every = row.report["levels"]
        lines.append(f"| {label} | {every['json']} | {every['python-values']} | " + " | ".join(cells) + " |")
    for section in kept:
        lines += ["", section]
    lines += ["", "## Targets and failures", ""]
    summaries = {clause.id: clause.summary for clause in CLAUSES}
    unexplained = 0
    for row in rows:
        report, note = row.report, notes.get(row.name, TargetNotes())
        lines += [f"### {row.name}", "", f"`{row.command}`", ""]
        if note.intro:
            lines += [note.intro, ""]
        if report is None:
            lines += ["Not run yet.", ""]
            continue
        failed = [c for c in report["clauses"] if c["verdict"] == "failed"]
        every = report["levels"]
        level = f"Level: **{every['json']}**; python-values: **{every['python-values']}**. "
        lines += [level + (f"{len(failed)} clauses fail." if failed else ""), ""]
        shown, missing = failure_lines(failed, note, summaries, "docs/compatibility/explanations.md")
        lines += shown
        unexplained += missing
        stale = sorted(set(note.clauses) - {c["id"] for c in failed})
        if stale:
            lines += ["", f"Explanations kept for clauses that pass in this run: {', '.join(stale)}."]
        lines.append("")
    if unexplained:
        print(f"warning: {unexplained} failures have no explanation", file=sys.stderr)
    return "\n".join(lines).rstrip() + "\n"


def matrix(names: list[str]) -> dict[str, Any]:
    """The matrix as data: versions, and per target its level, section cells and every clause's
    verdict, with the classification and explanation of each failure (None when unexplained)."""
    rows = all_rows(names)
    _, _, notes = read_explanations(names=[row.name for row in rows])
    versions_file = REPORTS / "versions.json"
    targets = []
    for row in rows:
        entry: dict[str, Any] = {"name": row.name, "command": row.command, "submitted": row.submitted}
        if row.report is None:
            targets.append({**entry, "level": None, "sections": {}, "clauses": []})
            continue
        note = notes.get(row.name, TargetNotes())
        clauses = []
        for clause in row.report["clauses"]:
            explained = note.clauses.get(clause["id"]) if clause["verdict"] == "failed" else None
            clauses.append(
                {
                    "id": clause["id"],
                    "verdict": clause["verdict"],
                    "message": clause.get("message", ""),
                    "classification": explained.kind if explained else None,
                    "explanation": explained.text if explained else None,
                }
            )
        by_section = sections_of(row.report)
        targets.append(
            {
                **entry,
                "storekit": row.report.get("storekit"),
                "contract": row.report.get("contract"),
                "shared": row.report.get("shared"),
                "level": row.report["levels"]["json"],
                "levels": row.report["levels"],
                "sections": {s: section_cell(by_section[s]).replace("**", "") for s in SECTIONS},
                "clauses": clauses,
            }
        )
    return {
        "schema": 1,
        "generated_by": "scripts/compatibility.py",
        "page": "docs/compatibility.md",
        "classifications": list(KINDS),
        "contract": CONTRACT,
        "sections": list(SECTIONS),
        "versions": json.loads(versions_file.read_text()) if versions_file.exists() else {},
        "targets": targets,
    }


def matrix_text(names: list[str]) -> str:
    return json.dumps(matrix(names), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", choices=list(TARGETS), help="run this target only")
    parser.add_argument("--render-only", action="store_true", help="rewrite the page from saved reports")
    parser.add_argument("--jobs", type=int, default=2, choices=(1, 2), help="targets run at once (2)")
    args = parser.parse_args(argv)
    names = list(TARGETS)
    if not args.render_only:
        run(args.only or names, args.jobs)
    PAGE.write_text(keep_http_matrix(render(names)), encoding="utf-8")
    MATRIX.write_text(matrix_text(names), encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)} and {MATRIX.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    raise SystemExit(main())

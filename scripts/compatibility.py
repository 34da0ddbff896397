"""Run the conformance suite on every ecosystem target and write docs/compatibility.md.

    python scripts/compatibility.py                 # run every target, then write the page
    python scripts/compatibility.py --only "Beaker file"
    python scripts/compatibility.py --render-only   # rewrite the page from the saved reports

Each target runs in a subprocess of its own (``python -m pytest -p no:cacheprovider
--storekit=... --storekit-report=...``), two at a time at most. Reports are kept in
docs/compatibility/reports/ so that the page can be regenerated without a rerun; the
runs' output goes to build/compatibility/.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storekit.clauses import CLAUSES, SECTIONS
from storekit.ecosystem import TARGETS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGE = DOCS / "compatibility.md"
REPORTS = DOCS / "compatibility" / "reports"
EXPLANATIONS = DOCS / "compatibility" / "explanations.md"
LOGS = ROOT / "build" / "compatibility"
TIMEOUT = 1200.0
KINDS = ("real bug", "design difference", "adapter translation")


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
    for package in ("cachelib", "Django", "Beaker", "redis", "storekit"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"v=(\S+)", server.stdout)
    found["redis-server"] = match.group(1) if match else "unknown"
    (REPORTS / "versions.json").write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")


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


@dataclass
class Explanation:
    clause: str
    kind: str
    text: str


@dataclass
class TargetNotes:
    intro: str = ""
    clauses: dict[str, Explanation] = field(default_factory=dict)


def read_explanations(path: Path = EXPLANATIONS) -> tuple[str, list[str], dict[str, TargetNotes]]:
    """Parse the explanations file: an introduction, ``## <heading>`` sections kept as they
    are, and ``## <target name>`` sections with an optional note and ``### <clause> · <kind>``
    entries."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    text = re.sub(r"\A<!--.*?-->\s*", "", text, flags=re.S)
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    intro, kept, notes = parts[0].strip(), [], {}
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        if title.strip() not in TARGETS:
            kept.append(f"## {title.strip()}\n\n{body.strip()}")
            continue
        entries = re.split(r"^### (.+)$", body, flags=re.M)
        target = TargetNotes(intro=entries[0].strip())
        for head, content in zip(entries[1::2], entries[2::2], strict=True):
            clause, _, kind = (piece.strip() for piece in head.partition("·"))
            if kind not in KINDS:
                raise SystemExit(f"{path}: '### {head}' must name one of {KINDS} after '·'")
            target.clauses[clause] = Explanation(clause, kind, content.strip())
        notes[title.strip()] = target
    return intro, kept, notes


# -- rendering ---------------------------------------------------------------------

SYMBOL = {"passed": "pass", "failed": "**FAIL**", "not offered": "not offered", "not applicable": "n/a"}


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


def load_reports(names: list[str]) -> dict[str, dict[str, Any]]:
    found = {}
    for name in names:
        path = REPORTS / f"{slug(name)}.json"
        if path.exists():
            found[name] = json.loads(path.read_text(encoding="utf-8"))["targets"][0]
    return found


def render(names: list[str]) -> str:
    intro, kept, notes = read_explanations()
    reports = load_reports(names)
    versions_file = REPORTS / "versions.json"
    versions = json.loads(versions_file.read_text()) if versions_file.exists() else {}
    sections = list(SECTIONS)
    lines = [
        "# Compatibility: the Python ecosystem's session backends under the suite",
        "",
        "<!-- Generated by scripts/compatibility.py from docs/compatibility/reports/*.json and",
        "     docs/compatibility/explanations.md. Edit the explanations file, not this page. -->",
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
        "fails (threads needs destroy to work).",
        "",
        "| target | level | " + " | ".join(sections) + " |",
        "| --- | --- | " + " | ".join("---" for _ in sections) + " |",
    ]
    for name in names:
        report = reports.get(name)
        if report is None:
            lines.append(f"| {name} | not run | " + " | ".join("" for _ in sections) + " |")
            continue
        by_section: dict[str, list[dict[str, Any]]] = {s: [] for s in sections}
        for clause in report["clauses"]:
            section = clause["id"].partition(".")[0]
            if section in by_section:
                by_section[section].append(clause)
        cells = [section_cell(by_section[s]) for s in sections]
        lines.append(f"| {name} | {report['level']} | " + " | ".join(cells) + " |")
    for section in kept:
        lines += ["", section]
    lines += ["", "## Targets and failures", ""]
    summaries = {clause.id: clause.summary for clause in CLAUSES}
    unexplained = 0
    for name in names:
        report, note = reports.get(name), notes.get(name, TargetNotes())
        spec = TARGETS[name]
        lines += [f"### {name}", "", f"`storekit check {spec}`", ""]
        if note.intro:
            lines += [note.intro, ""]
        if report is None:
            lines += ["Not run yet.", ""]
            continue
        failed = [c for c in report["clauses"] if c["verdict"] == "failed"]
        lines += [f"Level: **{report['level']}**. " + (f"{len(failed)} clauses fail." if failed else ""), ""]
        for clause in failed:
            explanation = note.clauses.get(clause["id"])
            kind = explanation.kind if explanation else "unexplained"
            lines += [
                f"- **{clause['id']}** ({summaries.get(clause['id'], '')}) — *{kind}*",
                f"  - seen: `{_one_line(clause['message'])}`",
            ]
            if explanation:
                lines.append("  - " + explanation.text.replace("\n", "\n    "))
            else:
                unexplained += 1
                lines.append("  - no explanation yet: add one to docs/compatibility/explanations.md")
        stale = sorted(set(note.clauses) - {c["id"] for c in failed})
        if stale:
            lines += ["", f"Explanations kept for clauses that pass in this run: {', '.join(stale)}."]
        lines.append("")
    if unexplained:
        print(f"warning: {unexplained} failures have no explanation", file=sys.stderr)
    return "\n".join(lines).rstrip() + "\n"


def _one_line(message: str, limit: int = 300) -> str:
    text = " ".join(message.split()).replace("`", "'")
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    PAGE.write_text(render(names), encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    raise SystemExit(main())

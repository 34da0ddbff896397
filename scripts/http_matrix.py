"""Run the HTTP session suite on every middleware of the matrix and write its section of
docs/compatibility.md.

    python scripts/http_matrix.py                       # every row, then the section and the JSON
    python scripts/http_matrix.py --only "Django db"    # one row (repeatable), then the same
    python scripts/http_matrix.py --render-only         # rewrite both from the saved reports

For each row a probe app is started as a subprocess on an ephemeral port (storekit's own
through ``python -m storekit.probe``, the third parties' from scripts/http_probes/), the suite
runs on it in another (``python -m pytest -p no:cacheprovider --storekit-http=URL
--storekit-report=...``, in a temporary directory with an empty pytest.ini), and the app is
stopped. One redis-server (storekit.testing.RedisServer) serves every row that needs Redis.
Reports are kept in docs/compatibility/http-reports/, the runs' output in build/http-matrix/.

The matrix is written as JSON, docs/compatibility/http-matrix.json, and as the part of
docs/compatibility.md between ``<!-- http-matrix:start -->`` and ``<!-- http-matrix:end -->``;
nothing else of the page is touched. scripts/compatibility.py renders the rest of that page
from docs/compatibility/explanations.md, whose markers hold nothing, and keeps this section as
the page has it.
The failures' explanations live in docs/compatibility/http-explanations.md, which the script
reads: ``## <row>`` sections of ``### <clause> · <kind>`` entries. A failure without one is
marked as such, and an explanation for a clause that no longer fails is listed as stale.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _explanations import Notes, failure_lines, one_line
from _explanations import read_explanations as parse_explanations

from storekit.clauses import HTTP_CLAUSES, HTTP_PROTOCOL

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = (DOCS / "compatibility.md",)
"""The files whose http-matrix markers hold the section: the page, and the source that
scripts/compatibility.py renders the page from."""
REPORTS = DOCS / "compatibility" / "http-reports"
EXPLANATIONS = DOCS / "compatibility" / "http-explanations.md"
MATRIX = DOCS / "compatibility" / "http-matrix.json"
LOGS = ROOT / "build" / "http-matrix"
PROBES = ROOT / "scripts" / "http_probes"
START, END = "<!-- http-matrix:start -->", "<!-- http-matrix:end -->"
KINDS = ("real bug", "design difference", "adapter translation", "suite bug")
STARTUP = 60.0
"""Seconds an app may take to print its ``listening on`` line."""
SUITE_TIMEOUT = 600.0
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
NODE_MODULES = CACHE / "storekit-node" / "node_modules"


@dataclass(frozen=True)
class Row:
    """One row: a middleware, the command that serves its probe app (``{redis}`` is the Redis
    URL), and the packages whose versions say what ran."""

    name: str
    command: tuple[str, ...]
    packages: tuple[str, ...]
    node: bool = False

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")

    @property
    def uses_redis(self) -> bool:
        return "{redis}" in self.command

    def argv(self, redis_url: str) -> list[str]:
        return [sys.executable, *(part.replace("{redis}", redis_url) for part in self.command)]

    def shown(self) -> str:
        """The command as the page shows it."""
        return " ".join(["python", *self.command]).replace("{redis}", "URL")


def _launcher(*args: str) -> tuple[str, ...]:
    return ("-m", "storekit.probe", *args, "--port", "0")


def _probe(name: str, *args: str) -> tuple[str, ...]:
    return (f"scripts/http_probes/{name}.py", "--port", "0", *args)


ROWS = [
    Row("storekit WSGI on MemoryStore", _launcher("wsgi", "--store", "memory"), ("storekit", "waitress")),
    Row("storekit WSGI on ClusterStore", _launcher("wsgi", "--store", "cluster"), ("storekit", "waitress")),
    Row(
        "storekit WSGI on RedisStore",
        _launcher("wsgi", "--store", "redis", "--redis-url", "{redis}"),
        ("storekit", "waitress", "redis", "redis-server"),
    ),
    Row(
        "storekit Flask interface on MemoryStore",
        _launcher("flask", "--store", "memory"),
        ("storekit", "Flask", "waitress"),
    ),
    Row(
        "storekit Django engine on MemoryStore",
        _launcher("django", "--store", "memory"),
        ("storekit", "Django", "waitress"),
    ),
    Row(
        "storekit ASGI on AsyncRedisStore",
        _launcher("asgi", "--store", "redis", "--redis-url", "{redis}"),
        ("storekit", "uvicorn", "redis", "redis-server"),
    ),
    Row("Flask cookie session", _probe("flask_cookie"), ("Flask", "waitress")),
    Row(
        "Flask-Session on Redis",
        _probe("flask_session_redis", "--redis-url", "{redis}"),
        ("Flask-Session", "Flask", "waitress", "redis", "redis-server"),
    ),
    Row("Django db", _probe("django_db"), ("Django", "waitress")),
    Row("Django cache", _probe("django_cache"), ("Django", "waitress")),
    Row("Starlette SessionMiddleware", _launcher("starlette"), ("starlette", "itsdangerous", "uvicorn")),
    Row(
        "starsessions on Redis",
        _probe("starsessions_redis", "--redis-url", "{redis}"),
        ("starsessions", "starlette", "uvicorn", "redis", "redis-server"),
    ),
    Row(
        "aiohttp-session on Redis",
        _probe("aiohttp_session_redis", "--redis-url", "{redis}"),
        ("aiohttp-session", "aiohttp", "redis", "redis-server"),
    ),
    Row(
        "express-session with connect-redis",
        _launcher("express", "--store", "redis", "--redis-url", "{redis}"),
        ("npm:express-session", "npm:connect-redis", "npm:redis", "npm:express", "node", "redis-server"),
        node=True,
    ),
]
BY_NAME = {row.name: row for row in ROWS}


# -- running ---------------------------------------------------------------------


class App:
    """A probe app in a subprocess: started, its URL read from its first line, stopped."""

    def __init__(self, argv: list[str], env: dict[str, str], log: IO[str]) -> None:
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._log = log
        self._relay_thread = threading.Thread(target=self._relay, daemon=True)
        self._relay_thread.start()

    def _relay(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
            self._log.write(line)
        self.lines.put(None)

    def url(self, timeout: float = STARTUP) -> str:
        """The URL the app announced; RuntimeError if it exited or stayed silent until ``timeout``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError(f"the app exited with status {self.process.wait()} before it listened")
            if line.startswith("listening on "):
                return line.removeprefix("listening on ").strip()
        raise RuntimeError(f"the app printed no 'listening on' line within {timeout:g}s")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 10 s; the exit status, once its output is all in the log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        code = self.process.wait()
        self._relay_thread.join(timeout=10)
        return code


def run_row(row: Row, redis_url: str) -> str:
    """Start the row's app, run the suite on it, stop it; a line saying how it went."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    report = REPORTS / f"{row.slug}.json"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if row.node:
        env["NODE_PATH"] = str(NODE_MODULES)
    start = time.monotonic()
    with (LOGS / f"{row.slug}.app.log").open("w") as app_log, (LOGS / f"{row.slug}.log").open("w") as out:
        app = App(row.argv(redis_url), env, app_log)
        try:
            url = app.url()
        except RuntimeError as exc:
            app.stop()
            return f"{row.name}: not run: {exc} (log: build/http-matrix/{row.slug}.app.log)"
        command = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
            f"--storekit-http={url}", f"--storekit-report={report}",
        ]  # fmt: skip
        try:
            with tempfile.TemporaryDirectory(prefix="storekit-http-matrix-") as cwd:
                (Path(cwd) / "pytest.ini").write_text("[pytest]\n")
                code = subprocess.run(
                    command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=SUITE_TIMEOUT, check=False
                ).returncode
        except subprocess.TimeoutExpired:
            code = -1
            out.write(f"\nhttp matrix: the suite timed out after {SUITE_TIMEOUT:g}s\n")
        finally:
            stopped = app.stop()
    took = time.monotonic() - start
    where = f"build/http-matrix/{row.slug}.log"
    return f"{row.name}: suite exit {code}, app exit {stopped}, {took:.0f}s (log: {where})"


def record_versions() -> None:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for package in sorted({p for row in ROWS for p in row.packages}):
        if package.startswith("npm:"):
            found[package] = _npm_version(package.removeprefix("npm:"))
        elif package in ("node", "redis-server"):
            found[package] = _program_version(package)
        else:
            try:
                found[package] = version(package)
            except PackageNotFoundError:
                found[package] = "not installed"
    (REPORTS / "versions.json").write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")


def _npm_version(name: str) -> str:
    try:
        manifest = json.loads((NODE_MODULES / name / "package.json").read_text())
    except (OSError, ValueError):
        return "not installed"
    return str(manifest.get("version", "unknown"))


PROGRAMS = {
    "node": (["node", "--version"], r"v(\S+)"),
    "redis-server": (["redis-server", "--version"], r"v=(\S+)"),
}


def _program_version(name: str) -> str:
    command, pattern = PROGRAMS[name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return "not installed"
    match = re.search(pattern, done.stdout)
    return match.group(1) if match else "unknown"


def run(rows: list[Row]) -> None:
    from storekit.testing import RedisServer

    REPORTS.mkdir(parents=True, exist_ok=True)
    record_versions()
    with RedisServer() as redis:
        for row in rows:
            print(run_row(row, redis.url), flush=True)


# -- explanations ------------------------------------------------------------------


RowNotes = Notes


def read_explanations(path: Path = EXPLANATIONS) -> tuple[str, list[tuple[str, str]], dict[str, Notes]]:
    """The explanations file (:func:`_explanations.read_explanations`) for the matrix's rows."""
    return parse_explanations(path, BY_NAME, KINDS)


# -- rendering ---------------------------------------------------------------------


def load_report(row: Row) -> dict[str, Any] | None:
    """The row's saved report, as its one target (with the run's storekit version), or None."""
    path = REPORTS / f"{row.slug}.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    target: dict[str, Any] = data["targets"][0]
    return {**target, "storekit": data.get("storekit"), "protocol": data.get("protocol")}


def versions() -> dict[str, str]:
    path = REPORTS / "versions.json"
    found: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    return found


def shown_name(package: str) -> str:
    """A package as the page names it: npm packages without ``npm:``, node's redis as node-redis."""
    return "node-redis" if package == "npm:redis" else package.removeprefix("npm:")


def versions_of(row: Row, known: dict[str, str]) -> str:
    return ", ".join(f"{shown_name(p)} {known.get(p, '?')}" for p in row.packages)


CELLS = {"passed": "pass", "failed": "**FAIL**", "not applicable": "n/a"}


def section() -> str:
    """The text between the markers: the table, its notes, and every failure explained."""
    intro, kept, notes = read_explanations()
    known = versions()
    clauses = [clause.id for clause in HTTP_CLAUSES]
    summaries = {clause.id: clause.summary for clause in HTTP_CLAUSES}
    infos: dict[str, int] = {}
    lines = [
        "<!-- Generated by scripts/http_matrix.py from docs/compatibility/http-reports/*.json and",
        "     docs/compatibility/http-explanations.md. Edit those, not this section. -->",
        "",
    ]
    if intro:
        lines += [intro, ""]
    lines += [
        "| middleware | versions | " + " | ".join(clauses) + " |",
        "| --- | --- | " + " | ".join("---" for _ in clauses) + " |",
    ]
    reports = {row.name: load_report(row) for row in ROWS}
    for row in ROWS:
        report = reports[row.name]
        if report is None:
            empty = " | ".join("not run" for _ in clauses)
            lines.append(f"| {row.name} | {versions_of(row, known)} | {empty} |")
            continue
        verdicts = {clause["id"]: clause for clause in report["clauses"]}
        cells = []
        for clause in clauses:
            found = verdicts.get(clause, {"verdict": "not run", "message": ""})
            cell = CELLS.get(found["verdict"], found["verdict"])
            if found["verdict"] == "info":
                number = infos.setdefault(f"{clause}: {_one_line(found['message'])}", len(infos) + 1)
                cell = f"info [{number}]"
            cells.append(cell)
        lines.append(f"| {row.name} | {versions_of(row, known)} | " + " | ".join(cells) + " |")
    lines.append("")
    if infos:
        lines += [f"- [{number}] {text}" for text, number in infos.items()] + [""]
    for title, body in kept:
        lines += [f"### {title}", "", body, ""]
    lines += ["### Rows and failures", ""]
    unexplained = 0
    for row in ROWS:
        report, note = reports[row.name], notes.get(row.name, RowNotes())
        lines += [f"#### {row.name}", "", f"`{row.shown()}` ({versions_of(row, known)})", ""]
        if note.intro:
            lines += [note.intro, ""]
        if report is None:
            lines += ["Not run yet.", ""]
            continue
        failed = [c for c in report["clauses"] if c["verdict"] == "failed"]
        skipped = [c for c in report["clauses"] if c["verdict"] == "skipped"]
        lines += [_counts(report["clauses"]) + ".", ""]
        shown, missing = failure_lines(
            failed, note, summaries, "docs/compatibility/http-explanations.md", _one_line
        )
        lines += shown
        unexplained += missing
        for clause in skipped:
            lines.append(f"- **{clause['id']}** skipped: {_one_line(clause['message'])}")
        stale = sorted(set(note.clauses) - {c["id"] for c in failed})
        if stale:
            lines += ["", f"Explanations kept for clauses that do not fail in this run: {', '.join(stale)}."]
        lines.append("")
    if unexplained:
        print(f"warning: {unexplained} failures have no explanation", file=sys.stderr)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip()
    if re.search(r"^## ", text, flags=re.M):
        raise SystemExit("the http matrix section has a '## ' heading, which would split explanations.md")
    return text


def _counts(clauses: list[dict[str, Any]]) -> str:
    counted: dict[str, int] = {}
    for clause in clauses:
        counted[clause["verdict"]] = counted.get(clause["verdict"], 0) + 1
    order = ("passed", "failed", "not offered", "info", "skipped", "not applicable")
    parts = [f"{counted[v]} {v}" for v in order if v in counted]
    parts += [f"{n} {v}" for v, n in counted.items() if v not in order]
    return ", ".join(parts).capitalize()


def _one_line(message: str, limit: int = 300) -> str:
    return one_line(message, limit, in_table=True)


def matrix() -> dict[str, Any]:
    """The matrix as data: versions, and per row every clause's verdict, with the
    classification and explanation of each failure (None when unexplained)."""
    _, _, notes = read_explanations()
    known = versions()
    rows = []
    for row in ROWS:
        report = load_report(row)
        entry: dict[str, Any] = {
            "name": row.name,
            "command": row.shown(),
            "versions": {shown_name(p): known.get(p) for p in row.packages},
            "storekit": None if report is None else report.get("storekit"),
            "clauses": [],
        }
        note = notes.get(row.name, RowNotes())
        for clause in [] if report is None else report["clauses"]:
            explained = note.clauses.get(clause["id"]) if clause["verdict"] == "failed" else None
            entry["clauses"].append(
                {
                    "id": clause["id"],
                    "verdict": clause["verdict"],
                    "message": clause.get("message", ""),
                    "classification": explained.kind if explained else None,
                    "explanation": explained.text if explained else None,
                }
            )
        rows.append(entry)
    return {
        "schema": 1,
        "generated_by": "scripts/http_matrix.py",
        "page": "docs/compatibility.md",
        "protocol": HTTP_PROTOCOL,
        "classifications": list(KINDS),
        "clauses": [{"id": c.id, "summary": c.summary} for c in HTTP_CLAUSES],
        "versions": known,
        "rows": rows,
    }


def matrix_text() -> str:
    return json.dumps(matrix(), indent=2, ensure_ascii=False) + "\n"


def between_markers(text: str, path: Path) -> tuple[int, int]:
    """Where the section starts and ends in ``text``; SystemExit if the markers are not there once."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"{path} must hold '{START}' then '{END}', once each")
    return text.index(START) + len(START), text.index(END)


def rewrite(path: Path, body: str) -> bool:
    """Put ``body`` between the markers of ``path``; whether that changed the file."""
    text = path.read_text(encoding="utf-8")
    start, end = between_markers(text, path)
    new = text[:start] + "\n" + body + "\n" + text[end:]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", choices=list(BY_NAME), help="run this row only")
    parser.add_argument("--render-only", action="store_true", help="rewrite from the saved reports")
    args = parser.parse_args(argv)
    if not args.render_only:
        run([BY_NAME[name] for name in args.only] if args.only else ROWS)
    body = section()
    for page in PAGES:
        rewrite(page, body)
    MATRIX.write_text(matrix_text(), encoding="utf-8")
    written = [str(path.relative_to(ROOT)) for path in (*PAGES, MATRIX)]
    print(f"wrote the http matrix into {', '.join(written)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    raise SystemExit(main())

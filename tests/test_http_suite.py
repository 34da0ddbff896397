"""The HTTP suite has teeth: a small middleware that is right passes every clause, and each
of its one-bug variants (tests/http_naive_app.py) fails exactly the clause it breaks, over
real HTTP (waitress) with real cookie jars. The plugin's usage errors name the fix."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import waitress
from http_naive_app import BUGS, make_app
from waitress.server import BaseWSGIServer

HERE = Path(__file__).parent
VARIANTS = [None, *BUGS]


def serve(app: Any) -> tuple[str, BaseWSGIServer]:
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=8)
    assert isinstance(server, BaseWSGIServer)
    threading.Thread(target=server.run, daemon=True, name="probe-app").start()
    return f"http://127.0.0.1:{server.effective_port}/probe", server


def run_http_suite(cwd: Path, urls: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
    (cwd / "pytest.ini").write_text("[pytest]\n")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    command += [f"--storekit-http={url}" for url in urls] + list(extra)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str | None, dict[str, Any]]]:
    """Every variant's clause rows, from three suite runs side by side."""
    servers = {bug: serve(make_app(bug)) for bug in VARIANTS}
    groups = [VARIANTS[n::3] for n in range(3)]

    def run(index: int) -> tuple[dict[str, Any], str]:
        cwd = tmp_path_factory.mktemp(f"http{index}")
        done = run_http_suite(cwd, [servers[bug][0] for bug in groups[index]], "--storekit-report=r.json")
        return json.loads((cwd / "r.json").read_text()), done.stdout + done.stderr

    try:
        with ThreadPoolExecutor(3) as pool:
            runs = list(pool.map(run, range(3)))
        by_url = {row["url"]: row for report, _ in runs for row in report["targets"]}
        found = {bug: by_url[servers[bug][0]] for bug in VARIANTS}
        for bug in VARIANTS:
            found[bug]["output"] = "\n".join(out for _, out in runs)[-4000:]
        yield found
    finally:
        for _, server in servers.values():
            server.close()


def test_the_right_middleware_passes_every_clause(verdicts: dict[str | None, dict[str, Any]]) -> None:
    row = verdicts[None]
    seen = {c["id"]: c["verdict"] for c in row["clauses"]}
    assert seen == {f"http.{n}": "passed" for n in range(1, 14)} | {"http.12": "info"}, row["output"]
    assert row["level"] == "passes"
    (info,) = [c["message"] for c in row["clauses"] if c["id"] == "http.12"]
    assert info.startswith(("merged", "one write lost")), info


@pytest.mark.parametrize("bug", list(BUGS))
def test_a_middleware_with_one_bug_fails_exactly_its_clause(
    verdicts: dict[str | None, dict[str, Any]], bug: str
) -> None:
    row = verdicts[bug]
    failed = {c["id"]: c["message"] for c in row["clauses"] if c["verdict"] == "failed"}
    assert list(failed) == BUGS[bug].split(), (bug, failed, row["output"])
    for clause, message in failed.items():
        assert message.startswith(f"{clause}: "), message
    skipped = [c for c in row["clauses"] if c["verdict"] == "skipped"]
    assert all("depends on " in c["message"] for c in skipped), skipped
    assert row["level"] == "fails"


def test_the_report_names_the_suite_and_protocol(verdicts: dict[str | None, dict[str, Any]]) -> None:
    row = verdicts[None]
    assert [c["id"] for c in row["clauses"]] == [f"http.{n}" for n in range(1, 14)]
    assert row["url"].endswith("/probe")


def test_an_app_that_is_not_a_probe_is_a_usage_error_that_says_so(tmp_path: Path) -> None:
    def not_a_probe(environ: Any, start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no"]

    url, server = serve(not_a_probe)
    try:
        done = run_http_suite(tmp_path, [url])
    finally:
        server.close()
    assert done.returncode == 4, done.stdout + done.stderr
    assert f"--storekit-http={url}: {url}/features answered HTTP 404; is this a probe app?" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--storekit-http=ftp://x/probe"], "'ftp://x/probe' is not an http:// or https:// URL"),
        (["--storekit-http=http://127.0.0.1:9/probe"], "cannot reach http://127.0.0.1:9/probe/features"),
        (
            ["--storekit-http=http://127.0.0.1:9/probe", "--storekit=storekit.reference:MemoryStore"],
            "run them in separate pytest runs",
        ),
    ],
)
def test_usage_errors_name_the_value_and_the_fix(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stdout + done.stderr
    assert message in done.stderr

"""The middleware matrix cannot drift from its reports: the section between the http-matrix
markers (in docs/compatibility.md and in the explanations.md it is rendered from) and
docs/compatibility/http-matrix.json are what ``scripts/http_matrix.py --render-only`` makes
of the saved reports, and every failure in them is explained.

The full matrix is what ``python scripts/http_matrix.py`` runs (about 3 minutes)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def script() -> Any:
    spec = importlib.util.spec_from_file_location("http_matrix", ROOT / "scripts" / "http_matrix.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["http_matrix"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _between(script: Any, path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    start, end = script.between_markers(text, path)
    return text[start:end]


def test_the_section_between_the_markers_is_what_the_saved_reports_render(script: Any) -> None:
    expected = "\n" + script.section() + "\n"
    for page in script.PAGES:
        assert _between(script, page) == expected, (
            f"{page.relative_to(ROOT)} is out of date: run python scripts/http_matrix.py --render-only"
        )


def test_http_matrix_json_is_what_the_saved_reports_render(script: Any) -> None:
    assert script.MATRIX.read_text(encoding="utf-8") == script.matrix_text(), (
        "docs/compatibility/http-matrix.json is out of date: run python scripts/http_matrix.py --render-only"
    )


def test_every_row_has_a_saved_report_of_every_http_clause(script: Any) -> None:
    from storekit.clauses import HTTP_CLAUSES

    for row in script.ROWS:
        report = script.load_report(row)
        assert report is not None, (
            f"{row.name}: no report; run python scripts/http_matrix.py --only '{row.name}'"
        )
        assert [c["id"] for c in report["clauses"]] == [c.id for c in HTTP_CLAUSES], row.name


def test_every_failure_is_explained_and_no_explanation_is_stale(script: Any) -> None:
    _, _, notes = script.read_explanations()
    assert set(notes) <= {row.name for row in script.ROWS}
    matrix = json.loads(script.MATRIX.read_text(encoding="utf-8"))
    for row in matrix["rows"]:
        failed = {c["id"] for c in row["clauses"] if c["verdict"] == "failed"}
        unexplained = sorted(c["id"] for c in row["clauses"] if c["id"] in failed and not c["explanation"])
        assert not unexplained, f"{row['name']}: add {unexplained} to docs/compatibility/http-explanations.md"
        explained = set(notes[row["name"]].clauses) if row["name"] in notes else set()
        assert explained <= failed, f"{row['name']}: explanations of clauses that pass: {explained - failed}"
        for clause in row["clauses"]:
            if clause["verdict"] == "failed":
                assert clause["classification"] in script.KINDS


def test_rewriting_changes_only_what_is_between_the_markers(script: Any, tmp_path: Path) -> None:
    page = tmp_path / "compatibility.md"
    shutil.copy(script.PAGES[0], page)
    original = page.read_text(encoding="utf-8")
    start, end = script.between_markers(original, page)
    page.write_text(original[:start] + "\nstale\n" + original[end:], encoding="utf-8")
    assert script.rewrite(page, script.section())
    assert page.read_text(encoding="utf-8") == original
    assert not script.rewrite(page, script.section())

"""The README's example and commands do what the README says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_the_ten_line_store_reaches_core_with_optional_methods_not_offered(tmp_path: Path) -> None:
    (example,) = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(example.strip().splitlines()) <= 12
    (tmp_path / "tiny.py").write_text(example)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--storekit=tiny:TinyStore",
         "--storekit-report=r.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    (target,) = json.loads((tmp_path / "r.json").read_text())["targets"]
    assert target["level"] == "core"
    verdicts = {c["id"]: c["verdict"] for c in target["clauses"]}
    assert {verdicts[c] for c in ("touch.1", "length.1", "clear.1", "all.1")} == {"not offered"}


def test_the_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    assert "storekit check" in blocks[0]
    assert "--storekit=storekit.reference:MemoryStore" in blocks[1]
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci
    assert README.index("<!-- test-command -->") < README.index(blocks[1])


def test_every_document_the_readme_links_exists() -> None:
    root = Path(__file__).resolve().parent.parent
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert links
    assert [link for link in links if not (root / link).exists()] == []

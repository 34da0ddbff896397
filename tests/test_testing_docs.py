"""docs/testing.md says what storekit.testing holds, and its examples run.

Each exported name has a ```### `name` ``` heading and no other name has one;
every ```python block runs (blocks marked with a preceding
``<!-- not-run -->`` only have to compile), and those marked
``<!-- needs redis-server -->`` are skipped, saying how to install it, where
redis-server is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import storekit.testing

DOC = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
NOT_RUN = "<!-- not-run -->"
NEEDS_REDIS = "<!-- needs redis-server -->"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
MODULE_NAME = re.compile(r"# ([\w/]+\.py)\n")


@dataclass(frozen=True)
class Block:
    line: int
    language: str
    code: str
    mark: str

    @property
    def module(self) -> str:
        """The file name on the block's first line (``# example.py``), else one made from the line."""
        match = MODULE_NAME.match(self.code)
        return match.group(1) if match else f"block_{self.line}.py"

    def __str__(self) -> str:
        return f"{DOC.name}:{self.line}"


def blocks() -> list[Block]:
    text = DOC.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        mark = before[-1].strip() if before and before[-1].startswith("<!--") else ""
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(line, match.group(1), match.group(2), mark))
    return found


def python_blocks() -> list[Block]:
    return [block for block in blocks() if block.language == "python"]


def documented_names() -> list[str]:
    """The names of the ``### `name` `` headings outside code blocks."""
    outside = FENCE.sub("", DOC.read_text(encoding="utf-8"))
    return re.findall(r"^### `(\w+)`$", outside, re.M)


def test_the_page_documents_exactly_what_storekit_testing_exports() -> None:
    names = documented_names()
    assert len(names) == len(set(names)), names
    assert sorted(names) == sorted(storekit.testing.__all__)


def test_the_marks_are_known_and_every_example_starting_a_redis_server_has_its_mark() -> None:
    found = python_blocks()
    assert {block.mark for block in found} <= {"", NOT_RUN, NEEDS_REDIS}
    starts_redis = [b for b in found if re.search(r"\bRedis(?:Server|ClusterServers)\(", b.code)]
    assert [str(b) for b in starts_redis if b.mark not in (NEEDS_REDIS, NOT_RUN)] == []
    modules = [b.module for b in found]
    assert len(modules) == len(set(modules)), modules
    assert {"redis_example.py", "request_example.py"} <= {b.module for b in found if b.mark != NOT_RUN}


@pytest.mark.parametrize("block", [b for b in python_blocks() if b.mark == NOT_RUN], ids=str)
def test_a_sketch_compiles(block: Block) -> None:
    compile(block.code, str(block), "exec")


@pytest.mark.parametrize("block", [b for b in python_blocks() if b.mark != NOT_RUN], ids=str)
def test_an_example_runs(block: Block, tmp_path: Path) -> None:
    if block.mark == NEEDS_REDIS and shutil.which("redis-server") is None:
        pytest.skip(f"{block} needs redis-server, which is not installed: apt-get install redis-server")
    script = tmp_path / block.module
    script.write_text(block.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("STOREKIT_TARGET", "PYTEST_ADDOPTS")}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr

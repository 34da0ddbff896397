"""storekit demo: the seed's /hello example, run for real."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path


def test_the_demo_greets_then_greets_again_from_the_same_worker_and_leaves_nothing(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "storekit", "demo", "--workers", "3"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0, out
    first = re.search(r"^Hello from worker (\d+)$", out, re.M)
    again = re.search(r"^Hello again from worker (\d+)$", out, re.M)
    assert first, out
    assert again, out
    assert first.group(1) == again.group(1)
    assert first.start() < again.start()
    deadline = time.monotonic() + 15
    while (left := _in_session(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == []


def _in_session(sid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry.name))
    return found

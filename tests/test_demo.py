"""storekit demo: the seed's /hello example, run for real."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from helpers import nothing_left_in_session


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
    nothing_left_in_session(process.pid)

"""What the project's tests share: polling with a deadline, and finding leftover processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storekit.codec import expires_in


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` until it holds; fail the test, saying ``what`` went wrong, after ``timeout`` s."""
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what or 'the condition did not hold'} (waited {timeout}s)")
        time.sleep(0.01)


def in_session(sid: int) -> list[str]:
    """The live processes of session ``sid`` (a run started with start_new_session and
    everything it started), as "pid: command line"."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(f"{entry.name}: {cmdline}")
    return found


def nothing_left_in_session(sid: int, timeout: float = 15.0) -> None:
    """Wait until session ``sid`` is empty (multiprocess's resource tracker leaves a
    moment after its parent); fail naming what is left."""
    __tracebackhide__ = True
    wait_until(lambda: not in_session(sid), timeout, f"processes outlived the run: {in_session(sid)}")


def expiring_in(seconds: float) -> dict[str, Any]:
    """A one-key session whose ``cookie.expires`` is ``seconds`` from now (before now when negative)."""
    return {"n": 1, "cookie": expires_in(seconds)}

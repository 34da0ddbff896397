"""Writing a benchmark's results into its own section of docs/benchmarks.md, and the
paired ratios they report."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the section that starts with ``heading`` (up to the next "## "), or add it
    at the end, leaving every other section of ``path`` as it was."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(f"{heading}\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        rest = text[end + 1 :] if end >= 0 else ""
        text = text[:start] + section.rstrip("\n") + ("\n\n" + rest if rest else "\n")
    path.write_text(text)


def paired(a: Sequence[T], b: Sequence[T], ratio: Callable[[T, T], float]) -> str:
    """The median and range of ``ratio(a, b)`` over rounds: each round measures both back to
    back, so a drift of the machine's speed during the run cancels out of every ratio."""
    try:
        ratios = sorted(ratio(x, y) for x, y in zip(a, b, strict=True))
    except ZeroDivisionError:  # a run that served nothing, or used less than one clock tick
        return "n/a"
    return f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"

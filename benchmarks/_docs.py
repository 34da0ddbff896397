"""Writing a benchmark's results into its own section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the section that starts with ``heading`` (up to the next "## "), or add it
    at the end, leaving every other section of ``path`` as it was."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(f"{heading}\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    path.write_text(text)

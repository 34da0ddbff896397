"""What the two matrix scripts (compatibility.py, http_matrix.py) share: their explanations
files, parsed, and the lines that show each failure with its explanation."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Explanation:
    clause: str
    kind: str
    text: str


@dataclass
class Notes:
    """A row's section of an explanations file: its note, and its explanations by clause."""

    intro: str = ""
    clauses: dict[str, Explanation] = field(default_factory=dict)


def read_explanations(
    path: Path, known: Collection[str], kinds: Collection[str]
) -> tuple[str, list[tuple[str, str]], dict[str, Notes]]:
    """An introduction, ``## <heading>`` sections kept as they are (title, body), and
    ``## <row>`` sections (a name among ``known``) with an optional note and
    ``### <clause> · <kind>`` entries, ``kind`` one of ``kinds``."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    text = re.sub(r"\A<!--.*?-->\s*", "", text, flags=re.S)
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    intro, kept, notes = parts[0].strip(), [], {}
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        name = title.strip()
        if name not in known:
            kept.append((name, body.strip()))
            continue
        entries = re.split(r"^### (.+)$", body, flags=re.M)
        row = Notes(intro=entries[0].strip())
        for head, content in zip(entries[1::2], entries[2::2], strict=True):
            clause, _, kind = (piece.strip() for piece in head.partition("·"))
            if kind not in kinds:
                raise SystemExit(f"{path}: '### {head}' must name one of {tuple(kinds)} after '·'")
            row.clauses[clause] = Explanation(clause, kind, content.strip())
        notes[name] = row
    return intro, kept, notes


def one_line(message: str, limit: int = 300, *, in_table: bool = False) -> str:
    """``message`` on one line, backquotes made quotes (and bars slashes ``in_table``), cut to ``limit``."""
    text = " ".join(message.split()).replace("`", "'")
    if in_table:
        text = text.replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_lines(
    failed: list[dict[str, Any]],
    note: Notes,
    summaries: dict[str, str],
    source: str,
    shown: Any = one_line,
) -> tuple[list[str], int]:
    """The lines of each failed clause, with what was seen and its explanation (or where to
    add one: ``source``), and how many had none."""
    lines: list[str] = []
    unexplained = 0
    for clause in failed:
        explanation = note.clauses.get(clause["id"])
        kind = explanation.kind if explanation else "unexplained"
        lines += [
            f"- **{clause['id']}** ({summaries.get(clause['id'], '')}) — *{kind}*",
            f"  - seen: `{shown(clause['message'])}`",
        ]
        if explanation:
            lines.append("  - " + explanation.text.replace("\n", "\n    "))
        else:
            unexplained += 1
            lines.append(f"  - no explanation yet: add one to {source}")
    return lines, unexplained

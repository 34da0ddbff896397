"""Declared known failures: the file ``--storekit-known-failures`` names, parsed.

A store's author lists the clauses the store is known to fail, with why and,
optionally, a link to the issue; the suite shows them as ``known``, never lets
them raise a level, and says when one passes so that the file gets cleaned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["KNOWN_FORM", "KnownFailure", "KnownFailures"]

KNOWN_FORM = "CLAUSE: REASON [LINK]"
"""A line of a known-failures file: a clause ID (or ``model``), a colon, why the store
fails it, and optionally, as the line's last word, an http(s) link (the issue)."""


@dataclass(frozen=True)
class KnownFailure:
    """One clause that a store is declared to fail, and why: ``line`` is where the file says so."""

    clause: str
    reason: str
    link: str | None
    line: int


@dataclass(frozen=True)
class KnownFailures:
    """The clauses of a known-failures file (``--storekit-known-failures``), by ID.

    One clause per line, as ``get.2: pickles sessions, so tuples stay tuples
    https://example.org/issues/7``; blank lines and lines starting with ``#`` are
    ignored. ``path`` is the file as the user named it, for the messages that ask to
    edit it.
    """

    path: str
    entries: dict[str, KnownFailure]

    @classmethod
    def parse(cls, text: str, path: str) -> KnownFailures:
        """The entries of ``text``; ValueError naming the line that is not one."""
        from storekit.clauses import STATEFUL, by_id

        entries: dict[str, KnownFailure] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            clause, colon, rest = (part.strip() for part in line.partition(":"))
            if not colon or not clause or " " in clause:
                raise ValueError(f"line {number}: expected {KNOWN_FORM!r}, got {raw!r}")
            if clause != STATEFUL:
                try:
                    by_id(clause)
                except KeyError as exc:
                    raise ValueError(f"line {number}: {exc.args[0]}") from None
            if clause in entries:
                first = entries[clause].line
                raise ValueError(f"line {number}: {clause} is declared twice (first on line {first})")
            words = rest.split()
            link = words.pop() if words and words[-1].startswith(("https://", "http://")) else None
            if not words:
                raise ValueError(f"line {number}: {clause} has no reason; say why it fails: {KNOWN_FORM!r}")
            entries[clause] = KnownFailure(clause, " ".join(words), link, number)
        return cls(path, entries)

    @classmethod
    def read(cls, path: str, relative_to: Path | None = None) -> KnownFailures:
        """Parse the UTF-8 file at ``path`` (relative to ``relative_to``); ValueError saying
        what is wrong with it, OSError if it cannot be read."""
        file = Path(path) if relative_to is None else relative_to / path
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        return cls.parse(text, path)

    def get(self, clause: str) -> KnownFailure | None:
        return self.entries.get(clause)

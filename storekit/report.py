"""Verdicts per clause, each profile's level, and the table, JSON and badge that show them."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storekit.clauses import (
    ADDED_OPTIONAL,
    CLAUSES,
    CONTRACT,
    LEVELS,
    PROFILES,
    SECTIONS,
    STATEFUL,
    Profile,
    by_id,
    profile,
)
from storekit.known import KnownFailure, KnownFailures
from storekit.target import Target

__all__ = ["VERDICTS", "Outcome", "Results", "Verdict", "badge", "levels"]

SCHEMA = 1
VERDICTS = (
    "passed",
    "failed",
    "known",
    "unexpected pass",
    "skipped",
    "not offered",
    "not applicable",
    "info",
)
"""Every verdict, in the order the table counts them. ``known`` and ``unexpected pass``
are a declared known failure that failed and one that passed (only with
``--storekit-known-failures``)."""
DECLARED = ("known", "unexpected pass")
"""The verdicts of a clause the known-failures file names: neither counts toward a level."""
VERDICT_PROPERTY = "storekit_verdict"
"""The ``user_properties`` key of a test report whose skip carries its verdict
(``not offered``, ``not applicable`` or ``skipped``); storekit.suite sets it."""
REASON_PROPERTY = "storekit_reason"
"""The ``user_properties`` key of that skip's reason, the verdict's message."""
INFO_PROPERTY = "storekit_info"
"""The ``user_properties`` key that a passing test sets to make its verdict ``info``."""

ACCEPTED: dict[str, frozenset[str]] = {
    "core": frozenset({"passed", "info", "not applicable"}),
    "full": frozenset({"passed", "info", "not applicable"}),
    "shared": frozenset({"passed", "info"}),  # a target claims these: they must run and pass
    "sticky": frozenset({"passed", "info"}),
}
"""The verdicts with which a clause counts toward each level."""

COLORS = {"none": "red", "core": "yellow", "full": "green", "shared": "brightgreen", "sticky": "brightgreen"}
PYTHON_VALUES_COLOR = "blue"
"""The badge's colour for a python-values level: it promises less than any JSON level."""
_HEX = {"red": "#e05d44", "yellow": "#dfb317", "green": "#97ca00", "brightgreen": "#4c1", "blue": "#007ec6"}


def levels(verdicts: Mapping[str, str]) -> dict[str, str]:
    """Each profile's level (``none``, ``core``, ``full``, ``shared`` or ``sticky``) from the
    verdict of each clause ID (and ``model``), as a saved report's clauses give them.

    A level is reached when every clause it and the levels below it require has a verdict
    it accepts; a clause missing from ``verdicts`` holds it back, and so does a declared
    known failure (``known``, ``unexpected pass``), whatever this run saw. A failing model
    holds every profile at ``none``.
    """
    return {p.name: _level(p, verdicts) for p in PROFILES}


def _level(of: Profile, verdicts: Mapping[str, str]) -> str:
    if verdicts.get(STATEFUL) in ("failed", *DECLARED):
        return "none"
    reached = "none"
    for level, _ in LEVELS:
        if any(not _counts(level, clause, verdicts.get(clause, "skipped")) for clause in of.requires(level)):
            break
        reached = level
    return reached


def _counts(level: str, clause: str, verdict: str) -> bool:
    if verdict == "not offered" and by_id(clause).section in ADDED_OPTIONAL:
        return True  # a section a later version added keeps a v1 store's level when not offered
    return verdict in ACCEPTED[level]


def badge(targets: Iterable[Mapping[str, str]]) -> tuple[str, str]:
    """The badge's message and shields colour for targets given as their clause verdicts.

    It shows the lowest JSON level among the targets; when that is ``none`` but every
    target reaches a python-values level, the lowest of those, labelled
    (``python-values: full``); ``fails core`` when neither. ``(2 known)`` follows when
    clauses that the shown profile requires are declared known failures.
    """
    every = list(targets)
    order = ["none"] + [level for level, _ in LEVELS]
    shown, level = profile("json"), "none"
    for candidate in PROFILES:
        lowest = min((levels(v)[candidate.name] for v in every), key=order.index, default="none")
        if lowest != "none":
            shown, level = candidate, lowest
            break
    if level == "none":
        message, color = "fails core", COLORS["none"]
    elif shown.name == "json":
        message, color = level, COLORS[level]
    else:
        message, color = f"{shown.name}: {level}", PYTHON_VALUES_COLOR
    required = {c for lvl, _ in LEVELS for c in shown.requires(lvl)} | {STATEFUL}
    known = {c for v in every for c, verdict in v.items() if verdict in DECLARED and c in required}
    return (f"{message} ({len(known)} known)" if known else message), color


@dataclass(frozen=True)
class Outcome:
    """One test's contribution to its clause: ``kind`` is passed, failed, skipped,
    not offered, not applicable or info."""

    nodeid: str
    kind: str
    message: str = ""

    @classmethod
    def from_report(cls, report: Any) -> Outcome | None:
        """The outcome a test report stands for, or None for a report that decides
        nothing (a setup or teardown that passed)."""
        if report.when == "call" or report.failed or report.skipped:
            if report.skipped and hasattr(report, "wasxfail"):
                # A declared known failure that failed: storekit.suite marks its tests xfail,
                # so that it does not fail the run; to its clause it is a failure.
                return cls(report.nodeid, "failed", _failure_message(report))
            if report.failed:
                return cls(report.nodeid, "failed", _failure_message(report))
            properties = [(str(key), str(value)) for key, value in report.user_properties]
            if report.skipped:
                found = dict(properties)
                kind = found.get(VERDICT_PROPERTY, "skipped")
                return cls(report.nodeid, kind, found.get(REASON_PROPERTY) or _skip_reason(report))
            info = [value for key, value in properties if key == INFO_PROPERTY]
            return cls(report.nodeid, "info" if info else "passed", "; ".join(info))
        return None


def _skip_reason(report: Any) -> str:
    """The reason of a plain pytest skip (one that carries no verdict of its own)."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return str(reason).removeprefix("Skipped: ")


def _failure_message(report: Any) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = str(getattr(crash, "message", None) or report.longrepr or "failed")
    if report.when != "call":
        text = f"error in {report.when}: {text}"
    for noise in ("storekit.conformance._support.ClauseViolation: ", "AssertionError: "):
        text = text.removeprefix(noise)
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines)[:500] if lines else text[:500]


@dataclass(frozen=True)
class Verdict:
    clause: str
    verdict: str
    message: str
    known: KnownFailure | None = None
    """The declaration of a clause that the known-failures file names."""

    def shown(self) -> str:
        """The message as the table shows it, with the declaration's reason and link."""
        if self.known is None or self.verdict == "unexpected pass":
            return self.message
        declared = " ".join(filter(None, (self.known.reason, self.known.link)))
        return f"{self.message} [known: {declared}]".lstrip()


class Results:
    """Everything the run learned, per target and clause, and the known failures declared."""

    def __init__(self, targets: list[Target], known: KnownFailures | None = None) -> None:
        self.targets = targets
        self.known = known
        self._outcomes: dict[str, dict[str, list[Outcome]]] = defaultdict(lambda: defaultdict(list))
        self._collected: dict[str, set[str]] = defaultdict(set)
        self._deselected: dict[str, set[str]] = defaultdict(set)

    def collected(self, target: str, clause: str) -> None:
        self._collected[target].add(clause)

    def deselected(self, target: str, clause: str) -> None:
        self._deselected[target].add(clause)

    def add(self, target: str, clause: str, outcome: Outcome) -> None:
        self._outcomes[target][clause].append(outcome)

    def verdicts(self, target: Target) -> list[Verdict]:
        ids = [clause.id for clause in CLAUSES]
        if STATEFUL in self._collected[target.name]:
            ids.append(STATEFUL)
        return [self._verdict(target, clause) for clause in ids]

    def _verdict(self, target: Target, clause: str) -> Verdict:
        found = self._seen(target, clause)
        declared = self.known.get(clause) if self.known is not None else None
        if declared is None or self.known is None:
            return found
        if found.verdict == "failed":
            return Verdict(clause, "known", found.message, declared)
        if found.verdict in ("passed", "info"):
            message = f"known failure {clause} passed: remove it from {self.known.path}"
            return Verdict(clause, "unexpected pass", message, declared)
        return Verdict(clause, found.verdict, found.message, declared)

    def _seen(self, target: Target, clause: str) -> Verdict:
        """The verdict of what the run saw, before any declaration."""
        outcomes = self._outcomes[target.name].get(clause, [])
        if not outcomes:
            return Verdict(clause, *self._unrun(target, clause))
        failed = [o.message for o in outcomes if o.kind == "failed"]
        if failed:
            named = failed[0] if failed[0].startswith(f"{clause}:") else f"{clause}: {failed[0]}"
            return Verdict(clause, "failed", named)
        skipped = [o.message for o in outcomes if o.kind == "skipped"]
        if skipped:
            return Verdict(clause, "skipped", skipped[0])
        kinds = {o.kind for o in outcomes}
        for kind in ("not offered", "not applicable"):
            if kinds == {kind}:
                return Verdict(clause, kind, outcomes[0].message)
        if "info" in kinds:
            return Verdict(clause, "info", next(o.message for o in outcomes if o.kind == "info"))
        if "passed" in kinds:
            return Verdict(clause, "passed", "")
        return Verdict(clause, "skipped", "; ".join(sorted({o.message for o in outcomes})))

    def _unrun(self, target: Target, clause: str) -> tuple[str, str]:
        section = clause.partition(".")[0]
        if SECTIONS.get(section) == "shared" and not target.shared:
            return "not applicable", "the target is not shared (Target(shared=True) runs these)"
        if SECTIONS.get(section) == "outage" and target.outage is None:
            return "not applicable", "the target has no outage hook (Target(outage=...) runs this)"
        if clause in self._deselected[target.name]:
            return "skipped", "not selected in this run"
        if clause not in self._collected[target.name]:
            return "skipped", "no test of this clause was collected (did a suite module fail to import?)"
        return "skipped", "did not run"

    def levels(self, target: Target) -> dict[str, str]:
        """Each profile's level for ``target``: :func:`levels` of its verdicts."""
        return levels({v.clause: v.verdict for v in self.verdicts(target)})

    def level(self, target: Target) -> str:
        """The target's JSON level, the report's ``level``."""
        return self.levels(target)["json"]

    def as_json(self) -> dict[str, Any]:
        from storekit import __version__

        return {
            "schema": SCHEMA,
            "storekit": __version__,
            "contract": CONTRACT,
            "known_failures": None if self.known is None else self.known.path,
            "targets": [
                {
                    "name": target.name,
                    "shared": target.shared,
                    "level": self.level(target),
                    "levels": self.levels(target),
                    "clauses": [_clause_json(v) for v in self.verdicts(target)],
                }
                for target in self.targets
            ],
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def badge(self) -> tuple[str, str]:
        """The badge's message and colour for this run's targets: :func:`badge`."""
        return badge({v.clause: v.verdict for v in self.verdicts(t)} for t in self.targets)

    def write_badge(self, path: Path) -> None:
        import anybadge

        message, color = self.badge()
        label = f"storekit v{CONTRACT}"
        path.parent.mkdir(parents=True, exist_ok=True)
        svg = anybadge.Badge(label=label, value=message, default_color=_HEX[color])
        svg.write_badge(str(path), overwrite=True)
        endpoint = {"schemaVersion": 1, "label": label, "message": message, "color": color}
        endpoint_path = path.with_suffix(".json") if path.suffix == ".svg" else Path(f"{path}.json")
        endpoint_path.write_text(json.dumps(endpoint) + "\n", encoding="utf-8")

    def title(self) -> str:
        """The heading of the terminal table, naming the contract version."""
        return f"storekit conformance (contract v{CONTRACT})"

    def table(self) -> list[str]:
        lines: list[str] = []
        for target in self.targets:
            verdicts = self.verdicts(target)
            found = self.levels(target)
            others = "".join(f"; {name}: {level}" for name, level in found.items() if name != "json")
            lines.append(f"{target.name}: level {found['json']}{others}")
            counts: dict[str, int] = defaultdict(int)
            for v in verdicts:
                counts[v.verdict] += 1
                lines.append(f"  {v.verdict:<15} {v.clause:<10} {v.shown()}".rstrip())
            lines.append("  " + ", ".join(f"{counts[k]} {k}" for k in VERDICTS if counts[k]))
        return lines


def _clause_json(verdict: Verdict) -> dict[str, Any]:
    found: dict[str, Any] = {"id": verdict.clause, "verdict": verdict.verdict, "message": verdict.message}
    if verdict.known is not None:
        found["known"] = {"reason": verdict.known.reason, "link": verdict.known.link}
    return found

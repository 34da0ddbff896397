"""Verdicts per clause, the conformance level, and the table, JSON and badge that show them."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storekit.clauses import CLAUSES, LEVELS, SECTIONS
from storekit.target import Target

SCHEMA = 1
VERDICTS = ("passed", "failed", "skipped", "not offered", "not applicable", "info")
VERDICT_PROPERTY = "storekit_verdict"
"""The ``user_properties`` key of a test report whose skip carries its verdict
(``not offered``, ``not applicable`` or ``skipped``); storekit.suite sets it."""
REASON_PROPERTY = "storekit_reason"
"""The ``user_properties`` key of that skip's reason, the verdict's message."""
INFO_PROPERTY = "storekit_info"
"""The ``user_properties`` key that a passing test sets to make its verdict ``info``."""
STATEFUL = "model"
"""The stateful model test, shown in its own row: its message names the clause a
failing program breaks, and a failure there holds the target below level core."""

COLORS = {"none": "red", "core": "yellow", "full": "green", "shared": "brightgreen", "sticky": "brightgreen"}
_HEX = {"red": "#e05d44", "yellow": "#dfb317", "green": "#97ca00", "brightgreen": "#4c1"}


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


class Results:
    """Everything the run learned, per target and clause."""

    def __init__(self, targets: list[Target]) -> None:
        self.targets = targets
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

    def level(self, target: Target) -> str:
        verdicts = {v.clause: v.verdict for v in self.verdicts(target)}
        reached = "none"
        for level, sections in LEVELS:
            strict = level in ("shared", "sticky")  # these need the clauses passed, not waived
            allowed = {"passed", "info"} if strict else {"passed", "info", "not applicable"}
            clauses = [c.id for c in CLAUSES if c.section in sections]
            if not all(verdicts[c] in allowed for c in clauses):
                break
            if STATEFUL in verdicts and verdicts[STATEFUL] == "failed":
                break
            reached = level
        return reached

    def as_json(self) -> dict[str, Any]:
        from storekit import __version__

        return {
            "schema": SCHEMA,
            "storekit": __version__,
            "targets": [
                {
                    "name": target.name,
                    "shared": target.shared,
                    "level": self.level(target),
                    "clauses": [
                        {"id": v.clause, "verdict": v.verdict, "message": v.message}
                        for v in self.verdicts(target)
                    ],
                }
                for target in self.targets
            ],
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def lowest_level(self) -> str:
        order = ["none"] + [level for level, _ in LEVELS]
        return min((self.level(t) for t in self.targets), key=order.index, default="none")

    def write_badge(self, path: Path) -> None:
        import anybadge

        level = self.lowest_level()
        message = "fails core" if level == "none" else level
        color = COLORS[level]
        path.parent.mkdir(parents=True, exist_ok=True)
        badge = anybadge.Badge(label="storekit", value=message, default_color=_HEX[color])
        badge.write_badge(str(path), overwrite=True)
        endpoint = {"schemaVersion": 1, "label": "storekit", "message": message, "color": color}
        endpoint_path = path.with_suffix(".json") if path.suffix == ".svg" else Path(f"{path}.json")
        endpoint_path.write_text(json.dumps(endpoint) + "\n", encoding="utf-8")

    def table(self) -> list[str]:
        lines: list[str] = []
        for target in self.targets:
            verdicts = self.verdicts(target)
            lines.append(f"{target.name}: level {self.level(target)}")
            counts: dict[str, int] = defaultdict(int)
            for v in verdicts:
                counts[v.verdict] += 1
                lines.append(f"  {v.verdict:<15} {v.clause:<10} {v.message}".rstrip())
            lines.append("  " + ", ".join(f"{counts[k]} {k}" for k in VERDICTS if counts[k]))
        return lines

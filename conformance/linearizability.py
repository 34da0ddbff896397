"""A linearizability checker for per-sid histories of get, set and destroy.

The search is Wing & Gong's, with the memoization of (set of linearized
operations, state) that Lowe proposed and Porcupine uses: calls and returns
sit in one time-ordered list; at a call, if the model accepts the operation
and the pair is new, the operation is lifted out of the list and the search
starts again from the head; reaching a return means some operation returned
before it could be placed, so the search backtracks. A history is checked
one sid at a time (per-key partitioning: a register per sid).

An operation cut short (its process was killed, its call timed out) has no
return: it is "unknown", may or may not have taken effect, and its return
is placed after everything else.

This module has no pytest or storekit dependencies, so the cross-process
clauses and a store author's own tests can use it directly.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "UNKNOWN",
    "CheckResult",
    "Kind",
    "Operation",
    "check_history",
    "check_partition",
    "minimal_failure",
]


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Hashable = _Unknown()
"""The result of an operation that never returned."""

Kind = Literal["get", "set", "destroy"]


@dataclass(frozen=True)
class Operation:
    """One call on one sid: ``value`` is what set wrote, ``result`` what get read
    (``None`` for a missing session, :data:`UNKNOWN` if it never returned).
    Times are from one monotonic clock; ``returned=None`` means never returned."""

    client: int
    sid: str
    kind: Kind
    value: Hashable
    result: Hashable
    called: int
    returned: int | None

    def describe(self) -> str:
        if self.kind == "set":
            text = f"set({self.value!r})"
        elif self.kind == "get":
            text = f"get() -> {self.result!r}"
        else:
            text = "destroy()"
        end = "never returned" if self.returned is None else f"returned {self.returned}"
        return f"client {self.client}: {text} called {self.called}, {end}"


def _step(state: Hashable, op: Operation) -> tuple[bool, Hashable]:
    if op.kind == "set":
        return True, op.value
    if op.kind == "destroy":
        return True, None
    return (op.result is UNKNOWN or op.result == state), state


@dataclass
class _Node:
    op: int  # index into the partition
    is_call: bool
    prev: _Node | None = None
    next: _Node | None = None
    match: _Node | None = field(default=None, repr=False)  # a call's return node


def _build(ops: list[Operation]) -> _Node:
    """The time-ordered list of calls and returns, behind a sentinel head.
    At equal times calls come first, so touching intervals count as concurrent."""
    horizon = max((t for op in ops for t in (op.called, op.returned) if t is not None), default=0) + 1
    events = []
    for index, op in enumerate(ops):
        events.append((op.called, 0, index, True))
        events.append((op.returned if op.returned is not None else horizon, 1, index, False))
    events.sort()
    head = _Node(op=-1, is_call=False)
    tail = head
    calls: dict[int, _Node] = {}
    for _, _, index, is_call in events:
        node = _Node(op=index, is_call=is_call, prev=tail)
        tail.next = node
        tail = node
        if is_call:
            calls[index] = node
        else:
            calls[index].match = node
    return head


def _lift(call: _Node) -> None:
    for node in (call, call.match):
        assert node is not None
        assert node.prev is not None
        node.prev.next = node.next
        if node.next is not None:
            node.next.prev = node.prev


def _unlift(call: _Node) -> None:
    for node in (call.match, call):
        assert node is not None
        assert node.prev is not None
        node.prev.next = node
        if node.next is not None:
            node.next.prev = node


@dataclass(frozen=True)
class CheckResult:
    """``ok`` is True, False, or None when the search ran out of time."""

    ok: bool | None
    sid: str | None = None
    history: tuple[Operation, ...] = ()

    def explain(self) -> str:
        if self.ok:
            return "linearizable"
        if self.ok is None:
            return f"undecided: the search for sid {self.sid!r} ran out of time"
        lines = [f"no linearization for sid {self.sid!r} ({len(self.history)} operations):"]
        lines += [f"  {op.describe()}" for op in sorted(self.history, key=lambda o: o.called)]
        return "\n".join(lines)


def check_partition(
    ops: list[Operation], *, initial: Hashable = None, deadline: float | None = None
) -> bool | None:
    """Whether one sid's history is linearizable; None if ``deadline`` (a
    ``time.monotonic()`` value) passed first."""
    if not ops:
        return True
    head = _build(ops)
    cache: set[tuple[int, Hashable]] = set()
    stack: list[tuple[_Node, Hashable]] = []
    linearized = 0
    state = initial
    entry = head.next
    steps = 0
    while head.next is not None:
        assert entry is not None
        steps += 1
        if deadline is not None and steps % 4096 == 0 and time.monotonic() > deadline:
            return None
        if entry.is_call:
            ok, new_state = _step(state, ops[entry.op])
            if ok:
                key = (linearized | (1 << entry.op), new_state)
                if key not in cache:
                    cache.add(key)
                    stack.append((entry, state))
                    state, linearized = new_state, key[0]
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if not stack:
                return False
            call, state = stack.pop()
            linearized &= ~(1 << call.op)
            _unlift(call)
            entry = call.next
    return True


def _with_readers(ops: list[Operation], drop: Operation) -> list[Operation]:
    """``ops`` without ``drop`` and without the reads that saw its effect.

    Dropping a write alone would turn its readers into impossible reads and so
    manufacture a failure; dropping them with it keeps every sub-history of a
    linearizable history linearizable, so what fails is a real witness."""
    if drop.kind == "get":
        return [op for op in ops if op is not drop]
    seen = drop.value if drop.kind == "set" else None
    return [op for op in ops if op is not drop and not (op.kind == "get" and op.result == seen)]


def minimal_failure(
    ops: list[Operation], *, initial: Hashable = None, budget: float = 5.0
) -> list[Operation]:
    """A small non-linearizable sub-history of ``ops``: drop operations (a write with
    its readers) while the rest still has no linearization, within ``budget`` seconds."""
    stop = time.monotonic() + budget
    kept = sorted(ops, key=lambda op: op.called)
    index = 0
    while index < len(kept) and time.monotonic() < stop:
        trial = _with_readers(kept, kept[index])
        if check_partition(trial, initial=initial, deadline=stop) is False:
            kept = trial
            index = min(index, len(kept))
        else:
            index += 1
    return kept


def check_history(ops: Iterable[Operation], *, timeout: float = 30.0) -> CheckResult:
    """Check every sid's history; the first failing sid comes back with its
    smallest failing sub-history."""
    by_sid: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        by_sid[op.sid].append(op)
    deadline = time.monotonic() + timeout
    undecided = None
    for sid, partition in sorted(by_sid.items()):
        verdict = check_partition(partition, deadline=deadline)
        if verdict is False:
            return CheckResult(False, sid, tuple(minimal_failure(partition)))
        if verdict is None:
            undecided = CheckResult(None, sid)
    return undecided or CheckResult(True)

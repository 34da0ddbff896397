"""A linearizability checker for per-sid histories of get, set, destroy and replace,
with the checks that come before it: torn reads and reads of unwritten values.

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

A write fills every field of a :func:`record` with its own token, and
:func:`observe` maps a read back to that token, or to :class:`Torn`: a read
names one write, so the search stays per sid, and tearing is reported before
it. :class:`Liveness` bounds what ``length()`` and ``all()`` may see.

This module has no pytest or storekit dependencies, so the cross-process
clauses and a store author's own tests can use it directly.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "FIELDS",
    "UNKNOWN",
    "CheckResult",
    "Kind",
    "Liveness",
    "Operation",
    "Problem",
    "Torn",
    "check_history",
    "check_partition",
    "minimal_failure",
    "observe",
    "record",
]


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Hashable = _Unknown()
"""The result of an operation that never returned."""

Kind = Literal["get", "set", "destroy", "all", "clear", "replace"]
"""``"all"``: this sid's part of an ``all()``, a read; ``"clear"``: its part of a ``clear()``, a destroy;
``"replace"``: a set only while live, whose result is True (it wrote), False (nothing was live) or
:data:`UNKNOWN`."""
_READS = ("get", "all")
_REMOVES = ("destroy", "clear")
_WRITES = ("set", "replace")


@dataclass(frozen=True)
class Torn:
    """What a read returned when the fields of one record came from different
    writes: each field with the token it held, ``None`` where it was missing."""

    fields: tuple[tuple[str, Hashable], ...]

    def sources(self) -> dict[Hashable, list[str]]:
        """The fields by the token they held, in field order."""
        by_token: dict[Hashable, list[str]] = {}
        for name, token in self.fields:
            by_token.setdefault(token, []).append(name)
        return by_token


FIELDS = tuple(f"f{n}" for n in range(6))
"""The fields of the records the suite's histories write."""


def record(token: str, fields: Sequence[str] = FIELDS) -> dict[str, str]:
    """The value one write stores: every field holds the write's ``token``."""
    return dict.fromkeys(fields, token)


def observe(value: object, fields: Sequence[str] = FIELDS, *, ignore: Collection[str] = ()) -> Hashable:
    """What a read of a :func:`record` saw: ``None``, the one token all ``fields``
    share, a :class:`Torn`, or a text naming a value of another shape (which no
    write wrote). Keys in ``ignore`` are not looked at."""
    if value is None:
        return None
    if isinstance(value, dict) and set(value) - set(ignore) <= set(fields):
        present = [value[name] for name in fields if name in value]
        if present and all(isinstance(token, str) for token in present):
            if len(present) == len(fields) and len(set(present)) == 1:
                return present[0]  # type: ignore[no-any-return]
            return Torn(tuple((name, value.get(name)) for name in fields))
    return f"unexpected value {value!r}"


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
        elif self.kind == "replace":
            text = f"replace({self.value!r}) -> {self.result!r}"
        elif self.kind == "get":
            text = f"get() -> {self.result!r}"
        elif self.kind == "all":
            text = f"all() -> {self.result!r} for this sid"
        else:
            text = f"{self.kind}()"
        end = "never returned" if self.returned is None else f"returned {self.returned}"
        return f"client {self.client}: {text} called {self.called}, {end}"


def _step(state: Hashable, op: Operation) -> tuple[bool, Hashable]:
    if op.kind == "set":
        return True, op.value
    if op.kind == "replace":  # writes only over a live session, and says whether it did
        live = state is not None
        return (op.result is UNKNOWN or op.result == live), (op.value if live else state)
    if op.kind in _REMOVES:
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


Problem = Literal["torn", "unwritten", "order"]
"""Why a history failed: a torn read, a read of a value that no set of its sid
had begun to write, or reads and writes that no order explains."""


@dataclass(frozen=True)
class CheckResult:
    """``ok`` is True, False, or None when the search ran out of time. A failure
    names its sid, its :data:`Problem` and the operations that show it: for
    ``"torn"`` the read and the writes its fields came from, for ``"unwritten"``
    the read, for ``"order"`` a small sub-history with no linearization."""

    ok: bool | None
    sid: str | None = None
    history: tuple[Operation, ...] = ()
    problem: Problem | None = None

    def explain(self) -> str:
        if self.ok:
            return "linearizable"
        if self.ok is None:
            return f"undecided: the search for sid {self.sid!r} ran out of time"
        if self.problem == "torn":
            return self._explain_torn()
        if self.problem == "unwritten":
            (read,) = self.history
            return (
                f"sid {self.sid!r} read a value never written to it: {read.describe()}; "
                f"no set of this sid had begun to write {read.result!r} when that read returned"
            )
        lines = [f"no linearization for sid {self.sid!r} ({len(self.history)} operations):"]
        lines += [f"  {op.describe()}" for op in sorted(self.history, key=lambda o: o.called)]
        return "\n".join(lines)

    def _explain_torn(self) -> str:
        read, *writes = self.history
        assert isinstance(read.result, Torn)
        sources = read.result.sources()
        end = "never returned" if read.returned is None else f"returned {read.returned}"
        call = "all()" if read.kind == "all" else "get()"
        lines = [
            f"torn read of sid {self.sid!r}: client {read.client}: {call} called {read.called}, {end}, "
            "gave a session whose fields no one write made:"
        ]
        for token, names in sources.items():
            fields = ", ".join(names)
            if token is None:
                lines.append(f"  {fields}: missing")
                continue
            made = [op.describe() for op in writes if op.value == token]
            lines.append(f"  {fields}: {token!r}, from " + (" and ".join(made) or "no set of this sid"))
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
    if drop.kind in _READS or (drop.kind == "replace" and drop.result is False):
        return [op for op in ops if op is not drop]  # it wrote nothing
    if drop.kind in _REMOVES:  # its readers: the reads of None, and the replaces that found nothing
        return [
            op
            for op in ops
            if op is not drop
            and not (op.kind in _READS and op.result is None)
            and not (op.kind == "replace" and op.result is False)
        ]
    # A write: a replace that wrote may have written over it alone, so every such replace
    # goes too, with the readers of what they wrote (removing writes never makes a moment
    # live that was not, so what is left keeps its linearization).
    gone = {drop.value} | {op.value for op in ops if op.kind == "replace" and op.result is not False}
    return [
        op
        for op in ops
        if op is not drop
        and not (op.kind == "replace" and op.result is not False)
        and not (op.kind in _READS and op.result in gone)
    ]


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


def _read_problem(sid: str, ops: list[Operation], problem: Problem) -> CheckResult | None:
    """The first torn read of ``ops``, or the first read of a value that no set had
    begun to write when the read returned."""
    began: dict[Hashable, int] = {}
    for op in ops:
        if op.kind == "set" or (op.kind == "replace" and op.result is not False):
            began[op.value] = min(op.called, began.get(op.value, op.called))
    for read in sorted((op for op in ops if op.kind in _READS), key=lambda o: o.called):
        if problem == "torn" and isinstance(read.result, Torn):
            tokens = set(read.result.sources())
            writes = tuple(op for op in ops if op.kind in _WRITES and op.value in tokens)
            return CheckResult(False, sid, (read, *writes), "torn")
        if problem == "unwritten" and read.result is not None and read.result is not UNKNOWN:
            start = began.get(read.result)
            if start is None or (read.returned is not None and start > read.returned):
                return CheckResult(False, sid, (read,), "unwritten")
    return None


def check_history(ops: Iterable[Operation], *, timeout: float = 30.0) -> CheckResult:
    """Check every sid's history for torn reads, then for reads of values not
    written before they returned, then for a linearization; a failure comes
    back with the operations that show it. Reads of kind ``"all"`` are not
    searched: ``all()`` need not be atomic (a ``SCAN`` is not), and its long
    interval would make the search explode; see :meth:`Liveness.live`."""
    by_sid: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        by_sid[op.sid].append(op)
    partitions = sorted(by_sid.items())
    problem: Problem
    for problem in ("torn", "unwritten"):
        for sid, partition in partitions:
            found = _read_problem(sid, partition, problem)
            if found is not None:
                return found
    deadline = time.monotonic() + timeout
    undecided = None
    for sid, partition in partitions:
        searched = [op for op in partition if op.kind != "all"]
        verdict = check_partition(searched, deadline=deadline)
        if verdict is False:
            return CheckResult(False, sid, tuple(minimal_failure(searched)), "order")
        if verdict is None:
            undecided = CheckResult(None, sid)
    return undecided or CheckResult(True)


class Liveness:
    """Which sids of ``ops`` (each empty at first) a count or listing of sessions
    taken from ``called`` to ``returned`` must and may see. Surely live
    throughout: a set returned before ``called`` and no destroy or clear could
    take effect between that set's call and ``returned``. Possibly live at some
    instant: a set began before ``returned`` and no destroy or clear ran wholly
    between that set's return and ``called``. Both hold in every linearization
    (sound), and need no search (decidable)."""

    def __init__(self, ops: Iterable[Operation]) -> None:
        horizon = 1 << 62
        spans: dict[str, tuple[list[tuple[int, int]], list[tuple[int, int]]]] = {}
        for op in ops:
            sets, removes = spans.setdefault(op.sid, ([], []))
            span = (op.called, horizon if op.returned is None else op.returned)
            if op.kind == "set" or (op.kind == "replace" and op.result is not False):
                sets.append(span)
            elif op.kind in _REMOVES:
                removes.append(span)
        self.sids = sorted(spans)
        # per sid, four (sorted keys, running extreme) pairs, so that each question is a bisection
        self._index = {
            sid: (
                _running(sorted((end, start) for start, end in sets), max),  # sets by return: latest call
                _running(sorted(sets), max),  # sets by call: latest return
                _running(sorted(removes), max),  # removes by call: latest return
                _running(sorted((-start, end) for start, end in removes), min),  # by call, last first
            )
            for sid, (sets, removes) in spans.items()
        }

    def live(self, sid: str, called: int, returned: int) -> tuple[bool, bool]:
        """Whether ``sid`` was (surely live throughout, possibly live at some instant)."""
        if sid not in self._index:
            return False, False
        by_return, by_call, removes, removes_late = self._index[sid]
        surely = possibly = False
        n = bisect.bisect_left(by_return[0], called)  # sets that returned before ``called``
        if n:
            latest = by_return[1][n - 1]
            m = bisect.bisect_right(removes[0], returned)  # removes called by ``returned``
            surely = not (m and removes[1][m - 1] >= latest)
        n = bisect.bisect_right(by_call[0], returned)  # sets called by ``returned``
        if n:
            last = by_call[1][n - 1]
            m = bisect.bisect_left(removes_late[0], -last)  # removes called after ``last``
            possibly = not (m and removes_late[1][m - 1] < called)
        return surely, possibly

    def bounds(self, called: int, returned: int) -> tuple[int, int]:
        """(sids surely live throughout, sids possibly live at some instant)."""
        lives = [self.live(sid, called, returned) for sid in self.sids]
        return sum(surely for surely, _ in lives), sum(possibly for _, possibly in lives)


def _running(pairs: list[tuple[int, int]], pick: Callable[[int, int], int]) -> tuple[list[int], list[int]]:
    """The keys of ``pairs`` and, at each place, ``pick`` of the values up to it."""
    keys = [key for key, _ in pairs]
    extremes: list[int] = []
    for _, value in pairs:
        extremes.append(value if not extremes else pick(extremes[-1], value))
    return keys, extremes

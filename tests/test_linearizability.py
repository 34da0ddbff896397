"""The linearizability checker, on hand-made histories."""

from __future__ import annotations

import random

from storekit.conformance.linearizability import UNKNOWN, Kind, Operation, check_history, check_partition


def op(
    client: int, kind: Kind, called: int, returned: int | None, value: object = None, result: object = None
) -> Operation:
    return Operation(client, "s", kind, value, result, called, returned)  # type: ignore[arg-type]


def test_sequential_history_is_linearizable() -> None:
    history = [
        op(0, "set", 0, 1, "a"),
        op(0, "get", 2, 3, result="a"),
        op(0, "destroy", 4, 5),
        op(0, "get", 6, 7),
    ]
    assert check_partition(history) is True


def test_a_stale_read_after_a_completed_write_is_not_linearizable() -> None:
    history = [op(0, "set", 0, 1, "a"), op(0, "set", 2, 3, "b"), op(1, "get", 4, 5, result="a")]
    assert check_partition(history) is False


def test_a_read_overlapping_a_write_may_see_either_value() -> None:
    old = [op(0, "set", 0, 1, "a"), op(0, "set", 2, 10, "b"), op(1, "get", 3, 4, result="a")]
    new = [op(0, "set", 0, 1, "a"), op(0, "set", 2, 10, "b"), op(1, "get", 3, 4, result="b")]
    assert check_partition(old) is True
    assert check_partition(new) is True


def test_a_value_never_written_is_not_linearizable() -> None:
    history = [op(0, "set", 0, 10, "a"), op(1, "get", 1, 2, result="z")]
    assert check_partition(history) is False


def test_two_readers_must_agree_on_an_order() -> None:
    # both writes overlap both reads, but the reads see them in opposite orders: impossible
    history = [
        op(0, "set", 0, 100, "a"),
        op(1, "set", 0, 100, "b"),
        op(2, "get", 10, 20, result="a"),
        op(2, "get", 30, 40, result="b"),
        op(3, "get", 10, 20, result="b"),
        op(3, "get", 30, 40, result="a"),
    ]
    assert check_partition(history) is False


def test_touching_intervals_count_as_concurrent() -> None:
    history = [op(0, "set", 0, 5, "a"), op(1, "get", 5, 6, result=None)]
    assert check_partition(history) is True


def test_an_unknown_write_may_or_may_not_have_happened() -> None:
    took = [op(0, "set", 0, None, "a", UNKNOWN), op(1, "get", 5, 6, result="a")]
    did_not = [op(0, "set", 0, None, "a", UNKNOWN), op(1, "get", 5, 6, result=None)]
    assert check_partition(took) is True
    assert check_partition(did_not) is True


def test_an_unknown_write_cannot_happen_twice() -> None:
    history = [
        op(0, "set", 0, None, "a", UNKNOWN),
        op(1, "set", 1, 2, "b"),
        op(1, "get", 3, 4, result="a"),
        op(1, "get", 5, 6, result="b"),
    ]
    assert check_partition(history) is False


def test_a_failure_comes_back_minimal_and_explained() -> None:
    noise = [op(2, "get", 100 + i * 10, 105 + i * 10, result="b") for i in range(20)]
    history = [op(0, "set", 0, 1, "a"), op(0, "set", 2, 3, "b"), *noise, op(1, "get", 400, 401, result="a")]
    result = check_history(history)
    assert result.ok is False
    assert result.sid == "s"
    assert len(result.history) <= 3
    assert "no linearization for sid 's'" in result.explain()


def test_histories_are_checked_per_sid() -> None:
    a = Operation(0, "a", "set", "x", None, 0, 1)
    b = Operation(1, "b", "get", None, "x", 2, 3)  # 'b' never had x: only wrong if sids were mixed
    assert check_history([a, b]).ok is False
    assert check_history([a, Operation(1, "a", "get", None, "x", 2, 3)]).ok is True


def simulated(count: int, seed: int) -> list[Operation]:
    """A linearizable history: each operation takes effect at a random instant inside
    its own interval, and reads return the register's value at that instant."""
    rng = random.Random(seed)
    planned = []
    for i in range(count):
        called = rng.randint(0, count * 3)
        returned = called + rng.randint(0, 40)
        point = rng.uniform(called, returned)
        kind = rng.choice(["get", "get", "set", "destroy"])
        planned.append((point, i, kind, called, returned))
    value: object = None
    ops = []
    for _, i, kind, called, returned in sorted(planned):
        if kind == "set":
            value = f"v{i}"
            ops.append(Operation(i % 8, "s", "set", value, None, called, returned))
        elif kind == "destroy":
            value = None
            ops.append(Operation(i % 8, "s", "destroy", None, None, called, returned))
        else:
            ops.append(Operation(i % 8, "s", "get", None, value, called, returned))
    return ops


def test_a_long_concurrent_history_of_a_real_register_is_linearizable() -> None:
    for seed in range(5):
        assert check_history(simulated(400, seed), timeout=120).ok is True


def test_one_impossible_read_in_a_long_history_is_found() -> None:
    ops = simulated(400, 11)
    index = next(i for i, o in enumerate(ops) if o.kind == "get" and o.called > 100)
    bad = ops[index]
    ops[index] = Operation(bad.client, bad.sid, "get", None, "never-written", bad.called, bad.returned)
    result = check_history(ops, timeout=120)
    assert result.ok is False
    assert any(o.result == "never-written" for o in result.history)

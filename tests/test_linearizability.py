"""The linearizability checker, on hand-made histories."""

from __future__ import annotations

import random

from storekit.conformance.linearizability import (
    FIELDS,
    UNKNOWN,
    Kind,
    Liveness,
    Operation,
    Torn,
    check_history,
    check_partition,
    observe,
    record,
)


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


def test_a_whole_record_reads_as_its_token_and_the_cookie_is_not_looked_at() -> None:
    assert record("w1") == dict.fromkeys(FIELDS, "w1")
    assert observe(record("w1")) == "w1"
    assert observe({**record("w1"), "cookie": {"expires": "x"}}, ignore=("cookie",)) == "w1"
    assert observe(None) is None


def test_a_record_with_fields_of_two_writes_or_a_missing_field_reads_as_torn() -> None:
    mixed = {**record("a"), "f4": "b", "f5": "b"}
    torn = observe(mixed)
    assert isinstance(torn, Torn)
    assert torn.sources() == {"a": ["f0", "f1", "f2", "f3"], "b": ["f4", "f5"]}
    partial = observe({"f0": "a"})
    assert isinstance(partial, Torn)
    assert partial.sources() == {"a": ["f0"], None: ["f1", "f2", "f3", "f4", "f5"]}


def test_a_value_of_another_shape_is_no_write_at_all() -> None:
    for value in [{}, {"w": "a"}, {**record("a"), "extra": 1}, {**record("a"), "f0": 3}, ["a"]]:
        seen = observe(value)
        assert isinstance(seen, str)
        assert seen.startswith("unexpected value")


def test_a_torn_read_is_reported_as_such_with_its_fields_and_their_writes() -> None:
    torn = observe({**record("a"), "f5": "b"})
    history = [
        op(0, "set", 0, 10, "a"),
        op(1, "set", 0, 10, "b"),
        op(2, "get", 5, 6, result=torn),
        op(3, "get", 20, 21, result="never"),  # also wrong, but the tearing comes first
    ]
    result = check_history(history)
    assert (result.ok, result.problem) == (False, "torn")
    text = result.explain()
    assert text.startswith("torn read of sid 's': client 2: get() called 5, returned 6")
    assert "f0, f1, f2, f3, f4: 'a', from client 0: set('a') called 0, returned 10" in text
    assert "f5: 'b', from client 1: set('b') called 0, returned 10" in text


def test_a_read_of_a_value_whose_write_began_after_it_returned_is_unwritten() -> None:
    history = [op(0, "get", 0, 5, result="a"), op(1, "set", 6, 7, "a")]
    result = check_history(history)
    assert (result.ok, result.problem) == (False, "unwritten")
    assert "no set of this sid had begun to write 'a'" in result.explain()


def test_clear_is_a_destroy_of_each_sid() -> None:
    history = [op(0, "set", 0, 1, "a"), op(1, "clear", 2, 3), op(0, "get", 4, 5, result="a")]
    assert check_history(history).problem == "order"
    assert check_history([*history[:2], op(0, "get", 4, 5, result=None)]).ok is True


def test_the_reads_of_an_all_are_checked_for_tearing_and_writes_but_not_searched() -> None:
    stale = [op(0, "set", 0, 1, "a"), op(0, "set", 2, 3, "b"), op(1, "all", 4, 5, result="a")]
    assert check_history(stale).ok is True  # Liveness, not the search, judges an all()
    torn = [op(0, "set", 0, 1, "a"), op(1, "all", 4, 5, result=observe({"f0": "a"}))]
    assert check_history(torn).problem == "torn"
    assert "all() called 4" in check_history(torn).explain()


def test_liveness_bounds_a_count_by_what_surely_and_possibly_held() -> None:
    ops = [
        Operation(0, "a", "set", "x", None, 0, 10),
        Operation(0, "b", "set", "y", None, 0, 10),
        Operation(1, "b", "destroy", None, None, 20, 30),
        Operation(2, "c", "set", "z", None, 25, 60),
    ]
    live = Liveness(ops)
    assert live.bounds(11, 12) == (2, 2)  # a and b set, nothing else yet
    assert live.bounds(22, 28) == (1, 3)  # b may be going, c may be coming
    assert live.bounds(40, 50) == (1, 2)  # b surely gone, c may be there
    assert live.live("c", 70, 80) == (True, True)
    assert live.bounds(1, 2) == (0, 2)  # the sets were under way


Instants = list[tuple[float, str, bool]]


def simulated_sids(count: int, seed: int, sids: int = 4) -> tuple[list[Operation], Instants]:
    """A linearizable history over several sids, and each write's instant: (when, sid, live after)."""
    rng = random.Random(seed)
    ops: list[Operation] = []
    points: Instants = []
    for i in range(count):
        called = rng.randint(0, count * 3)
        returned = called + rng.randint(0, 40)
        sid = f"s{rng.randrange(sids)}"
        kind: Kind = rng.choice(["set", "set", "destroy", "clear"])
        point = rng.uniform(called, returned)
        if kind == "clear":
            ops += [Operation(i, f"s{n}", "clear", None, None, called, returned) for n in range(sids)]
            points += [(point, f"s{n}", False) for n in range(sids)]
        else:
            ops.append(Operation(i, sid, kind, f"v{i}" if kind == "set" else None, None, called, returned))
            points.append((point, sid, kind == "set"))
    return ops, sorted(points)


def test_liveness_bounds_hold_for_every_instant_of_any_real_history() -> None:
    for seed in range(20):
        ops, points = simulated_sids(200, seed)
        live = Liveness(ops)
        rng = random.Random(seed)
        for _ in range(50):
            called = rng.randint(0, 600)
            returned = called + rng.randint(0, 60)
            low, high = live.bounds(called, returned)
            state: dict[str, bool] = {}
            counts: list[int] = []
            for when, sid, alive in points:
                if when > returned:
                    break
                if when >= called and not counts:
                    counts.append(sum(state.values()))
                state[sid] = alive
                if when >= called:
                    counts.append(sum(state.values()))
            counts.append(sum(state.values()))
            assert all(low <= n <= high for n in counts), (seed, called, returned, low, high, counts)


def test_a_replace_writes_only_over_a_live_session_and_says_so() -> None:
    assert check_partition(
        [op(0, "set", 0, 1, "a"), op(0, "replace", 2, 3, "b", True), op(0, "get", 4, 5, result="b")]
    )
    assert check_partition([op(0, "replace", 0, 1, "b", False), op(0, "get", 2, 3)])
    assert not check_partition([op(0, "replace", 0, 1, "b", True)])  # nothing was live
    assert not check_partition([op(0, "set", 0, 1, "a"), op(0, "replace", 2, 3, "b", False)])  # a was live
    assert not check_partition([op(0, "replace", 0, 1, "b", False), op(0, "get", 2, 3, result="b")])


def test_a_replace_after_a_destroy_that_returned_cannot_have_written() -> None:
    """The logout undone: the destroy returned before the replace was called, yet the write landed."""
    history = [
        op(0, "set", 0, 1, "a"),
        op(1, "destroy", 2, 3),
        op(0, "replace", 4, 5, "b", True),
    ]
    assert check_partition(history) is False
    overlapping = [op(0, "set", 0, 1, "a"), op(1, "destroy", 2, 5), op(0, "replace", 3, 4, "b", True)]
    assert check_partition(overlapping) is True  # the replace may come first; then the destroy removes b
    assert check_partition([*overlapping, op(2, "get", 6, 7, result="b")]) is False


def test_an_unknown_replace_writes_exactly_when_the_session_is_live() -> None:
    assert check_partition([op(0, "replace", 0, None, "b", UNKNOWN), op(1, "get", 2, 3)]) is True
    assert check_partition([op(0, "replace", 0, None, "b", UNKNOWN), op(1, "get", 2, 3, result="b")]) is False
    live = [op(0, "set", 0, 1, "a"), op(0, "replace", 2, None, "b", UNKNOWN), op(1, "get", 3, 4, result="b")]
    assert check_partition(live) is True


def test_a_minimal_failure_with_replaces_keeps_a_real_witness() -> None:
    """Dropping the set under a replace that wrote would leave that replace unexplained by itself;
    the witness keeps the destroy that the replace wrote over."""
    history = [
        op(0, "set", 0, 1, "a"),
        op(1, "destroy", 2, 3),
        op(2, "set", 4, 5, "c"),
        op(3, "destroy", 6, 7),
        op(0, "replace", 8, 9, "b", True),
        op(1, "get", 10, 11, result="b"),
    ]
    result = check_history(history)
    assert result.ok is False
    kinds = sorted(o.kind for o in result.history)
    assert "destroy" in kinds, result.explain()
    assert "replace" in kinds, result.explain()
    assert check_partition([o for o in result.history if o.kind != "destroy"]) is True

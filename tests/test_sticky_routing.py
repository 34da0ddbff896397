"""The sticky server's pure routing logic, and the kernel program checked against it."""

from __future__ import annotations

import ipaddress
import operator
import random
from collections import Counter
from collections.abc import Callable

import pytest

from storekit.reference.sticky.bpf import Insn, ip_hash_program
from storekit.reference.sticky.limits import Limits, check_networks, make_limits
from storekit.reference.sticky.routing import (
    HEAD_LIMIT,
    HeadRoute,
    HeadScanner,
    address_key,
    check_mode,
    check_routing,
    check_threads,
    check_workers,
    fmix32,
    oat_hash,
    parse_bind,
    route_head,
    slot_for_address,
)

# -- hashing ---------------------------------------------------------------------------


def test_oat_hash_matches_jenkins_one_at_a_time() -> None:
    """Vectors shared with sticky-session where its signed JS arithmetic agrees (seed 0)."""
    assert oat_hash(bytes([192, 168, 1, 23])) == 1070623344
    assert oat_hash(ipaddress.ip_address("::1").packed) == 307143837
    assert oat_hash(b"") == 0


def test_address_key_is_4_bytes_for_ipv4_and_16_for_ipv6() -> None:
    assert address_key("127.0.0.1") == bytes([127, 0, 0, 1])
    assert address_key("::1") == bytes(15) + b"\x01"


@pytest.mark.parametrize("mapped", ["::ffff:127.0.0.9", "::FFFF:127.0.0.9", "[::ffff:127.0.0.9]"])
def test_ipv4_mapped_ipv6_address_hashes_like_the_plain_ipv4_address(mapped: str) -> None:
    assert address_key(mapped) == address_key("127.0.0.9")
    assert slot_for_address(mapped, 7, 99) == slot_for_address("127.0.0.9", 7, 99)


def test_zone_of_a_link_local_address_is_ignored() -> None:
    assert address_key("fe80::1%eth0") == address_key("fe80::1")


def test_a_non_address_hashes_as_its_text() -> None:
    assert address_key("unknown") == b"unknown"
    assert 0 <= slot_for_address("not an address \udcff", 4) < 4


RANDOM_SEEDS = [pytest.param(seed, id=f"random{n}") for n, seed in enumerate(random.sample(range(2**32), 5))]
"""Fresh seeds each run, under ids that do not change (parallel runs must collect the same tests)."""


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 - 1, *RANDOM_SEEDS])
def test_64_addresses_over_4_workers_give_no_worker_twice_its_fair_share(seed: int) -> None:
    """sticky.5, for the routing function alone."""
    counts = Counter(slot_for_address(f"127.0.0.{i}", 4, seed) for i in range(1, 65))
    assert max(counts.values()) <= 2 * 64 // 4, (seed, counts)


@pytest.mark.parametrize("workers", [3, 5, 6, 7])
def test_neighbouring_addresses_spread_fairly_over_any_worker_count(workers: int) -> None:
    """One-at-a-time alone kept 127.0.0.1..64 in step modulo 3 (a slot with 2 of 24); fmix32 fixes it."""
    rng = random.Random(workers)
    for seed in (rng.getrandbits(32) for _ in range(50)):
        counts = Counter(slot_for_address(f"127.0.0.{i}", workers, seed) for i in range(1, 65))
        assert len(counts) == workers, (seed, counts)
        assert max(counts.values()) <= 2.2 * 64 / workers, (seed, counts)


def test_fmix32_vectors() -> None:
    assert fmix32(0) == 0
    assert fmix32(1) == 0x514E28B7


def test_same_address_always_gives_the_same_slot() -> None:
    assert len({slot_for_address("10.1.2.3", 5, 42) for _ in range(10)}) == 1


# -- the kernel program, run by a small classic-BPF interpreter -----------------------


ALU: dict[int, Callable[[int, int], int]] = {
    0x00: operator.add,
    0x20: operator.mul,
    0x60: operator.lshift,
    0x70: operator.rshift,
    0x90: operator.mod,
    0xA0: operator.xor,
}


def run_cbpf(program: list[Insn], packet: bytes) -> int:
    """Interpret a classic BPF program whose loads address `packet` through SKF_NET_OFF."""
    a = x = pc = 0
    mask = 0xFFFFFFFF
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        cls, size, mode, op, src = code & 0x07, code & 0x18, code & 0xE0, code & 0xF0, code & 0x08
        if cls == 0x00:  # LD ABS
            assert mode == 0x20
            assert k >= 0xFFF00000
            offset = k - 0xFFF00000
            width = {0x00: 4, 0x10: 1, 0x08: 2}[size]
            a = int.from_bytes(packet[offset : offset + width], "big")
        elif cls == 0x01:  # LDX IMM
            x = k
        elif cls == 0x04:
            a = ALU[op](a, x if src else k) & mask
        elif cls == 0x05:
            assert op == 0x10
            pc += jt if a == k else jf
        elif cls == 0x06:
            return a if code & 0x10 else k
        elif cls == 0x07:
            assert code == 0x07  # TAX
            x = a


def ipv4_header(source: str) -> bytes:
    return bytes([0x45]) + bytes(11) + ipaddress.IPv4Address(source).packed + bytes(4)


def ipv6_header(source: str) -> bytes:
    return bytes([0x60]) + bytes(7) + ipaddress.IPv6Address(source).packed + bytes(16)


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 7, 64])
def test_kernel_program_computes_the_same_slot_as_the_routing_function(workers: int) -> None:
    rng = random.Random(workers)
    seed = rng.getrandbits(32)
    program = ip_hash_program(workers, seed)
    assert len(program) < 4096
    for _ in range(200):
        v4 = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        assert run_cbpf(program, ipv4_header(v4)) == slot_for_address(v4, workers, seed)
        v6 = str(ipaddress.IPv6Address(rng.getrandbits(128)))
        assert run_cbpf(program, ipv6_header(v6)) == slot_for_address(v6, workers, seed)
        mapped = f"::ffff:{v4}"
        assert run_cbpf(program, ipv6_header(mapped)) == slot_for_address(v4, workers, seed)


def test_kernel_program_leaves_other_packets_to_the_kernel() -> None:
    assert run_cbpf(ip_hash_program(4, 0), bytes([0x50]) + bytes(40)) == 0xFFFFFFFF


def test_kernel_program_refuses_an_impossible_group_size() -> None:
    with pytest.raises(ValueError, match="1 to 65535"):
        ip_hash_program(0, 0)


# -- header routing ---------------------------------------------------------------------


def head(*lines: str, end: bool = True) -> bytes:
    return ("\r\n".join(["GET / HTTP/1.1", "Host: x", *lines]) + ("\r\n\r\n" if end else "\r\n")).encode()


def test_first_x_forwarded_for_address_is_the_key() -> None:
    route = route_head(head("X-Forwarded-For: 203.0.113.7, 10.0.0.1"), header="X-Forwarded-For", cookie=None)
    assert route.final
    assert route.key == address_key("203.0.113.7")


def test_header_name_is_case_insensitive_and_value_trimmed() -> None:
    route = route_head(head("x-forwarded-for:   ::ffff:192.0.2.1  "), header="X-Forwarded-For", cookie=None)
    assert route.key == address_key("192.0.2.1")


def test_cookie_wins_over_the_header() -> None:
    data = head("X-Forwarded-For: 203.0.113.7", "Cookie: a=1; io=abc123; b=2")
    route = route_head(data, header="X-Forwarded-For", cookie="io")
    assert route.key == b"cookie:abc123"


def test_missing_cookie_falls_back_to_the_header() -> None:
    route = route_head(
        head("Cookie: other=1", "X-Forwarded-For: 203.0.113.7"), header="X-Forwarded-For", cookie="io"
    )
    assert route.key == address_key("203.0.113.7")


def test_no_header_means_route_by_peer_address() -> None:
    route = route_head(head("Accept: */*"), header="X-Forwarded-For", cookie=None)
    assert route.final
    assert route.key is None


def test_incomplete_head_is_not_final_and_a_cut_line_is_not_trusted() -> None:
    partial = b"GET / HTTP/1.1\r\nX-Forwarded-For: 203.0"
    assert not route_head(partial, header="X-Forwarded-For", cookie=None).final


def test_incomplete_head_at_end_of_stream_is_final() -> None:
    route = route_head(
        head("X-Forwarded-For: 203.0.113.7", end=False), header="X-Forwarded-For", cookie=None, eof=True
    )
    assert route.final
    assert route.key == address_key("203.0.113.7")


@pytest.mark.parametrize("data", [b"\x00\xff garbage" * 10, b"", b"\r\n\r\n", b"GET /\n\n"])
def test_garbage_gives_a_final_answer_without_a_key(data: bytes) -> None:
    route = route_head(data, header="X-Forwarded-For", cookie="io", eof=True)
    assert route.final
    assert route.key is None


def test_huge_head_is_final_at_the_limit() -> None:
    data = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * HEAD_LIMIT
    assert route_head(data, header="X-Forwarded-For", cookie=None).final


@pytest.mark.parametrize(
    "data",
    [
        head("X-Forwarded-For: 203.0.113.7, 10.0.0.1"),
        head("Cookie: other=1", "X-Forwarded-For: 203.0.113.7"),
        head("X-Forwarded-For: 203.0.113.7", "Cookie: a=1; io=abc123"),
        head("Accept: */*"),
        b"GET / HTTP/1.1\nX-Forwarded-For: 198.51.100.1\n\n",
    ],
)
def test_a_head_fed_in_one_byte_pieces_routes_as_the_whole_head(data: bytes) -> None:
    scanner = HeadScanner(header="X-Forwarded-For", cookie="io")
    routes = [scanner.feed(data[n : n + 1]) for n in range(len(data))]
    assert routes[-1] == route_head(data, header="X-Forwarded-For", cookie="io")
    assert routes[-1].final
    assert scanner.seen == len(data) or routes[-1].key is not None  # a cookie decides at once


def test_a_header_line_cut_by_a_piece_waits_for_its_end() -> None:
    scanner = HeadScanner(header="X-Forwarded-For", cookie=None)
    assert scanner.feed(b"GET / HTTP/1.1\r\nX-Forwarded-For: 203.0") == route_head(
        b"GET / HTTP/1.1\r\nX-Forwarded-For: 203.0", header="X-Forwarded-For", cookie=None
    )
    assert not scanner.feed(b".113.7\r\n").final
    assert scanner.feed(b"\r\n").key == address_key("203.0.113.7")


def test_a_never_ending_head_is_final_at_the_limit_however_it_is_cut() -> None:
    scanner = HeadScanner(header="X-Forwarded-For", cookie=None)
    scanner.feed(b"GET / HTTP/1.1\r\nX-Forwarded-For: 203.0.113.7\r\nX-Slow: ")
    pieces = 0
    while not (route := scanner.feed(b"a" * 7)).final:
        pieces += 1
    assert scanner.seen == HEAD_LIMIT
    assert route.key == address_key("203.0.113.7")
    assert pieces < HEAD_LIMIT // 7


def test_a_scanner_for_a_peer_not_trusted_with_no_cookie_wants_nothing() -> None:
    assert not HeadScanner(header=None, cookie=None).wanted
    untrusted = HeadScanner(header=None, cookie="io")
    assert untrusted.feed(head("X-Forwarded-For: 203.0.113.7")) == HeadRoute(None, True)


# -- limits ------------------------------------------------------------------------------


def test_trusted_proxies_match_addresses_networks_and_ipv4_mapped_peers() -> None:
    limits = Limits(trusted_proxies=check_networks(["127.0.0.1", "10.0.0.0/8", "::ffff:192.0.2.0/120"]))
    assert limits.trusts("127.0.0.1")
    assert limits.trusts("::ffff:127.0.0.1")
    assert limits.trusts("10.9.8.7")
    assert limits.trusts("192.0.2.77")
    assert not limits.trusts("127.0.0.2")
    assert not limits.trusts("::1")
    assert not limits.trusts("not an address")
    assert not Limits().trusts("127.0.0.1")  # none by default


def test_the_connection_limit_stays_below_the_descriptor_limit() -> None:
    assert Limits().connections_for(1_048_576) == 1000
    assert Limits().connections_for(256) == 192
    assert Limits().connections_for(-1) == 1000  # RLIM_INFINITY
    assert Limits(connection_limit=5).connections_for(10) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"connection_limit": 0},
            "--connection-limit expects a whole number of connections, 1 or more, got 0",
        ),
        ({"per_address_limit": 2.5}, "--per-address-limit expects a whole number of connections"),
        (
            {"header_timeout": -1},
            "--header-timeout must be a positive number of seconds; got -1; for example 10",
        ),
        ({"idle_timeout": float("nan")}, "--idle-timeout must be a positive number of seconds; got nan"),
        ({"trusted_proxies": ["10.0.0.0/33"]}, "--trusted-proxy expects an IP address or network"),
    ],
)
def test_bad_limits_are_refused_naming_the_option_and_the_value(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        make_limits(**options)  # type: ignore[arg-type]
    assert message in str(caught.value)


# -- option checking ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("[::1]:0", ("::1", 0)),
        (":8080", ("0.0.0.0", 8080)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_parse_bind_accepts_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_bind(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8000", "--bind expects HOST:PORT, got '8000'; use HOST:PORT"),
        ("127.0.0.1:http", "got '127.0.0.1:http'"),
        ("127.0.0.1:70000", "port must be 0-65535, got 70000"),
        ("::1:8000", "needs brackets around an IPv6 host"),
    ],
)
def test_parse_bind_rejects_bad_values_quoting_them_and_saying_the_fix(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 127\.0\.0\.1:8000") as caught:
        parse_bind(text)
    assert message in str(caught.value)


def test_zero_workers_is_refused_with_the_fix() -> None:
    with pytest.raises(
        ValueError, match=r"--workers expects at least 1 worker process, got 0; use --workers 1"
    ):
        check_workers(0)


@pytest.mark.parametrize("bad", ["4", 2.0, True, None])
def test_workers_must_be_a_whole_number(bad: object) -> None:
    with pytest.raises(ValueError, match="--workers expects a whole number"):
        check_workers(bad)


def test_threads_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="--threads expects at least 1 thread per worker, got 0"):
        check_threads(0)


def test_unknown_routing_names_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"--routing expects one of ip-hash, round-robin, header, got 'sticky'"
    ):
        check_routing("sticky")


def test_unknown_mode_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"mode expects one of auto, kernel, handoff, got 'ebpf'"):
        check_mode("ebpf")

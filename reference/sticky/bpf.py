"""The kernel half of ip-hash routing: a classic BPF program for SO_REUSEPORT.

Linux picks a listening socket of a reuseport group by running the program
attached with SO_ATTACH_REUSEPORT_CBPF on each new connection (its SYN); the
value returned is an index into the group, in the order the sockets called
listen(). The program hashes the source address of the IP header exactly as
`_sticky_routing.slot_for_key` does and returns ``hash % workers``; an
IPv4-mapped IPv6 source hashes as its IPv4 address. A packet of another kind
returns an index past the group, which makes the kernel use its own hash.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import sys

__all__ = [
    "HANDSHAKE_SETTLE",
    "SO_ATTACH_FILTER",
    "SO_ATTACH_REUSEPORT_CBPF",
    "Insn",
    "attach_reuseport_program",
    "ip_hash_program",
    "kernel_supported",
    "refuse_new_connections",
    "refuse_program",
]

#: From <asm-generic/socket.h>; the same on every Linux architecture Python runs on but parisc/sparc.
SO_ATTACH_REUSEPORT_CBPF = 51
#: From <asm-generic/socket.h>: a socket's own packet filter.
SO_ATTACH_FILTER = 26

Insn = tuple[int, int, int, int]  # code, jt, jf, k: one `struct sock_filter`

# Opcodes from <linux/filter.h> / <linux/bpf_common.h>.
_LD, _LDX, _ALU, _JMP, _RET, _MISC = 0x00, 0x01, 0x04, 0x05, 0x06, 0x07
_W, _B, _ABS, _IMM = 0x00, 0x10, 0x20, 0x00
_ADD, _MUL, _AND, _LSH, _RSH, _MOD, _XOR = 0x00, 0x20, 0x50, 0x60, 0x70, 0x90, 0xA0
_JEQ, _K, _X, _A, _TAX = 0x10, 0x00, 0x08, 0x10, 0x00
_NET = 0xFFF00000  # SKF_NET_OFF (-0x100000): offsets from the IP header
_SYN, _ACK = 0x02, 0x10  # TCP header flags, in its byte 13

HANDSHAKE_SETTLE = 0.25
"""Seconds a listener stays open after :func:`refuse_new_connections` before it is closed, so
that the handshakes under way then (one round trip from done) complete and are accepted."""


def _hash_bytes(offsets: range) -> list[Insn]:
    # Jenkins one-at-a-time, one byte per round; the running hash lives in X.
    out: list[Insn] = []
    for offset in offsets:
        out += [
            (_LD | _B | _ABS, 0, 0, _NET + offset),  # A = byte
            (_ALU | _ADD | _X, 0, 0, 0),  # A = h + byte
            (_MISC | _TAX, 0, 0, 0),
            (_ALU | _LSH | _K, 0, 0, 10),
            (_ALU | _ADD | _X, 0, 0, 0),  # h += h << 10
            (_MISC | _TAX, 0, 0, 0),
            (_ALU | _RSH | _K, 0, 0, 6),
            (_ALU | _XOR | _X, 0, 0, 0),  # h ^= h >> 6
            (_MISC | _TAX, 0, 0, 0),
        ]
    return out


def _finish(workers: int) -> list[Insn]:
    return [
        (_MISC | _TAX, 0, 0, 0),
        (_ALU | _LSH | _K, 0, 0, 3),
        (_ALU | _ADD | _X, 0, 0, 0),  # h += h << 3
        (_MISC | _TAX, 0, 0, 0),
        (_ALU | _RSH | _K, 0, 0, 11),
        (_ALU | _XOR | _X, 0, 0, 0),  # h ^= h >> 11
        (_MISC | _TAX, 0, 0, 0),
        (_ALU | _LSH | _K, 0, 0, 15),
        (_ALU | _ADD | _X, 0, 0, 0),  # h += h << 15
        # fmix32, MurmurHash3's finalizer
        (_MISC | _TAX, 0, 0, 0),
        (_ALU | _RSH | _K, 0, 0, 16),
        (_ALU | _XOR | _X, 0, 0, 0),
        (_ALU | _MUL | _K, 0, 0, 0x85EBCA6B),
        (_MISC | _TAX, 0, 0, 0),
        (_ALU | _RSH | _K, 0, 0, 13),
        (_ALU | _XOR | _X, 0, 0, 0),
        (_ALU | _MUL | _K, 0, 0, 0xC2B2AE35),
        (_MISC | _TAX, 0, 0, 0),
        (_ALU | _RSH | _K, 0, 0, 16),
        (_ALU | _XOR | _X, 0, 0, 0),
        (_ALU | _MOD | _K, 0, 0, workers),
        (_RET | _A, 0, 0, 0),
    ]


def ip_hash_program(workers: int, seed: int) -> list[Insn]:
    """The program: ``fmix32(oat_hash(source address, seed)) % workers``."""
    if not 1 <= workers <= 0xFFFF:
        raise ValueError(f"a reuseport group holds 1 to 65535 sockets, got workers={workers}")
    start = [(_LDX | _W | _IMM, 0, 0, seed & 0xFFFFFFFF)]  # X = seed
    v4 = start + _hash_bytes(range(12, 16)) + _finish(workers)  # IPv4 source: bytes 12-15
    mapped = start + _hash_bytes(range(20, 24)) + _finish(workers)  # ::ffff:a.b.c.d
    v6 = start + _hash_bytes(range(8, 24)) + _finish(workers)  # IPv6 source: bytes 8-23
    other: list[Insn] = [(_RET | _K, 0, 0, 0xFFFFFFFF)]
    # Layout: dispatch | other | v6-mapped checks | v6 | mapped | v4
    checks_len = 6
    dispatch_len = 4
    to_v4 = len(other) + checks_len + len(v6) + len(mapped)
    to_other = 0
    dispatch: list[Insn] = [
        (_LD | _B | _ABS, 0, 0, _NET + 0),
        (_ALU | _RSH | _K, 0, 0, 4),  # A = IP version
        (_JMP | _JEQ | _K, to_v4 + 1, 0, 4),
        (_JMP | _JEQ | _K, len(other), to_other, 6),
    ]
    assert len(dispatch) == dispatch_len
    to_v6 = len(v6)  # from the last check, jump over v6 into mapped on success
    checks: list[Insn] = [
        (_LD | _W | _ABS, 0, 0, _NET + 8),
        (_JMP | _JEQ | _K, 0, 4, 0),  # -> v6
        (_LD | _W | _ABS, 0, 0, _NET + 12),
        (_JMP | _JEQ | _K, 0, 2, 0),  # -> v6
        (_LD | _W | _ABS, 0, 0, _NET + 16),
        (_JMP | _JEQ | _K, to_v6, 0, 0x0000FFFF),
    ]
    assert len(checks) == checks_len
    return dispatch + other + checks + v6 + mapped + v4


def kernel_supported() -> bool:
    """Whether this system can steer connections with SO_REUSEPORT and a classic BPF program."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


def attach_reuseport_program(sock: socket.socket, program: list[Insn]) -> None:
    """Attach `program` to the reuseport group of `sock` (which must be listening)."""
    _attach(sock, SO_ATTACH_REUSEPORT_CBPF, program)


def refuse_program() -> list[Insn]:
    """The listener's filter while it stops: drop a SYN that opens a connection, keep the rest.

    On a listening TCP socket the filter sees each segment from its TCP header
    on: the SYN of a new connection, and the ACK (or first data) that completes
    a handshake already under way. Only the first is dropped, so a client that
    has its SYN-ACK gets a connection that lands in the accept queue, instead of
    one that the listener's close resets after the client sent its request.
    """
    return [
        (_LD | _B | _ABS, 0, 0, 13),  # A = the TCP flags
        (_ALU | _AND | _K, 0, 0, _SYN | _ACK),
        (_JMP | _JEQ | _K, 0, 1, _SYN),  # SYN without ACK: a new connection
        (_RET | _K, 0, 0, 0),  # drop it
        (_RET | _K, 0, 0, 0xFFFFFFFF),  # keep everything else whole
    ]


def refuse_new_connections(sock: socket.socket) -> bool:
    """Make the listening `sock` drop the SYN of every new connection (:func:`refuse_program`).

    Connections already in its accept queue stay as they are, and handshakes
    under way complete, within :data:`HANDSHAKE_SETTLE` on any sane network; the
    caller accepts and serves them all before `sock` closes. A client that
    connects from now on retries its SYN and then sees the port closed, rather
    than a connection that is reset after it sent its request. False where the
    system has no socket filters (the caller then just closes).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        _attach(sock, SO_ATTACH_FILTER, refuse_program())
    except OSError:
        return False
    return True


def _attach(sock: socket.socket, option: int, program: list[Insn]) -> None:
    filters = (_SockFilter * len(program))(*(_SockFilter(*insn) for insn in program))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("HP", len(program), ctypes.addressof(filters))
    sock.setsockopt(socket.SOL_SOCKET, option, fprog)

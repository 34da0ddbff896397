"""The cluster master under hostile load: real processes, real sockets, bounded attacks.

Each test attacks a master the way issue 12 did and asserts what the
legitimate clients see. Attacks are bounded in count and time; the masters
are subprocesses (so their descriptor limit, memory and GIL are their own)
that exit when the test closes their stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_support import cluster_server, read_frame
from helpers import wait_until

from storekit import InvalidSessionData, StoreUnavailable, expires_in
from storekit.reference import cluster
from storekit.reference.cluster import Address, AsyncClusterStore, ClusterStore, wire
from storekit.reference.cluster.server import REPLY_BOUND, ClusterServer
from storekit.reference.cluster.state import ClusterState

MASTER = """
import os, sys
from storekit.reference import cluster
cluster.setup()
print(os.environ[cluster.ENV_SOCKET], os.environ[cluster.ENV_KEY], flush=True)
sys.stdin.read()  # serve until the test closes stdin or signals us
"""

WORKER = """
import sys, time
from storekit.reference.cluster import ClusterStore
store, name = ClusterStore(), sys.argv[1]
started = time.monotonic()
store.set(name, {"worker": name})
assert store.get(name) == {"worker": name}, store.get(name)
print(f"{time.monotonic() - started:.3f}", flush=True)
"""

NEVER = wire.NEVER_BYTES


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delenv(cluster.ENV_SOCKET, raising=False)
    monkeypatch.delenv(cluster.ENV_KEY, raising=False)
    return dict(os.environ)


@contextlib.contextmanager
def master_process(
    env: dict[str, str], nofile: int | None = None, script: str = MASTER
) -> Iterator[tuple[subprocess.Popen[str], Address]]:
    """A master subprocess (at ``nofile`` descriptors, if given) and its address; stopped after."""

    def limit() -> None:
        if nofile is not None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=limit,
    )
    try:
        assert proc.stdout is not None
        path, key = proc.stdout.readline().split()
        yield proc, Address(path, bytes.fromhex(key))
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def authenticated(address: Address) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10.0)
    sock.connect(address.path)
    nonce = wire.parse_hello(read_frame(sock))
    sock.sendall(wire.auth_frame(address.secret, nonce, os.urandom(32)))
    assert wire.reply_status(read_frame(sock)) == wire.OK
    return sock


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def figure(text: str) -> None:
    """A measured figure, shown with ``pytest -s`` (docs/cluster.md quotes them)."""
    print(f"\n[figure] {text}")


def ms(seconds: list[float]) -> str:
    return ", ".join(f"{s * 1000:.1f}" for s in seconds) + " ms"


def worker_runs(env: dict[str, str], address: Address, name: str) -> float:
    """Run a fresh worker process that sets and gets a session; its seconds taken."""
    env = {**env, cluster.ENV_SOCKET: address.path, cluster.ENV_KEY: address.secret.hex()}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, name], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"worker {name} failed: {done.stderr}"
    return float(done.stdout)


# 1. The server keeps only what a client can read back


@pytest.fixture
def server() -> Iterator[ClusterServer]:
    with cluster_server() as srv:
        yield srv


@pytest.mark.parametrize(
    ("sid", "payload", "said"),
    [
        (b"\xff\xfe", b'{"a":1}', "the sid is not UTF-8"),
        (b"s" * 65_535, b'{"a":1}', "the sid is 65535 characters; clients accept at most 1024"),
        (b"ok", b"not json", "not a compact JSON object"),
        (b"ok", b"[1,2]", "not a compact JSON object"),
        (b"ok", b'{"a":"\xc3"}', "is not UTF-8"),
    ],
)
def test_a_key_holder_cannot_store_what_breaks_others_reads(
    server: ClusterServer, sid: bytes, payload: bytes, said: str
) -> None:
    store = ClusterStore(address=Address(server.path, server.secret))
    store.set("canary", {"alive": True})
    with authenticated(Address(server.path, server.secret)) as sock:
        sock.sendall(wire.encode_request(wire.SET, b"", sid, NEVER + payload))
        reply = read_frame(sock)
    assert wire.reply_status(reply) == wire.ERROR
    code, message = wire.decode_error(wire.reply_payload(reply))
    assert code == wire.ERR_INVALID_DATA
    assert said in message
    assert store.all() == {"canary": {"alive": True}}
    assert store.get("ok") is None
    assert store.length() == 1


def test_what_is_somehow_stored_unreadable_raises_a_store_error(server: ClusterServer) -> None:
    store = ClusterStore(address=Address(server.path, server.secret))
    aio = AsyncClusterStore(address=Address(server.path, server.secret))
    store.set("canary", {"alive": True})
    with server._lock:  # what the server's checks let through: braces around no JSON
        server.state.spaces[b""].entries[b"bad"] = NEVER + b"{not json}"
    with pytest.raises(InvalidSessionData, match="holds data that is no session: get"):
        store.get("bad")
    with pytest.raises(InvalidSessionData, match="holds data that is no session: all"):
        store.all()
    with pytest.raises(InvalidSessionData):
        asyncio.run(aio.get("bad"))
    with server._lock:
        server.state.spaces[b""].entries[b"bad"] = NEVER + b'"text"'
    with pytest.raises(InvalidSessionData, match="not a JSON object"):
        store.get("bad")
    with server._lock:
        del server.state.spaces[b""].entries[b"bad"]
        server.state.spaces[b""].entries[b"\xff"] = NEVER + b"{}"
    with pytest.raises(InvalidSessionData, match=r"all\(\) found a session under sid b'\\xff'"):
        store.all()
    store.destroy("canary")
    assert store.get("canary") is None


# 2. Errors say what happened


@pytest.fixture
def full_backlog() -> Iterator[tuple[str, list[socket.socket]]]:
    """A listener that never accepts, with its backlog filled."""
    directory = tempfile.mkdtemp(prefix="storekit-test-", dir="/tmp")
    path = os.path.join(directory, "sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    held: list[socket.socket] = []
    try:
        for _ in range(64):  # a backlog of 0 holds one or two
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(path)
            except BlockingIOError:
                sock.close()
                break
            held.append(sock)
        else:
            pytest.fail("the listen backlog never filled")
        yield path, held
    finally:
        for sock in held:
            sock.close()
        listener.close()
        shutil.rmtree(directory)


def test_a_full_backlog_is_reported_busy_at_once(full_backlog: tuple[str, list[socket.socket]]) -> None:
    address = Address(full_backlog[0], os.urandom(32))
    for call in (
        lambda: ClusterStore(address=address, timeout=2.0).get("a"),
        lambda: asyncio.run(AsyncClusterStore(address=address, timeout=2.0).get("a")),
    ):
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            call()
        assert time.monotonic() - started < 1.0  # the one retry waits 0.05 s, not the 2 s timeout
        message = str(info.value)
        assert "is busy: its queue of connections waiting to be accepted is full" in message
        assert "did not answer" not in message


def test_refused_timed_out_and_busy_are_told_apart(
    full_backlog: tuple[str, list[socket.socket]], tmp_path: Path
) -> None:
    def said(path: str) -> str:
        with pytest.raises(StoreUnavailable) as info:
            ClusterStore(address=Address(path, b"k" * 32), timeout=0.3).get("a")
        return str(info.value)

    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(tmp_path / "silent"))
    silent.listen(8)
    try:
        messages = {
            "refused": said(str(tmp_path / "nobody")),
            "timed out": said(str(tmp_path / "silent")),
            "busy": said(full_backlog[0]),
        }
    finally:
        silent.close()
    assert "no cluster server is listening" in messages["refused"]
    assert "did not answer within 0.3s" in messages["timed out"]
    assert "is busy" in messages["busy"]
    assert len(set(messages.values())) == 3


# 3. A plain master leaves nothing behind


@pytest.mark.parametrize("how", ["sigterm", "exit"])
def test_a_plain_master_stopped_leaves_no_socket_directory(clean_env: dict[str, str], how: str) -> None:
    with master_process(clean_env) as (proc, address):
        directory = os.path.dirname(address.path)
        assert os.path.isdir(directory)
        assert ClusterStore(address=address).get("a") is None
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            assert proc.stdin is not None
            proc.stdin.close()
        code = proc.wait(10)
    assert code == (-signal.SIGTERM if how == "sigterm" else 0)  # SIGTERM still ends it as SIGTERM does
    assert not os.path.exists(directory)


def test_setup_leaves_a_sigterm_handler_of_the_program_alone(clean_env: dict[str, str]) -> None:
    script = """
import os, signal, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
from storekit.reference import cluster
cluster.setup()
print(os.environ[cluster.ENV_SOCKET], os.environ[cluster.ENV_KEY], flush=True)
sys.stdin.read()
"""
    with master_process(clean_env, script=script) as (proc, address):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 7  # the program's handler ran; atexit cleaned up
    assert not os.path.exists(os.path.dirname(address.path))


def test_a_forked_child_of_the_master_dies_of_sigterm_as_before(clean_env: dict[str, str]) -> None:
    """A pool worker blocked in a lock its parent holds must still die of SIGTERM at once."""
    script = """
import os, signal, sys, threading
from storekit.reference import cluster
cluster.setup()
lock = threading.Lock()
lock.acquire()
pid = os.fork()
if pid == 0:
    lock.acquire()  # blocks for ever: only SIGTERM's default action ends it
    os._exit(3)
os.kill(pid, signal.SIGTERM)
_, status = os.waitpid(pid, 0)
ours = signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
print(os.waitstatus_to_exitcode(status), ours, flush=True)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], env=clean_env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(-signal.SIGTERM), "True"]


# 4. Strangers in the handshake cannot keep workers out


def _raise_own_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"this test needs {want} descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def test_1500_unauthenticated_connections_do_not_keep_workers_out(clean_env: dict[str, str]) -> None:
    _raise_own_nofile(4096)
    with master_process(clean_env, nofile=1024) as (_proc, address):
        idle: list[socket.socket] = []
        try:
            deadline = time.monotonic() + 30
            while len(idle) < 1500 and time.monotonic() < deadline:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    sock.connect(address.path)
                except BlockingIOError:  # the backlog is full for a moment: the master drains it
                    sock.close()
                    continue
                idle.append(sock)
            assert len(idle) == 1500
            took = [worker_runs(clean_env, address, f"w{n}") for n in range(7)]
            figure(f"1,500 idle strangers, master at nofile=1024: 7 fresh workers' set+get took {ms(took)}")
            assert max(took) < 2.0, took
            store = ClusterStore(address=address)
            assert store.get("w6") == {"worker": "w6"}
        finally:
            for sock in idle:
                sock.close()


# 5. One connection's unread replies are bounded


def test_pipelined_gets_of_a_mebibyte_session_pin_a_bounded_amount(clean_env: dict[str, str]) -> None:
    with master_process(clean_env) as (proc, address):
        store = ClusterStore(address=address)
        big = {"x": "y" * ((1 << 20) - 16)}
        store.set("big", big)
        for n in range(8):  # a changing session: every reply is a value of its own
            store.set(f"big{n}", {"x": str(n) * ((1 << 20) - 16)})
        assert store.get("big") == big
        before = memory_kib(proc.pid, "VmHWM")
        sock = authenticated(address)
        try:
            requests = b"".join(wire.encode_request(wire.GET, b"", b"big%d" % (n % 8)) for n in range(1000))
            sock.sendall(requests)  # 1,000 GETs, about 1 GB of replies, none of them read

            def unread() -> int:
                data = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
                return int(struct.unpack("i", data)[0])

            seen: list[int] = []

            def stalled() -> bool:  # our receive queue stops growing: the master waits for us
                seen.append(unread())
                return len(seen) > 20 and seen[-1] == seen[-20] > 0

            wait_until(stalled, timeout=20, what="the master never stopped sending")
            grown = memory_kib(proc.pid, "VmHWM") - before
            figure(f"1,000 unread pipelined GETs of 1 MiB sessions: the master's peak RSS grew {grown} KiB")
            assert grown * 1024 < REPLY_BOUND + (1 << 20) + (16 << 20), f"the master grew by {grown} KiB"
            assert store.get("big") == big  # and it serves others meanwhile
        finally:
            sock.close()
        assert store.get("big") == big


# 6. Long operations do not stall others


def _fill(address: Address, count: int) -> None:
    with authenticated(address) as sock:
        for start in range(0, count, 5000):
            batch = range(start, min(count, start + 5000))
            sock.sendall(
                b"".join(wire.encode_request(wire.SET, b"", b"s%07d" % i, NEVER + b'{"n":1}') for i in batch)
            )
            for _ in batch:
                assert read_frame(sock) == wire.OK_FRAME


def _p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(len(ordered) * 0.99)]


def test_pipelined_length_over_200000_sessions_does_not_stall_others(clean_env: dict[str, str]) -> None:
    with master_process(clean_env) as (_proc, address):
        _fill(address, 200_000)
        store = ClusterStore(address=address)
        store.set("mine", {"v": 1})
        attacker = authenticated(address)
        answered: list[int] = []
        stop = threading.Event()

        def attack() -> None:  # 100 LENGTH frames in one write, then their replies; again
            frames = wire.encode_request(wire.LENGTH, b"") * 100
            while not stop.is_set() and len(answered) < 1_000_000:
                attacker.sendall(frames)
                for _ in range(100):
                    answered.append(wire.decode_count(wire.reply_payload(read_frame(attacker))))

        thread = threading.Thread(target=attack)
        thread.start()
        latencies: list[float] = []
        try:
            wait_until(lambda: len(answered) > 0, timeout=20, what="no LENGTH was answered")
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                started = time.perf_counter()
                assert store.get("mine") == {"v": 1}
                latencies.append(time.perf_counter() - started)
        finally:
            stop.set()
            thread.join(30)
            attacker.close()
        assert set(answered) == {200_001}
        assert len(answered) >= 200
        seen = ms([_p99(latencies), max(latencies)])
        figure(f"{len(answered)} LENGTHs over 200,000 sessions, 100 a write: get() p99, max {seen}")
        assert _p99(latencies) < 0.050, f"get() p99 {_p99(latencies) * 1000:.1f} ms over {len(latencies)}"


# 7. A touch costs a copy of the session's bytes, not a parse and an encode


def test_touching_a_mebibyte_session_does_not_stall_others(clean_env: dict[str, str]) -> None:
    with master_process(clean_env) as (_proc, address):
        big = {"x": "y" * ((1 << 20) - 200), "cookie": expires_in(3600)}
        store = ClusterStore(address=address)
        store.set("big", big)
        store.set("mine", {"v": 1})
        stop = threading.Event()
        touches: list[float] = []

        def touch() -> None:
            toucher = ClusterStore(address=address)
            while not stop.is_set() and len(touches) < 20_000:
                toucher.touch("big", {"cookie": expires_in(3600)})
                touches.append(time.perf_counter())

        threads = [threading.Thread(target=touch) for _ in range(2)]
        for thread in threads:
            thread.start()
        latencies: list[float] = []
        try:
            wait_until(lambda: len(touches) > 10, timeout=20, what="no touch returned")
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                started = time.perf_counter()
                assert store.get("mine") == {"v": 1}
                latencies.append(time.perf_counter() - started)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        got = store.get("big")
        assert got is not None
        assert got["x"] == big["x"]
        assert got["cookie"] != big["cookie"]  # the touches' cookie
        seen = ms([_p99(latencies), max(latencies)])
        figure(f"{len(touches)} touches of a 1 MiB session by 2 clients: get() p99, max {seen}")
        assert _p99(latencies) < 0.050, f"get() p99 {_p99(latencies) * 1000:.1f} ms over {len(latencies)}"


# 8. Idle authenticated connections cost no thread


def test_idle_authenticated_connections_hold_no_thread() -> None:
    directory = tempfile.mkdtemp(prefix="storekit-test-", dir="/tmp")
    idle_server = ClusterServer(
        os.path.join(directory, "sock"),
        os.urandom(32),
        state=ClusterState(max_session_bytes=1 << 20),
        idle_timeout=0.2,
    )
    idle_server.start()
    address = Address(idle_server.path, idle_server.secret)
    conns: list[socket.socket] = []
    try:
        ClusterStore(address=address).set("a", {"n": 1})
        threads_before = threading.active_count()
        conns = [authenticated(address) for _ in range(300)]
        for sock in conns:
            sock.sendall(wire.encode_request(wire.GET, b"", b"a"))
            assert read_frame(sock) == wire.found_frame(NEVER + b'{"n":1}')
        half = wire.encode_request(wire.SET, b"", b"late", NEVER + b'{"x":"' + b"y" * 1000 + b'"}')
        conns[0].sendall(half[:500])  # and one stops in the middle of a frame
        wait_until(
            lambda: not idle_server._workers and len(idle_server._parked) >= 300,
            timeout=20,
            what=f"idle connections kept {len(idle_server._workers)} threads",
        )
        now = threading.active_count()
        figure(f"300 idle authenticated connections: this process had {threads_before} threads, now {now}")
        assert threading.active_count() <= threads_before + 2
        assert idle_server.connections >= 300
        conns[0].sendall(half[500:])
        assert read_frame(conns[0]) == wire.OK_FRAME
        for sock in conns[1:]:  # each one's next request is served on a thread again
            sock.sendall(wire.encode_request(wire.GET, b"", b"late"))
            assert wire.reply_status(read_frame(sock)) == wire.FOUND
    finally:
        for sock in conns:
            sock.close()
        idle_server.stop()
        shutil.rmtree(directory)
    assert threading.active_count() <= threads_before

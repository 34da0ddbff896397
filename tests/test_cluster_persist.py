"""setup(persist=...): the sessions survive their master. Real processes, real signals.

Masters are subprocesses that call ``setup(persist=PATH, fsync=...)``; the
test kills them (SIGKILL, SIGTERM) and starts another on the same PATH at the
same socket address, while worker processes keep their stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

from storekit import InvalidSessionData, StoreError, StoreUnavailable, expires_in
from storekit.reference import cluster
from storekit.reference.cluster import Address, AsyncClusterStore, ClusterStore, persist, records

MASTER = """
import os, signal, sys
from storekit.reference import cluster
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past RLIMIT_FSIZE, a write fails with EFBIG instead
from storekit.reference.cluster import persist
persist.COMPACT_MIN_BYTES = int(sys.argv[3])
cluster.setup(persist=sys.argv[1], fsync=sys.argv[2])
print(os.environ[cluster.ENV_SOCKET], os.environ[cluster.ENV_KEY], flush=True)
sys.stdin.read()  # serve until the test closes stdin or signals us
"""

WORKER = """
import sys
from storekit.reference.cluster import ClusterStore
store, name = ClusterStore(timeout=5), sys.argv[1]
for line in sys.stdin:
    command, count = line.split()
    if command == "set":
        for i in range(int(count)):
            store.set(f"{name}-{i}", {"worker": name, "i": i})
        print("set", flush=True)
    else:
        wrong = [i for i in range(int(count)) if store.get(f"{name}-{i}") != {"worker": name, "i": i}]
        print(len(wrong), flush=True)
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    if cluster.master._server is not None and cluster.master._server.running:
        pytest.skip("a cluster server already runs in this process (the conformance suite's?)")
    monkeypatch.delenv(cluster.ENV_SOCKET, raising=False)
    monkeypatch.delenv(cluster.ENV_KEY, raising=False)
    return dict(os.environ)


@contextlib.contextmanager
def master(
    env: dict[str, str], path: Path, fsync: str, compact: int = 64 << 20, script: str = MASTER
) -> Iterator[tuple[subprocess.Popen[str], Address]]:
    """A master subprocess (``script``, MASTER's arguments) persisting into ``path``; killed after."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path), fsync, str(compact)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"the master exited with {proc.wait()}"
        socket_path, key = line.split()
        yield proc, Address(socket_path, bytes.fromhex(key))
    finally:
        proc.kill()
        proc.wait()


def env_of(env: dict[str, str], address: Address) -> dict[str, str]:
    return {**env, cluster.ENV_SOCKET: address.path, cluster.ENV_KEY: address.secret.hex()}


class Worker:
    """A worker process that keeps one ClusterStore across the master's restarts."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def ask(self, command: str, count: int) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"{command} {count}\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer, f"the worker died with {self.proc.poll()}"
        return answer

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def stop(proc: subprocess.Popen[str], how: signal.Signals) -> None:
    proc.send_signal(how)
    assert proc.wait(10) == -how


COUNT = 300


@pytest.mark.parametrize(
    ("fsync", "how"),
    [
        ("always", signal.SIGKILL),
        ("everysec", signal.SIGKILL),
        ("no", signal.SIGKILL),
        ("no", signal.SIGTERM),
        ("always", signal.SIGTERM),
    ],
)
def test_a_restarted_master_serves_every_returned_write_to_old_and_new_workers(
    clean_env: dict[str, str], tmp_path: Path, fsync: str, how: signal.Signals
) -> None:
    data = tmp_path / "sessions"
    with master(clean_env, data, fsync) as (first, address):
        workers = [Worker(env_of(clean_env, address), f"w{n}") for n in range(2)]
        try:
            assert [worker.ask("set", COUNT) for worker in workers] == ["set", "set"]  # every set returned
            stop(first, how)
            with master(env_of(clean_env, address), data, fsync) as (_second, again):
                assert again == address
                assert [worker.ask("check", COUNT) for worker in workers] == ["0", "0"]  # reconnected
                fresh = Worker(env_of(clean_env, address), "w0")
                try:
                    assert fresh.ask("check", COUNT) == "0"
                finally:
                    fresh.close()
        finally:
            for worker in workers:
                worker.close()
            shutil.rmtree(os.path.dirname(address.path), ignore_errors=True)


def test_a_sigkilled_master_after_compaction_loses_nothing(clean_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "sessions"
    with master(clean_env, data, "always", compact=20_000) as (first, address):
        store = ClusterStore(address=address, timeout=5)
        for round_ in range(6):
            for i in range(100):
                store.set(f"s{i}", {"round": round_, "pad": "x" * 100})
        wait_until(lambda: (data / "snapshot").exists(), what="no snapshot was written")
        wait_until(lambda: not (data / "log.0").exists(), what="the first log was not removed")
        for i in range(50):
            store.destroy(f"s{i}")
        first.kill()
        first.wait()
        with master(env_of(clean_env, address), data, "always") as _:
            expected = {f"s{i}": {"round": 5, "pad": "x" * 100} for i in range(50, 100)}
            assert store.all() == expected
    shutil.rmtree(os.path.dirname(address.path), ignore_errors=True)


# A model check: random operations, a SIGKILL, a restart; all() as the model says


def model_check(seed: int, address: Address, model: dict[str, dict[str, Any]]) -> list[tuple[str, float]]:
    """Random operations on ``address``, applied to ``model`` too; the short expiries set."""
    rng = random.Random(seed)
    store = ClusterStore(address=address, timeout=5)
    short: list[tuple[str, float]] = []
    now = time.time

    def live(sid: str) -> bool:
        return sid in model and model[sid]["expires"] > now() + 0.5

    for step in range(400):
        sid = f"sid-{rng.randrange(30)}"
        if sid in {name for name, _until in short}:
            continue  # left to expire: never touched again
        op = rng.choice(["set", "set", "replace", "touch", "renew", "destroy", "expired", "short", "clear"])
        if op in ("set", "replace"):
            session = {"step": step, "cookie": expires_in(3600)}
            if op == "set" or live(sid):
                model[sid] = {"session": session, "expires": now() + 3600}
            if op == "set":
                store.set(sid, session)
            else:
                assert store.replace(sid, session) == (sid in model and model[sid]["session"] is session)
        elif op in ("touch", "renew"):
            cookie = expires_in(7200)
            before = model[sid]["session"] if live(sid) else None
            if live(sid):
                model[sid]["session"] = {**model[sid]["session"], "cookie": cookie}
                model[sid]["expires"] = now() + 7200
            if op == "touch":
                store.touch(sid, {"cookie": cookie})
            else:
                got = store.renew(sid, {"cookie": cookie})
                assert got == before, f"step {step}: renew({sid}) gives the session as it was before"
        elif op == "destroy":
            model.pop(sid, None)
            store.destroy(sid)
        elif op == "expired":
            model.pop(sid, None)
            store.set(sid, {"step": step, "cookie": expires_in(-10)})
        elif op == "short":
            model.pop(sid, None)
            store.set(sid, {"step": step, "cookie": expires_in(0.6)})
            short.append((sid, now() + 0.6))
        elif rng.random() < 0.1:  # clear, now and then
            model.clear()
            store.clear()
    return short


@pytest.mark.parametrize("seed", [1, 2])
def test_replay_after_random_operations_and_a_sigkill_matches_the_model(
    clean_env: dict[str, str], tmp_path: Path, seed: int
) -> None:
    data = tmp_path / "sessions"
    model: dict[str, dict[str, Any]] = {}
    with master(clean_env, data, "no") as (first, address):
        short = model_check(seed, address, model)
        first.kill()
        first.wait()
    latest = max((until for _sid, until in short), default=0.0)
    wait_until(lambda: time.time() > latest + 0.1, what="the short expiries did not pass")
    with master(env_of(clean_env, address), data, "no") as _:
        store = ClusterStore(address=address, timeout=5)
        assert store.all() == {sid: entry["session"] for sid, entry in model.items()}, f"seed {seed}"
    shutil.rmtree(os.path.dirname(address.path), ignore_errors=True)


# In this process: torn tails, foreign files, modes, arguments


@pytest.fixture
def persisted(clean_env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "sessions"
    yield data
    cluster.shutdown()


def write_and_stop(data: Path, sessions: dict[str, dict[str, Any]]) -> None:
    cluster.setup(persist=data, fsync="always")
    store = ClusterStore()
    for sid, session in sessions.items():
        store.set(sid, session)
    cluster.shutdown()


SESSIONS = {f"s{i}": {"i": i} for i in range(10)}


def test_a_log_cut_mid_record_keeps_the_records_before_and_says_what_it_cut(
    persisted: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_and_stop(persisted, SESSIONS)
    log = persisted / "log.0"
    size = log.stat().st_size
    os.truncate(log, size - 3)  # the last set, s9, loses its end
    caplog.set_level(logging.WARNING, logger="storekit.cluster")
    cluster.setup(persist=persisted)
    assert ClusterStore().all() == {sid: s for sid, s in SESSIONS.items() if sid != "s9"}
    messages = [r.getMessage() for r in caplog.records if r.name == "storekit.cluster"]
    assert any("is cut short" in m and str(log) in m and "cutting the" in m for m in messages), messages
    assert log.stat().st_size < size - 3  # truncated to the valid prefix
    ClusterStore().set("after", {"ok": True})  # appended after the valid prefix
    cluster.shutdown()
    cluster.setup(persist=persisted)
    assert ClusterStore().get("after") == {"ok": True}
    assert len(ClusterStore().all()) == 10


def test_garbage_after_the_log_is_cut_and_every_record_before_kept(
    persisted: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_and_stop(persisted, SESSIONS)
    log = persisted / "log.0"
    size = log.stat().st_size
    with log.open("ab") as file:
        file.write(b"\x00\x00\x00\x20garbage that is no record at all, none")
    caplog.set_level(logging.WARNING, logger="storekit.cluster")
    cluster.setup(persist=persisted)
    assert ClusterStore().all() == SESSIONS
    assert log.stat().st_size == size
    assert any("fails its checksum" in r.getMessage() for r in caplog.records), caplog.text


def test_a_corrupt_record_in_the_middle_keeps_the_prefix(persisted: Path) -> None:
    write_and_stop(persisted, SESSIONS)
    log = persisted / "log.0"
    data = bytearray(log.read_bytes())
    scan = records.Scan(bytes(data), records.HEADER_SIZE)
    ends = []
    for _record in scan:
        ends.append(scan.end)
    data[ends[4] + 12] ^= 0xFF  # inside the sixth record's body (ends[4]: where the fifth ends)
    log.write_bytes(bytes(data))
    cluster.setup(persist=persisted)
    assert ClusterStore().all() == {f"s{i}": {"i": i} for i in range(5)}


@pytest.mark.parametrize("name", ["log.0", "snapshot"])
def test_a_file_that_is_not_ours_is_refused_and_left_alone(persisted: Path, name: str) -> None:
    persisted.mkdir(mode=0o700)
    foreign = persisted / name
    foreign.write_bytes(b"PGDMP this is somebody else's file\n")
    with pytest.raises(StoreError) as info:
        cluster.setup(persist=persisted)
    message = str(info.value)
    assert repr(str(foreign)) in message
    assert "move it out" in message
    assert "another persist path" in message
    assert foreign.read_bytes() == b"PGDMP this is somebody else's file\n"
    assert os.environ.get(cluster.ENV_SOCKET) is None  # nothing was started


def test_the_directory_is_0700_and_its_files_0600(persisted: Path) -> None:
    write_and_stop(persisted, SESSIONS)
    assert stat.S_IMODE(persisted.stat().st_mode) == 0o700
    files = list(persisted.iterdir())
    assert {f.name for f in files} >= {"log.0", "lock"}
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}


def test_a_directory_others_can_write_is_refused(persisted: Path) -> None:
    persisted.mkdir()
    persisted.chmod(0o777)
    with pytest.raises(StoreError, match=r"mode 777, writable by other users; run chmod 700"):
        cluster.setup(persist=persisted)


def test_a_second_master_on_the_same_directory_is_refused(clean_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "sessions"
    with (
        master(clean_env, data, "no") as (_proc, address),
        pytest.raises(StoreError, match="another process persists sessions into"),
    ):
        cluster.setup(persist=data)
    shutil.rmtree(os.path.dirname(address.path), ignore_errors=True)


def test_expired_sessions_are_dropped_on_replay(persisted: Path) -> None:
    cluster.setup(persist=persisted, fsync="no")
    store = ClusterStore()
    store.set("short", {"cookie": expires_in(0.3)})
    store.set("long", {"cookie": expires_in(3600)})
    cluster.shutdown()
    wait_until(lambda: last_put_expired(persisted, b"short"), what="the short session did not expire")
    cluster.setup(persist=persisted)
    assert set(ClusterStore().all()) == {"long"}
    assert cluster.master._server is not None
    assert cluster.master._server.state.size() == 1  # dropped, not merely hidden


def last_put_expired(data: Path, sid: bytes) -> bool:
    """Whether the last PUT of ``sid`` in the log has expired by the wall clock."""
    from storekit.reference.cluster.wire import EXPIRY, expiry_millis

    value = [
        r.value for r in records.Scan((data / "log.0").read_bytes(), records.HEADER_SIZE) if r.sid == sid
    ][-1]
    return expiry_millis(value[EXPIRY]) < time.time() * 1000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"persist": "x", "fsync": "sometimes"},
            "setup(fsync='sometimes') is no fsync policy; choose one of 'always', 'everysec', 'no'",
        ),
        ({"fsync": "always"}, "setup(fsync='always') needs persist=PATH"),
        ({"persist": ""}, "needs a non-empty str path"),
    ],
)
def test_arguments_that_make_no_sense_are_refused(
    clean_env: dict[str, str], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        cluster.setup(**kwargs)
    assert message in str(info.value)


def test_persist_takes_a_path_object_and_rejects_other_types(persisted: Path) -> None:
    with pytest.raises(TypeError, match=r"takes a str or os\.PathLike"):
        cluster.setup(persist=42)  # type: ignore[arg-type]
    cluster.setup(persist=persisted, fsync="everysec")
    ClusterStore().set("a", {"v": 1})
    cluster.shutdown()
    cluster.setup(persist=str(persisted))
    assert ClusterStore().get("a") == {"v": 1}


def test_without_persist_no_thread_and_no_file(clean_env: dict[str, str], tmp_path: Path) -> None:
    with cluster.serving():
        ClusterStore().set("a", {"v": 1})
        names = {thread.name for thread in __import__("threading").enumerate()}
        assert not any(
            name.startswith(("storekit-cluster-compactor", "storekit-cluster-syncer")) for name in names
        )
        assert cluster.master._server is not None
        assert cluster.master._server.journal is None


# renew


def test_renew_returns_the_session_as_it_was_and_renews_the_cookie_and_expiry(
    clean_env: dict[str, str],
) -> None:
    """Contract renew.1: the caller gets the cookie stored before (a "remember me" lifetime)."""
    with cluster.serving():
        store = ClusterStore()
        old = expires_in(0.5)
        store.set("a", {"user": "ada", "cookie": old})
        cookie = expires_in(3600)
        assert store.renew("a", {"cookie": cookie, "user": "ignored"}) == {"user": "ada", "cookie": old}
        assert store.get("a") == {"user": "ada", "cookie": cookie}
        deadline = time.time() + 0.6
        wait_until(lambda: time.time() > deadline)
        assert store.get("a") == {"user": "ada", "cookie": cookie}  # the old expiry has passed


def test_renew_of_unknown_destroyed_or_expired_sids_gives_none_and_creates_nothing(
    clean_env: dict[str, str],
) -> None:
    with cluster.serving():
        store = ClusterStore()
        assert store.renew("unknown", {"cookie": expires_in(60)}) is None
        store.set("gone", {"v": 1})
        store.destroy("gone")
        assert store.renew("gone", {"cookie": expires_in(60)}) is None
        store.set("old", {"v": 1, "cookie": expires_in(0.2)})
        wait_until(lambda: store.get("old") is None)
        assert store.renew("old", {"cookie": expires_in(60)}) is None
        assert store.length() == 0


def test_renew_with_a_past_expiry_removes_the_session(clean_env: dict[str, str]) -> None:
    with cluster.serving():
        store = ClusterStore()
        store.set("a", {"v": 1})
        assert store.renew("a", {"cookie": expires_in(-1)}) is None
        assert store.get("a") is None


def test_renew_with_a_malformed_expires_raises_and_changes_nothing(clean_env: dict[str, str]) -> None:
    with cluster.serving():
        store = ClusterStore()
        store.set("a", {"v": 1})
        with pytest.raises(InvalidSessionData):
            store.renew("a", {"cookie": {"expires": "next tuesday"}})
        assert store.get("a") == {"v": 1}


def test_async_renew(clean_env: dict[str, str]) -> None:
    with cluster.serving():
        ClusterStore().set("a", {"v": 1})
        cookie = expires_in(60)  # the stored session has no cookie; renew gives it as it was

        async def main() -> tuple[Any, Any]:
            store = AsyncClusterStore()
            return await store.renew("a", {"cookie": cookie}), await store.renew("b", {"cookie": cookie})

        assert asyncio.run(main()) == ({"v": 1}, None)
        assert ClusterStore().get("a") == {"v": 1, "cookie": cookie}


def test_renew_is_replayed_like_a_touch(persisted: Path) -> None:
    cluster.setup(persist=persisted)
    store = ClusterStore()
    store.set("a", {"v": 1, "cookie": expires_in(0.3)})
    cookie = expires_in(3600)
    store.renew("a", {"cookie": cookie})
    cluster.shutdown()
    deadline = time.time() + 0.4
    wait_until(lambda: time.time() > deadline)
    cluster.setup(persist=persisted)
    assert ClusterStore().get("a") == {"v": 1, "cookie": cookie}


def test_a_forked_child_does_not_hold_the_directory(persisted: Path) -> None:
    cluster.setup(persist=persisted)
    pid = os.fork()
    if pid == 0:  # the child: its copies of the log and the lock are closed
        os._exit(1 if list(persist._journals) else 0)
    assert os.waitpid(pid, 0)[1] == 0


def test_always_replies_to_a_write_once_it_is_on_disk_and_writes_waiting_together_share_an_fsync(
    persisted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 threads set at once, each on its own connection; every fsync is slowed to 50 ms.
    Each set returns only after an fsync that covered its record (its bytes lie within
    what was on disk when it returned), and the writes that wait together share one fsync."""
    cluster.setup(persist=persisted, fsync="always")
    durable: list[int] = [0]  # bytes of the log known to be on disk
    fsyncs: list[int] = []
    real_sync = persist._sync

    def slow_sync(fd: int) -> None:
        size = os.fstat(fd).st_size
        time.sleep(0.05)
        real_sync(fd)
        fsyncs.append(size)
        durable[0] = max(durable[0], size)

    monkeypatch.setattr(persist, "_sync", slow_sync)
    store = ClusterStore()
    barrier = threading.Barrier(16)
    seen: dict[str, int] = {}

    def write(i: int) -> None:
        barrier.wait()
        store.set(f"grouped-{i}", {"i": i})
        seen[f"grouped-{i}"] = durable[0]

    threads = [threading.Thread(target=write, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    log = max(persisted.glob("log.*"), key=lambda p: int(p.suffix[1:])).read_bytes()
    for sid, on_disk in seen.items():
        end = log.index(sid.encode()) + len(sid)
        assert end <= on_disk, f"set({sid!r}) returned with its record at byte {end}, {on_disk} on disk"
    assert len(seen) == 16
    assert len(fsyncs) <= 8, f"16 concurrent writes took {len(fsyncs)} fsyncs"


# A full disk, a log that cannot be trusted, a compaction racing a touch


def test_a_full_disk_refuses_changes_and_loses_nothing_it_answered(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    """A real master whose log may not grow (RLIMIT_FSIZE, so os.write fails with EFBIG, as
    with ENOSPC): every change is refused with StoreUnavailable and not made, reads go on,
    a write cut off in the middle is taken back off the log; once the log may grow again,
    changes are taken; after a SIGKILL the next master serves exactly what was answered."""
    data = tmp_path / "sessions"
    with master(clean_env, data, "always") as (first, address):
        store = ClusterStore(address=address, timeout=5)
        for sid in "abc":
            store.set(sid, {"sid": sid})
        log_file = data / "log.0"
        size = log_file.stat().st_size
        hard = resource.prlimit(first.pid, resource.RLIMIT_FSIZE)[1]
        resource.prlimit(first.pid, resource.RLIMIT_FSIZE, (size, hard))
        refusals: list[Any] = [
            lambda: store.set("d", {"sid": "d"}),
            lambda: store.destroy("a"),
            lambda: store.touch("b", {"sid": "b", "cookie": expires_in(60)}),
            lambda: store.replace("c", {"sid": "c", "changed": True}),
            lambda: store.renew("c", {"cookie": expires_in(60)}),
            store.clear,
        ]
        for refused in refusals:
            with pytest.raises(StoreUnavailable) as info:
                refused()
            message = str(info.value)
            for part in ("cannot write to its log", str(data), "did not make the change", "free disk space"):
                assert part in message
        assert store.all() == {sid: {"sid": sid} for sid in "abc"}  # nothing changed
        assert store.length() == 3
        resource.prlimit(first.pid, resource.RLIMIT_FSIZE, (size + 10, hard))  # room for part of a record
        with pytest.raises(StoreUnavailable):
            store.set("e", {"sid": "e", "pad": "x" * 100})
        assert log_file.stat().st_size == size  # the part written was taken back off
        resource.prlimit(first.pid, resource.RLIMIT_FSIZE, (hard, hard))
        store.set("d", {"sid": "d"})
        store.destroy("c")
        first.kill()
        first.wait()
        with master(env_of(clean_env, address), data, "always") as _:
            assert store.all() == {sid: {"sid": sid} for sid in "abd"}
    shutil.rmtree(os.path.dirname(address.path), ignore_errors=True)


def test_a_failed_compaction_leaves_no_headerless_log_and_the_next_one_succeeds(
    persisted: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The header of the compaction's new log cannot be written (the disk is full): no file is
    left behind that a later compaction would append records to with no header (which the next
    master would refuse); a later compaction succeeds and a restart finds every session."""
    monkeypatch.setattr(persist, "COMPACT_MIN_BYTES", 20_000)
    real_write = persist._write_all
    failed: list[int] = []

    def header_fails_once(fd: int, data: bytes, offset: int | None = None) -> None:
        if data == records.header(records.LOG_MAGIC, 1) and not failed:
            failed.append(fd)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(fd, data, offset)

    monkeypatch.setattr(persist, "_write_all", header_fails_once)
    caplog.set_level(logging.INFO, logger="storekit.cluster")
    cluster.setup(persist=persisted, fsync="no")
    store = ClusterStore()
    pad = "x" * 200
    for i in range(120):  # past 20,000 bytes: the first compaction is due, and fails
        store.set(f"s{i}", {"i": i, "pad": pad})
    wait_until(lambda: any("compacting the log" in r.getMessage() for r in caplog.records), what="no failure")
    assert failed
    assert not (persisted / "log.1").exists()
    assert not (persisted / "snapshot").exists()
    for i in range(120, 240):  # 20,000 more bytes: tried again
        store.set(f"s{i}", {"i": i, "pad": pad})
    wait_until(lambda: (persisted / "snapshot").exists(), what="the second compaction wrote no snapshot")
    wait_until(lambda: not (persisted / "log.0").exists(), what="the old log was not removed")
    store.set("after", {"i": -1})  # into log.1, after its header
    cluster.shutdown()
    assert (persisted / "log.1").read_bytes().startswith(records.header(records.LOG_MAGIC, 1))
    cluster.setup(persist=persisted)
    expected = {f"s{i}": {"i": i, "pad": pad} for i in range(240)} | {"after": {"i": -1}}
    assert ClusterStore().all() == expected


@pytest.mark.parametrize("cut", [0, 5])
def test_a_log_with_a_cut_header_is_started_again_and_kept(
    persisted: Path, caplog: pytest.LogCaptureFixture, cut: int
) -> None:
    """A master killed while it wrote the header of a compaction's new log leaves that log
    empty or with part of its header: the next master starts it again and appends to it."""
    write_and_stop(persisted, SESSIONS)
    (persisted / "log.1").write_bytes(records.header(records.LOG_MAGIC, 1)[:cut])
    os.chmod(persisted / "log.1", 0o600)
    caplog.set_level(logging.WARNING, logger="storekit.cluster")
    cluster.setup(persist=persisted)
    assert any("has a cut header" in r.getMessage() for r in caplog.records)
    ClusterStore().set("after", {"ok": True})
    cluster.shutdown()
    assert (persisted / "log.1").read_bytes().startswith(records.header(records.LOG_MAGIC, 1))
    cluster.setup(persist=persisted)
    assert ClusterStore().all() == SESSIONS | {"after": {"ok": True}}


def journal_of_this_process() -> persist.Journal:
    server = cluster.master._server
    assert server is not None
    assert server.journal is not None
    return server.journal


def swap_in_dev_full(journal: persist.Journal) -> None:
    """Make the journal's log /dev/full: writes fail with ENOSPC, cutting them back off fails."""
    server = cluster.master._server
    assert server is not None
    full = os.open("/dev/full", os.O_WRONLY | os.O_CLOEXEC)
    with server._lock:
        real, journal.fd = journal.fd, full
    os.close(real)


def test_a_log_that_cannot_be_trusted_refuses_changes_until_a_snapshot_mends_it(
    persisted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log is swapped for /dev/full: a write fails (ENOSPC) and cutting it back off fails
    too, so the log may end inside a record. Every change is refused from then on, reads go
    on, until the compaction thread has written a snapshot of memory (its first two tries fail:
    they start one new log, not one each); then changes are taken again, and a restart finds
    every session the master answered for."""
    monkeypatch.setattr(persist, "RETRY_SECONDS", 0.2)
    cluster.setup(persist=persisted, fsync="no")
    store = ClusterStore()
    for sid, session in SESSIONS.items():
        store.set(sid, session)
    journal = journal_of_this_process()
    mend, real_compact = threading.Event(), journal.compact

    def held_back(**kwargs: Any) -> None:  # the refusals are seen before the snapshot mends the journal
        mend.wait(10)
        real_compact(**kwargs)

    monkeypatch.setattr(journal, "compact", held_back)
    real_snapshot, tries = journal._write_snapshot, []

    def fails_twice(*args: Any, **kwargs: Any) -> int | None:
        tries.append(args)
        if len(tries) <= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_snapshot(*args, **kwargs)

    monkeypatch.setattr(journal, "_write_snapshot", fails_twice)
    swap_in_dev_full(journal)
    with pytest.raises(StoreUnavailable) as info:
        store.set("lost", {"x": 1})
    assert "cut a failed write back off its log" in str(info.value)
    assert "takes no change until it has written a snapshot" in str(info.value)
    with pytest.raises(StoreUnavailable):
        store.destroy("s0")
    assert store.all() == SESSIONS
    assert not (persisted / "snapshot").exists()
    mend.set()
    wait_until(lambda: journal.broken is None, what="the journal was not mended")
    assert len(tries) == 3
    assert sorted(path.name for path in persisted.glob("log.*")) == ["log.1"]
    assert (persisted / "snapshot").exists()
    store.set("after", {"ok": True})
    cluster.shutdown()
    cluster.setup(persist=persisted)
    assert ClusterStore().all() == SESSIONS | {"after": {"ok": True}}


def test_a_failed_fsync_refuses_changes_until_a_snapshot_mends_it(
    persisted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync="always" and fsync fails (EIO: the kernel may have dropped the pages): the write
    of that batch is not answered, and every change is refused, the compaction's tries
    failing too, until an fsync works and a snapshot is on disk; then the master takes
    changes again and keeps every session it holds."""
    monkeypatch.setattr(persist, "RETRY_SECONDS", 0.2)
    cluster.setup(persist=persisted, fsync="always")
    store = ClusterStore()
    store.set("before", {"ok": True})
    real_sync = persist._sync
    failing = threading.Event()
    failing.set()

    def sync(fd: int) -> None:
        if failing.is_set():
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_sync(fd)

    monkeypatch.setattr(persist, "_sync", sync)
    with pytest.raises(StoreUnavailable):
        store.set("unanswered", {"ok": True})
    journal = journal_of_this_process()
    assert journal.broken is not None
    assert "fsync its log" in journal.broken
    with pytest.raises(StoreUnavailable) as info:
        store.set("refused", {"ok": True})
    assert "takes no change until it has written a snapshot" in str(info.value)
    assert store.get("before") == {"ok": True}  # reads go on, "always" or not
    assert store.get("refused") is None
    assert store.length() == len(store.all())
    failing.clear()
    wait_until(lambda: journal.broken is None, what="the journal was not mended")
    store.set("after", {"ok": True})
    held = store.all()
    assert {"before", "after"} <= set(held)
    cluster.shutdown()
    cluster.setup(persist=persisted)
    assert ClusterStore().all() == held


def test_a_session_touched_while_the_snapshot_is_written_survives_it(
    persisted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compaction copies the state, then writes the snapshot outside the lock. A session
    about to expire that a touch renews in between must stay in the snapshot: the touch is in
    the new log, and a replay applies it only to a session the snapshot holds."""
    cluster.setup(persist=persisted, fsync="no")
    store = ClusterStore()
    store.set("renewed", {"user": "ada", "cookie": expires_in(30)})
    journal = journal_of_this_process()
    server = cluster.master._server
    assert server is not None
    real_write = journal._write_snapshot
    later = time.time() + 60  # past the session's first expiry
    renewed_cookie = expires_in(3600)

    def touched_in_between(*args: Any, **kwargs: Any) -> int | None:
        store.touch("renewed", {"user": "ada", "cookie": renewed_cookie})
        server.state.clock = lambda: later  # the snapshot is written after the old expiry
        return real_write(*args, **kwargs)

    monkeypatch.setattr(journal, "_write_snapshot", touched_in_between)
    journal.compact()
    cluster.shutdown()
    cluster.setup(persist=persisted)
    assert ClusterStore().get("renewed") == {"user": "ada", "cookie": renewed_cookie}


def test_a_second_break_after_a_mend_is_mended_into_a_new_log(
    persisted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mended once, the master logs into the log it began while broken; when that log breaks
    too, the next mend must start another one, not take the broken one up again."""
    monkeypatch.setattr(persist, "RETRY_SECONDS", 0.2)
    cluster.setup(persist=persisted, fsync="no")
    store = ClusterStore()
    journal = journal_of_this_process()
    answered = {}
    for round_ in range(2):
        store.set(f"before-{round_}", {"round": round_})
        answered[f"before-{round_}"] = {"round": round_}
        swap_in_dev_full(journal)
        with pytest.raises(StoreUnavailable):
            store.set("refused", {"round": round_})
        wait_until(lambda: journal.broken is None, what=f"break {round_} was not mended")
        store.set(f"after-{round_}", {"round": round_})  # raises if the mend kept /dev/full
        answered[f"after-{round_}"] = {"round": round_}
    cluster.shutdown()
    cluster.setup(persist=persisted)
    assert ClusterStore().all() == answered


def test_always_answers_no_write_that_waited_for_an_fsync_that_failed(
    persisted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync="always": connection B's fsync runs, connection A logs a set meanwhile and waits
    for the next fsync; B's fails. Neither set is answered OK (A's was never on disk)."""
    monkeypatch.setattr(persist, "RETRY_SECONDS", 60.0)
    cluster.setup(persist=persisted, fsync="always")
    journal = journal_of_this_process()
    monkeypatch.setattr(journal, "compact", lambda **_: None)  # no mend during the test
    real_sync = persist._sync
    started, failing = threading.Event(), threading.Event()
    failing.set()

    def sync(fd: int) -> None:
        if not failing.is_set():
            return real_sync(fd)
        position = journal.written
        started.set()
        wait_until(lambda: journal.written > position, what="A's set was not logged")
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(persist, "_sync", sync)
    results: dict[str, str] = {}

    def set_on_its_own_connection(name: str) -> None:
        try:
            ClusterStore().set(name, {"name": name})
            results[name] = "OK"
        except StoreUnavailable as exc:
            results[name] = f"refused: {exc}"

    b = threading.Thread(target=set_on_its_own_connection, args=("b",))
    b.start()
    assert started.wait(10)
    a = threading.Thread(target=set_on_its_own_connection, args=("a",))
    a.start()
    for thread in (a, b):
        thread.join(30)
    failing.clear()
    assert set(results) == {"a", "b"}
    assert results["a"] != "OK", results
    assert results["b"] != "OK", results


def test_a_clean_stop_with_a_broken_log_writes_a_snapshot_first(
    persisted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """shutdown() while the log is broken and not mended yet: the snapshot is written as the
    master stops, and the next master serves every session from it."""
    monkeypatch.setattr(persist, "RETRY_SECONDS", 60.0)
    cluster.setup(persist=persisted, fsync="no")
    store = ClusterStore()
    for sid, session in SESSIONS.items():
        store.set(sid, session)
    journal = journal_of_this_process()
    real_compact = journal.compact

    def only_the_final(*, final: bool = False) -> None:
        if final:
            real_compact(final=True)

    monkeypatch.setattr(journal, "compact", only_the_final)
    swap_in_dev_full(journal)
    with pytest.raises(StoreUnavailable):
        store.set("refused", {"x": 1})
    assert journal.broken is not None
    assert not (persisted / "snapshot").exists()
    cluster.shutdown()
    assert (persisted / "snapshot").exists()
    cluster.setup(persist=persisted)
    assert ClusterStore().all() == SESSIONS


BREAKING_MASTER = """
import os, sys
from storekit.reference import cluster
from storekit.reference.cluster import master, persist, records
cluster.setup(persist=sys.argv[1], fsync=sys.argv[2])
print(os.environ[cluster.ENV_SOCKET], os.environ[cluster.ENV_KEY], flush=True)
sys.stdin.readline()
journal = master._server.journal
real_compact = journal.compact
# no mend before the stop
journal.compact = lambda *, final=False: real_compact(final=True) if final else None
full = os.open("/dev/full", os.O_WRONLY | os.O_CLOEXEC)
with master._server._lock:
    # the disk lost what was written (as after a failed fsync), and the next write fails
    os.ftruncate(journal.fd, records.HEADER_SIZE)
    real, journal.fd = journal.fd, full
os.close(real)
print("failing", flush=True)
sys.stdin.read()
"""


def test_sigterm_with_a_broken_log_writes_the_snapshot_and_the_next_master_serves_it(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    """A plain master whose log has lost its records and then breaks (a write fails and cannot
    be cut back off), SIGTERMed before the compaction thread could mend it: its handler writes
    the snapshot of memory as it stops, and the next master serves every session from it."""
    data = tmp_path / "sessions"
    with master(clean_env, data, "no", script=BREAKING_MASTER) as (first, address):
        store = ClusterStore(address=address, timeout=5)
        try:
            for sid, session in SESSIONS.items():
                store.set(sid, session)
            assert first.stdin is not None
            assert first.stdout is not None
            first.stdin.write("break\n")
            first.stdin.flush()
            assert first.stdout.readline() == "failing\n"
            with pytest.raises(StoreUnavailable, match="takes no change until it has written a snapshot"):
                store.set("refused", {"x": 1})
            assert not (data / "snapshot").exists()
            stop(first, signal.SIGTERM)
            assert (data / "snapshot").exists()
            with master(env_of(clean_env, address), data, "no") as (_second, again):
                assert again == address
                assert store.all() == SESSIONS
        finally:
            store.close()
            shutil.rmtree(os.path.dirname(address.path), ignore_errors=True)


def test_sigterm_whose_thread_holds_the_lock_fsyncs_and_says_what_may_be_lost(
    persisted: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM's handler interrupts the main thread, which may hold the server's lock: it
    waits for it only so long, then fsyncs without a snapshot and says so, never hanging."""
    monkeypatch.setattr(persist, "RETRY_SECONDS", 60.0)
    cluster.setup(persist=persisted, fsync="no")
    store = ClusterStore()
    store.set("s", {"ok": True})
    journal = journal_of_this_process()
    monkeypatch.setattr(journal, "compact", lambda *, final=False: None)
    swap_in_dev_full(journal)
    with pytest.raises(StoreUnavailable):
        store.set("refused", {"x": 1})
    # The journal's view of the server's lock, held by the "main thread" below: if the handler
    # waited on it, only that thread would hang, and the test fails instead of hanging.
    real_lock, held = journal._server_lock, threading.Lock()
    journal._server_lock = held

    def interrupted_while_holding_the_lock() -> None:
        with held:
            journal.stop_on_signal(lock_wait=0.2)

    handler = threading.Thread(target=interrupted_while_holding_the_lock, daemon=True)
    try:
        with caplog.at_level(logging.ERROR, logger="storekit.cluster"):
            handler.start()
            handler.join(10)
    finally:
        journal._server_lock = real_lock
    assert not handler.is_alive(), "stop_on_signal waited for a lock its own thread holds"
    assert "broken log" in caplog.text
    assert "changes since it broke may be lost" in caplog.text
    assert journal.broken is not None
    assert not (persisted / "snapshot").exists()
    assert store.get("s") == {"ok": True}  # still serving: the handler goes on to end the process


def test_a_change_after_the_log_is_closed_under_a_running_server_is_refused(persisted: Path) -> None:
    """SIGTERM's handler closes the log while the server still answers: a change that comes
    after is refused, saying the master is stopping, and nothing is written; reads go on."""
    cluster.setup(persist=persisted, fsync="no")
    store = ClusterStore()
    store.set("s", {"ok": True})
    journal = journal_of_this_process()
    journal.close()
    size = (persisted / "log.0").stat().st_size
    with pytest.raises(StoreUnavailable, match="is stopping and has closed its log"):
        store.set("late", {"x": 1})
    with pytest.raises(StoreUnavailable, match="is stopping"):
        store.destroy("s")
    assert store.get("s") == {"ok": True}
    assert (persisted / "log.0").stat().st_size == size
    assert journal.broken is None  # refused, not broken: nothing was lost


def test_always_answers_a_length_while_another_connection_breaks_the_log(
    persisted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LENGTH and ALL change nothing: under fsync="always" they are answered even when another
    connection's write breaks the journal while they run."""
    from storekit.reference.cluster import connection

    monkeypatch.setattr(persist, "RETRY_SECONDS", 60.0)
    cluster.setup(persist=persisted, fsync="always")
    ClusterStore().set("x", {"a": 1})
    journal = journal_of_this_process()
    monkeypatch.setattr(journal, "compact", lambda **_: None)  # no mend during the test
    real_long = connection._long

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def another_write_breaks_the_log(*args: Any) -> list[bytes]:
        parts = real_long(*args)
        if journal.broken is None:
            monkeypatch.setattr(persist, "_sync", eio)
            with contextlib.suppress(StoreUnavailable):
                ClusterStore().set("y", {"b": 2})
            assert journal.broken is not None
        return parts

    monkeypatch.setattr(connection, "_long", another_write_breaks_the_log)
    assert ClusterStore().length() in (1, 2)
    assert set(ClusterStore().all()) <= {"x", "y"}

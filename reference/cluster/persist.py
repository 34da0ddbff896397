"""The master's sessions on disk: ``setup(persist=PATH, fsync=...)``.

PATH is a private directory (0700, ours, not group- or world-writable)
holding ``snapshot`` and ``log.<generation>`` (0600; layout in ``records``)
and a ``lock`` that one master at a time holds. :meth:`Journal.open` replays
the snapshot and then the logs into the state, cutting a torn or corrupt tail
off (and saying so on the ``storekit.cluster`` logger), before the server
accepts a connection; afterwards every change the state makes is written to
the log at once, with ``os.write``, under the server's lock. ``fsync`` says
when the log reaches the disk: ``"always"`` before the replies of each batch
(:meth:`Journal.sync_to`, called by ``connection.serve``), ``"everysec"`` from
a thread once a second, ``"no"`` when the OS likes; :meth:`Journal.close`
(``shutdown()``, atexit) and :meth:`Journal.stop_on_signal` (SIGTERM) always.

When the log outgrows :data:`COMPACT_RATIO` times the snapshot (and
:data:`COMPACT_MIN_BYTES`), a thread compacts it: under the lock, one copy of
each namespace's dict and a switch to a new log; outside it, the new snapshot
is written to a temporary file, fsynced and renamed over the old one, and the
old logs are removed.

The log never lacks what memory holds. Every change is logged before the
state makes it (``state.Unlogged``): a write that fails (a full disk) is cut
back off the log and refused, with nothing changed, and the next one is tried
as usual. When the log itself can no longer be trusted (cutting a failed write
back off failed, or an fsync failed: the kernel may have dropped written
pages), the journal is *broken*: it refuses every change, and the compaction
thread tries every :data:`RETRY_SECONDS` to write a snapshot of memory, which
mends it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import stat
import threading
import weakref
from typing import Final, NoReturn

from storekit.errors import StoreError
from storekit.reference.cluster import records
from storekit.reference.cluster.records import CLEAR, DELETE, END, HEADER_SIZE, PUT, TOUCH
from storekit.reference.cluster.state import ClusterState, Unlogged
from storekit.reference.cluster.wire import EXPIRY, JSON, touched_value

__all__ = ["COMPACT_MIN_BYTES", "COMPACT_RATIO", "FSYNC_POLICIES", "Journal", "check_options"]

log = logging.getLogger("storekit.cluster")

FSYNC_POLICIES: Final = ("always", "everysec", "no")
COMPACT_MIN_BYTES = 64 << 20
"""The log is never compacted below this size (bytes)."""
COMPACT_RATIO = 2
"""The log is compacted once it is this many times the size of the snapshot."""
RETRY_SECONDS = 5.0
"""How often a broken journal tries to mend itself with a snapshot."""
LOCK_WAIT = 5.0
"""How long SIGTERM's handler waits for a lock before it stops without mending a broken log."""
_SNAPSHOT = "snapshot"
_TEMPORARY = "snapshot.tmp"
_LOCK = "lock"
_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_sync = getattr(os, "fdatasync", os.fsync)


def check_options(persist: object, fsync: object) -> tuple[str, str] | None:
    """The directory and the policy of ``setup(persist=..., fsync=...)``, or None
    without persistence; ValueError or TypeError for arguments that make no sense."""
    if persist is None:
        if fsync is not None:
            raise ValueError(
                f"setup(fsync={fsync!r}) needs persist=PATH, the directory to keep the sessions in; "
                "without persist the sessions live in memory only"
            )
        return None
    if not isinstance(persist, (str, os.PathLike)):
        raise TypeError(
            f"setup(persist=...) takes a str or os.PathLike directory, got {type(persist).__name__}"
        )
    path = os.fspath(persist)
    if not isinstance(path, str) or not path:
        raise ValueError(f"setup(persist={persist!r}) needs a non-empty str path to a directory")
    policy = "everysec" if fsync is None else fsync
    if policy not in FSYNC_POLICIES:
        raise ValueError(
            f"setup(fsync={fsync!r}) is no fsync policy; choose one of "
            + ", ".join(repr(name) for name in FSYNC_POLICIES)
        )
    return os.path.abspath(path), str(policy)


class Journal:
    """The log of one master's changes, its snapshot, and the threads that sync and compact them."""

    def __init__(self, directory: str, policy: str, state: ClusterState, lock_fd: int) -> None:
        self.directory = directory
        self.policy = policy
        self.sync_each = policy == "always"
        self.state = state
        self.written = 0  # bytes appended to the logs since open(), all files together
        self.synced = 0  # of which fsynced
        self.generation = 0
        self.fd = -1
        self.log_bytes = 0  # the current log's size
        self.compact_at = COMPACT_MIN_BYTES
        self._lock_fd = lock_fd
        self._retired: list[int] = []  # logs switched away from, still open
        self._sync_lock = threading.Lock()
        self._server_lock: threading.Lock | None = None
        self._wake = threading.Event()  # compaction is due, or stopping
        self._stop = threading.Event()
        self._stopping = False
        self._compacting = False
        self._threads: list[threading.Thread] = []
        self.broken: str | None = None  # why every change is refused, until a snapshot mends it
        self._breaks = 0  # how many times it broke: a snapshot mends only the breaks before its copy
        self._mending = -1  # the generation of a log begun while broken, which holds no record
        self._refused = 0  # changes refused since the last one the log took
        self.pid = os.getpid()

    # Opening and replaying

    @classmethod
    def open(cls, directory: str, policy: str, state: ClusterState) -> Journal:
        """Replay ``directory`` into ``state`` and open its log for appending."""
        lock_fd = _take(directory)
        journal = cls(directory, policy, state, lock_fd)
        try:
            journal._replay()
        except BaseException:
            journal._close_fds()
            raise
        _journals.add(journal)
        return journal

    def _replay(self) -> None:
        directory = self.directory
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, _TEMPORARY))  # a compaction that did not finish
        names = os.listdir(directory)
        logs = sorted(int(name[4:]) for name in names if name.startswith("log.") and name[4:].isdigit())
        tables: dict[bytes, dict[bytes, bytes]] = {}
        generation, snapshot_bytes, count = 0, 0, 0
        if _SNAPSHOT in names:
            generation, snapshot_bytes, count = self._load(_SNAPSHOT, records.SNAPSHOT_MAGIC, None, tables)
        replayed = 0
        for number in logs:
            if number < generation:  # folded into the snapshot already
                os.unlink(os.path.join(directory, f"log.{number}"))
                continue
            replayed += self._load(f"log.{number}", records.LOG_MAGIC, number, tables)[2]
            generation = number
        dropped = self.state.adopt(tables)
        self.generation = generation
        if logs and logs[-1] == generation:  # read and checked above: appended to
            self.fd, self.log_bytes = _open_log(directory, generation)
        else:
            self.fd, self.log_bytes = _new_log(directory, generation), HEADER_SIZE
        self.compact_at = max(COMPACT_MIN_BYTES, COMPACT_RATIO * snapshot_bytes)
        if logs or _SNAPSHOT in names:
            log.info(
                "storekit cluster: replayed %s: %d sessions from the snapshot, %d log records; "
                "%d live sessions, %d expired ones dropped",
                directory,
                count,
                replayed,
                self.state.size(),
                dropped,
            )
        if self.log_bytes > self.compact_at:
            self._compacting = True
            self._wake.set()

    def _load(
        self, name: str, magic: bytes, generation: int | None, tables: dict[bytes, dict[bytes, bytes]]
    ) -> tuple[int, int, int]:
        """Apply the records of file ``name`` to ``tables``, cutting a damaged tail off;
        (its generation, its size, the records applied)."""
        path = os.path.join(self.directory, name)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            _own_file(fd, path)
            with open(fd, "rb", closefd=False) as file:
                data = file.read()
            head = records.parse_header(data)
            if head is None or head.magic != magic:
                if generation is not None and data == (records.header(magic, generation))[: len(data)]:
                    log.warning(
                        "storekit cluster: %s has a cut header (%d bytes); starting it again", path, len(data)
                    )
                    os.ftruncate(fd, 0)
                    _write_all(fd, records.header(magic, generation), 0)
                    _sync(fd)
                    return generation, HEADER_SIZE, 0
                raise StoreError(
                    f"{path!r} is not a storekit cluster {'log' if generation is not None else 'snapshot'} "
                    f"(it does not start with {magic!r}); storekit never overwrites it: move it out of "
                    "the directory, or pass setup() another persist path"
                )
            if head.version != records.VERSION:
                raise StoreError(
                    f"{path!r} has format version {head.version}; this storekit reads version "
                    f"{records.VERSION}: use the storekit that wrote it, or pass setup() another persist path"
                )
            if generation is not None and head.generation != generation:
                raise StoreError(
                    f"{path!r} says it is log {head.generation}, not {generation}: it was renamed; "
                    "move it out of the directory, or pass setup() another persist path"
                )
            scan = records.Scan(data, HEADER_SIZE)
            applied, ended = _apply(scan, tables)
            if scan.problem is not None:
                log.warning(
                    "storekit cluster: %s: %s; cutting the %d bytes from there off, keeping the %d before",
                    path,
                    scan.problem,
                    len(data) - scan.end,
                    scan.end,
                )
                os.ftruncate(fd, scan.end)
                _sync(fd)
            if generation is None and ended is None:
                log.warning(
                    "storekit cluster: %s ends without its end record; kept %d sessions", path, applied
                )
            elif generation is None and ended != applied:
                log.warning(
                    "storekit cluster: %s holds %d sessions where its end record counts %d",
                    path,
                    applied,
                    ended,
                )
            return head.generation, scan.end, applied
        finally:
            os.close(fd)

    # Writing

    def record(self, op: int, namespace: bytes, sid: bytes, value: bytes) -> None:
        """Append one change to the log before the state makes it (the state's ``log``;
        under the server's lock); :class:`~storekit.reference.cluster.state.Unlogged`
        if it cannot, with the log as it was."""
        if self.broken is not None:
            raise Unlogged(self.broken)
        fd = self.fd
        if fd < 0:  # closed as the master stops, its server still answering (SIGTERM's handler)
            raise Unlogged(f"the cluster master is stopping and has closed its log in {self.directory!r}")
        data = records.record(op, namespace, sid, value)
        try:
            _write_all(fd, data)
        except OSError as exc:
            self._refuse(fd, exc)
        if self._refused:
            log.warning(
                "storekit cluster: the log in %s takes changes again (%d were refused)",
                self.directory,
                self._refused,
            )
            self._refused = 0
        size = len(data)
        self.written += size
        self.log_bytes += size
        if self.log_bytes > self.compact_at and not self._compacting:
            self._compacting = True
            self._wake.set()

    def _refuse(self, fd: int, exc: OSError) -> NoReturn:
        """Cut a failed write back off the log and refuse its change (or break the journal,
        if the cut fails too: the log then ends inside a record)."""
        try:
            os.ftruncate(fd, self.log_bytes)
        except OSError as cut:
            self._break(f"cut a failed write back off its log ({cut.strerror})")
            raise Unlogged(self.broken) from exc
        if not self._refused:
            log.error(
                "storekit cluster: cannot write to the log in %s (%s); refusing changes until it can",
                self.directory,
                exc.strerror,
            )
        self._refused += 1
        raise Unlogged(
            f"the cluster master cannot write to its log in {self.directory!r} ({exc.strerror}), so it "
            "did not make the change; it takes changes again as soon as the log does (free disk space "
            "there, or fix the file system)"
        ) from exc

    def _break(self, what: str) -> None:
        """Refuse every change until a snapshot of memory is on disk (see the module's docstring)."""
        self._breaks += 1
        self.broken = (
            f"the cluster master could not {what} in {self.directory!r}, so its log may lack changes "
            f"it holds; it takes no change until it has written a snapshot of every session (tried "
            f"every {RETRY_SECONDS:g} s: free disk space there, or fix the file system)"
        )
        log.error("storekit cluster: %s", self.broken)
        self._wake.set()

    def sync_to(self, position: int) -> None:
        """Return once the first ``position`` bytes written are on disk (one fsync
        serves every caller waiting while it runs); OSError if they may not be: the
        fsync failed, which breaks the journal, or it is broken (a snapshot mends it)."""
        if self.synced >= position:
            return
        with self._sync_lock:
            if self.synced >= position or self.fd < 0:
                return
            if self.broken is not None:
                raise OSError(errno.EIO, self.broken)
            target = self.written
            try:
                self._sync_retired(close=True)
                _sync(self.fd)
            except OSError as exc:
                self._break(f"fsync its log ({exc.strerror})")
                raise
            self.synced = target

    def _sync_retired(self, *, close: bool) -> None:
        for fd in list(self._retired):
            _sync(fd)
            if close:
                self._retired.remove(fd)
                os.close(fd)

    def stop_on_signal(self, lock_wait: float = LOCK_WAIT) -> None:
        """For SIGTERM's handler, which runs on the main thread, after which the process ends.

        A log that is whole is fsynced (:meth:`sync_now`), taking no lock. A
        broken one is closed as :meth:`close` does, which writes the snapshot
        that mends it, provided that the server's lock and the journal's can
        each be had within ``lock_wait`` seconds: the main thread, interrupted
        by the signal, may hold one of them itself, and would wait for it for
        ever. If it cannot have them, or the journal is closing already, the
        log is fsynced and the logger says what may be lost."""
        if self.broken is None or self._stopping or self.pid != os.getpid():
            self.sync_now()
            return
        for lock in (self._server_lock, self._sync_lock):
            if lock is None or not lock.acquire(timeout=lock_wait):
                self.sync_now()
                return
            lock.release()
        self.close()

    def sync_now(self) -> None:
        """fsync what was written, taking none of the journal's locks (for a signal handler:
        the process ends); with a broken log, say on the logger what that may lose."""
        if self.broken is not None:
            log.error(
                "storekit cluster: stopping on a signal with a broken log in %s and no snapshot "
                "written: changes since it broke may be lost",
                self.directory,
            )
        for fd in [*self._retired, self.fd]:
            with contextlib.suppress(OSError):
                _sync(fd)

    # Threads

    def start(self, lock: threading.Lock) -> None:
        """Run the threads (compaction; the fsync each second for "everysec") with
        ``lock``, the server's, guarding the state."""
        self._server_lock = lock
        if self._threads:
            return
        targets = [self._compactor] + ([self._syncer] if self.policy == "everysec" else [])
        for target in targets:
            thread = threading.Thread(
                target=target, name=f"storekit-cluster-{target.__name__[1:]}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _syncer(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        while not self._stop.wait(1.0):
            with contextlib.suppress(OSError):  # sync_to broke the journal, and said so
                self.sync_to(self.written)

    def _compactor(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        while True:
            woken = self._wake.wait(None if self.broken is None else RETRY_SECONDS)
            self._wake.clear()
            if self._stopping:
                return
            if not woken and self.broken is None:
                continue
            try:
                self.compact()
            except Exception:
                log.exception(
                    "storekit cluster: compacting the log in %s failed; it keeps growing", self.directory
                )
                self.compact_at = self.log_bytes + COMPACT_MIN_BYTES  # tried again after as much more
            finally:
                self._compacting = False

    def compact(self, *, final: bool = False) -> None:
        """Write a snapshot of the state and start a new log; remove the old logs.
        A broken journal is mended once the snapshot is on disk. ``final``: as the
        master stops (:meth:`close`), not given up for stopping."""
        lock = self._server_lock
        if lock is None:
            raise RuntimeError("compact() needs start(lock) first")
        directory = self.directory
        if self.broken is not None and self._mending == self.generation and self.log_bytes == HEADER_SIZE:
            generation, fd = self.generation, -1  # another try at mending: the empty log stays
        else:
            generation = self.generation + 1
            fd = _new_log(directory, generation)  # made and synced before the lock is taken
        try:
            with lock:
                tables, now = self.state.copy()
                breaks = self._breaks
                if fd >= 0:
                    with self._sync_lock:
                        self._retired.append(self.fd)
                        self.fd, self.log_bytes, self.generation, fd = fd, HEADER_SIZE, generation, -1
                    if self.broken is not None:  # no record goes into it until it is mended
                        self._mending = generation
        finally:
            if fd >= 0:  # not switched to (no memory for the copy): nothing went into it
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, f"log.{generation}"))
        snapshot_bytes = self._write_snapshot(tables, now, generation, abortable=not final)
        del tables
        if snapshot_bytes is None:  # stopping: the logs hold everything
            return
        if self.broken is not None:
            with lock, self._sync_lock:
                if self.broken is not None and self._breaks == breaks:
                    # memory as it was at the copy is on disk, and no change was made since
                    self.broken, self._mending, self.synced = None, -1, self.written
                    log.warning("storekit cluster: wrote a snapshot in %s; taking changes again", directory)
        with self._sync_lock:  # the snapshot holds what they did
            for old in self._retired:
                os.close(old)
            self._retired.clear()
        for name in os.listdir(directory):
            if name.startswith("log.") and name[4:].isdigit() and int(name[4:]) < generation:
                os.unlink(os.path.join(directory, name))
        self.compact_at = max(COMPACT_MIN_BYTES, COMPACT_RATIO * snapshot_bytes)
        log.info("storekit cluster: compacted %s into a snapshot of %d bytes", directory, snapshot_bytes)

    def _write_snapshot(
        self, tables: dict[bytes, dict[bytes, bytes]], now: bytes, generation: int, *, abortable: bool = True
    ) -> int | None:
        """Write the sessions of ``tables`` live at ``now`` (the wire time of the copy:
        one renewed after it is in ``tables`` with its old expiry, and must stay in);
        None if it gave up (``abortable``, and the master stops)."""
        directory = self.directory
        temporary = os.path.join(directory, _TEMPORARY)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        record, count = records.record, 0
        try:
            with open(fd, "wb", buffering=1 << 20) as file:
                write = file.write
                write(records.header(records.SNAPSHOT_MAGIC, generation))
                for namespace, entries in tables.items():
                    for sid, value in entries.items():
                        if value[EXPIRY] > now:
                            write(record(PUT, namespace, sid, value))
                            count += 1
                            if not count % 4096 and self._stopping and abortable:
                                raise InterruptedError
                write(record(END, b"", b"", records.encode_count(count)))
                file.flush()
                os.fsync(file.fileno())
                size = file.tell()
        except InterruptedError:
            os.unlink(temporary)
            return None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        os.replace(temporary, os.path.join(directory, _SNAPSHOT))
        _sync_dir(directory)
        return size

    # Stopping

    def close(self) -> None:
        """Stop the threads, fsync everything written and close the files (whatever the policy)."""
        if self.pid != os.getpid():
            return
        self._stopping = True
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(30)
        alive = [thread.name for thread in self._threads if thread.is_alive()]
        self._threads.clear()
        if self.broken is not None and self.fd >= 0 and alive:
            log.error(
                "storekit cluster: the log in %s is broken and %s did not stop in 30 s, so no snapshot "
                "is written as the master stops: changes since it broke may be lost",
                self.directory,
                ", ".join(alive),
            )
        elif self.broken is not None and self.fd >= 0:
            try:
                self.compact(final=True)
            except Exception:
                log.exception(
                    "storekit cluster: the log in %s is broken and no snapshot could be written as the "
                    "master stops: changes since it broke may be lost",
                    self.directory,
                )
        # Under the server's lock as well: a change made after the files are closed finds fd -1
        # and is refused by record() (shutdown() stops the server first; SIGTERM's handler does not).
        with self._server_lock or contextlib.nullcontext(), self._sync_lock:
            if self.fd >= 0:
                try:
                    self._sync_retired(close=False)
                    _sync(self.fd)
                    self.synced = self.written
                except OSError as exc:
                    log.error(
                        "storekit cluster: cannot fsync the log in %s as the master stops (%s); "
                        "changes written since its last fsync may be lost",
                        self.directory,
                        exc.strerror,
                    )
            self._close_fds()
        _journals.discard(self)

    def _close_fds(self) -> None:
        for fd in [*self._retired, self.fd, self._lock_fd]:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._retired.clear()
        self.fd = self._lock_fd = -1

    def abandon(self) -> None:
        """In a forked child: close this process's copies of the files; write nothing."""
        self._stopping = True
        self._close_fds()


def _apply(scan: records.Scan, tables: dict[bytes, dict[bytes, bytes]]) -> tuple[int, int | None]:
    """Apply the records of ``scan`` to ``tables``: (records applied, the count of an END record)."""
    applied, ended = 0, None
    table: dict[bytes, bytes] | None = None
    last = None
    for op, namespace, sid, value in scan:
        if op == PUT:
            if namespace is not last:
                table = tables.get(namespace)
                if table is None:
                    table = tables[namespace] = {}
                last = namespace
            assert table is not None
            table[sid] = value
        elif op == DELETE:
            found = tables.get(namespace)
            if found is not None:
                found.pop(sid, None)
        elif op == TOUCH:
            found = tables.get(namespace)
            entry = None if found is None else found.get(sid)
            if found is not None and entry is not None:
                found[sid] = touched_value(value[EXPIRY], entry, value[JSON])
        elif op == CLEAR:
            tables.pop(namespace, None)
            last = None
        elif op == END:
            ended = records.decode_count(value)
            continue
        else:
            raise StoreError(
                f"a persisted record has op {op}, which this storekit does not know: a newer storekit "
                "wrote it; use that one, or pass setup() another persist path"
            )
        applied += 1
    return applied, ended


def _take(directory: str) -> int:
    """Make ``directory`` (0700) if it is missing, check that it is private and ours,
    and lock it for this process; the lock's descriptor."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(
            f"cannot create the persist directory {directory!r} ({exc.strerror}); create its parent, "
            "or pass setup() another persist path"
        ) from None
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise StoreError(
            f"persist path {directory!r} is not a directory (a file or a symlink); pass another path"
        )
    if info.st_uid != os.geteuid():
        raise StoreError(
            f"persist directory {directory!r} belongs to uid {info.st_uid}, not to this user "
            f"({os.geteuid()}); sessions are kept only in a directory of the user the master runs as"
        )
    if info.st_mode & 0o022:
        raise StoreError(
            f"persist directory {directory!r} has mode {stat.S_IMODE(info.st_mode):o}, writable by other "
            f"users; run chmod 700 {directory!r}, or pass setup() another persist path"
        )
    fd = os.open(os.path.join(directory, _LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        _own_file(fd, os.path.join(directory, _LOCK))
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            raise StoreError(
                f"another process persists sessions into {directory!r} (it holds its lock); "
                "stop that master first, or pass setup() another persist path"
            ) from None
        raise
    except BaseException:
        os.close(fd)
        raise
    return fd


def _own_file(fd: int, path: str) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        raise StoreError(
            f"{path!r} is not a regular file of this user; move it out of the directory, "
            "or pass setup() another persist path"
        )
    if info.st_mode & 0o077:
        os.fchmod(fd, 0o600)


_LOG_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW


def _open_log(directory: str, generation: int) -> tuple[int, int]:
    """The log of ``generation``, replayed and checked already, open for appending, and its size."""
    path = os.path.join(directory, f"log.{generation}")
    fd = os.open(path, _LOG_FLAGS)
    try:
        _own_file(fd, path)
        return fd, os.fstat(fd).st_size
    except BaseException:
        os.close(fd)
        raise


def _new_log(directory: str, generation: int) -> int:
    """A new log of ``generation`` with its header, on disk, open for appending. A file of
    that name is what a compaction that failed left behind, which no record went into: it
    is replaced. If the header cannot be written, no file is left."""
    path = os.path.join(directory, f"log.{generation}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, _LOG_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _write_all(fd, records.header(records.LOG_MAGIC, generation))
        _sync(fd)
        _sync_dir(directory)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return fd


def _write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    """Write all of ``data`` (at ``offset``, or where the file's position is), or OSError."""
    done = os.write(fd, data) if offset is None else os.pwrite(fd, data, offset)
    if done == len(data):  # the usual case: one call
        return
    view = memoryview(data)[done:]
    while view:
        done = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset + len(data) - len(view))
        view = view[done:]


def _sync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_journals: weakref.WeakSet[Journal] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for journal in list(_journals):
        journal.abandon()
    _journals.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)

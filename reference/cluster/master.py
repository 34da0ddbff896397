"""ClusterStore: sessions shared by a master process and the workers it starts.

In the master (a plain parent process, a gunicorn arbiter), before any
worker starts::

    from storekit.reference import cluster
    cluster.setup()

and in each worker::

    store = cluster.ClusterStore()

``setup()`` starts a server thread on a Unix socket in a fresh private
directory and puts the socket's path and a random key into this process's
environment (``$STOREKIT_CLUSTER_SOCKET``, ``$STOREKIT_CLUSTER_KEY``), which
every worker forked or spawned afterwards inherits. See ``docs/cluster.md``.

The socket's directory goes away on every clean stop: ``shutdown()``, the
exit of the interpreter (atexit), and SIGTERM, for which ``setup()`` installs
a handler when the process has SIGTERM's default disposition and calls it
from the main thread: the handler removes the socket (and the directory
``setup()`` made), then restores the default and sends itself SIGTERM again,
so the process ends as it would have. Forked children get SIGTERM's default
back. A handler the program installs later replaces it (gunicorn's and
``storekit serve``'s do, and they exit through ``shutdown()`` or atexit).

``setup(persist=PATH, fsync=...)`` keeps the sessions in PATH as well
(``persist``): a master started again on PATH finds them. Every clean stop
above fsyncs the log first, whatever the policy.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator

from storekit.codec import DEFAULT_MAX_SESSION_BYTES
from storekit.errors import StoreError
from storekit.reference.cluster.aio import AsyncClusterStore
from storekit.reference.cluster.client import ClusterStore
from storekit.reference.cluster.common import ENV_KEY, ENV_SOCKET, Address, address_from_env
from storekit.reference.cluster.persist import Journal, check_options
from storekit.reference.cluster.server import ClusterServer
from storekit.reference.cluster.state import ClusterState
from storekit.target import Target

__all__ = [
    "cluster_async_target",
    "cluster_target",
    "outage",
    "serving",
    "setup",
    "shutdown",
]

_lock = threading.Lock()
_server: ClusterServer | None = None
_made_dir: str | None = None  # the directory setup() created, removed by shutdown()
_saved_env: dict[str, str | None] = {}
_at_exit: list[int] = []  # the pid that registered the atexit clean-up


def setup(
    *,
    max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES,
    persist: str | os.PathLike[str] | None = None,
    fsync: str | None = None,
) -> str:
    """Start the cluster server in this process (the master) and return its socket path.

    With ``persist``, a directory (made, mode 0700, if missing), the sessions
    are also kept there, and a master started on it again serves them:
    ``setup()`` replays them before it accepts a connection. ``fsync`` says
    when each write reaches the disk: ``"always"`` (before its reply),
    ``"everysec"`` (the default: within about a second) or ``"no"`` (when the
    OS writes it back). See docs/cluster.md#persistence.

    Call it before the workers start: they find the server through the
    environment they inherit. Calling it again is harmless: it returns the
    running server's path. When the environment already names a server (this
    process is itself a worker, or a master restarted with the address of the
    one that died), ``setup()`` uses that one if it answers and otherwise
    serves at that same path with the same key, so the old workers reconnect.
    """
    global _server, _made_dir
    options = check_options(persist, fsync)
    with _lock:
        if _server is not None and _server.running:
            return _server.path
        _server = None
        if os.environ.get(ENV_SOCKET) and os.environ.get(ENV_KEY):
            address = address_from_env()
            _ensure_private(os.path.dirname(address.path))
            with _dir_lock(address.path):
                if _answers(address.path):
                    return address.path
                _server = _start(address, max_session_bytes, options)
            _handle_sigterm()
            return address.path
        directory = tempfile.mkdtemp(prefix="storekit-cluster-", dir=_short_tmp())  # mode 0700
        address = Address(os.path.join(directory, "sock"), secrets.token_bytes(32))
        try:
            _server = _start(address, max_session_bytes, options)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        _made_dir = directory
        if not _at_exit:
            atexit.register(_shutdown_at_exit, os.getpid())
            _at_exit.append(os.getpid())
        _handle_sigterm()
        for name, value in ((ENV_SOCKET, address.path), (ENV_KEY, address.secret.hex())):
            _saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        return address.path


def shutdown() -> None:
    """Stop the server that ``setup()`` started in this process, remove its socket
    and directory, and restore the environment. Workers' operations then raise
    StoreUnavailable. Does nothing when this process serves nothing."""
    global _server, _made_dir
    with _lock:
        server, _server = _server, None
        if server is not None and server.pid == os.getpid():
            server.stop()
            if server.journal is not None:
                server.journal.close()
        if _made_dir is not None:
            shutil.rmtree(_made_dir, ignore_errors=True)
            _made_dir = None
        for name, value in _saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _saved_env.clear()
        _release_sigterm()


def _handle_sigterm() -> None:
    """Clean up on SIGTERM, if SIGTERM has its default disposition and we may set it."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _release_sigterm() -> None:
    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _on_sigterm(signum: int, frame: object) -> None:
    """Remove the socket and the directory, then die of SIGTERM as the default would.
    Waits for no lock without a limit (the main thread, which runs this, may hold one):
    the log is fsynced, and a broken one mended with a snapshot where its locks are free
    (``Journal.stop_on_signal``)."""
    server, directory = _server, _made_dir
    if server is not None and server.pid == os.getpid():
        server.unlink()
        if server.journal is not None:
            server.journal.stop_on_signal()
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _shutdown_at_exit(pid: int) -> None:
    if pid == os.getpid():  # not in a forked child that inherited the handler
        shutdown()


@contextlib.contextmanager
def serving(*, max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES) -> Iterator[str]:
    """``setup()`` on entry; on exit, ``shutdown()`` if this entry started the server."""
    started = _server is None or not _server.running
    path = setup(max_session_bytes=max_session_bytes)
    try:
        yield path
    finally:
        if started:
            shutdown()


@contextlib.contextmanager
def outage() -> Iterator[None]:
    """Stop this process's server for the duration, then serve again at the same
    path with the same key and the same sessions (clause errors.1)."""
    global _server
    with _lock:
        server = _server
        if server is None or not server.running:
            raise StoreError("outage() needs the server that setup() started in this process")
        server.stop()
        _server = None
    try:
        yield
    finally:
        with _lock:
            restarted = ClusterServer(server.path, server.secret, state=server.state, journal=server.journal)
            restarted.start()
            _server = restarted


def _ensure_private(directory: str) -> None:
    """Create ``directory`` (0700) if it is gone; refuse it unless it is private and ours."""
    try:
        try:
            check_private_directory(directory)
        except FileNotFoundError:
            os.mkdir(directory, 0o700)
            check_private_directory(directory)
    except (PermissionError, FileNotFoundError, FileExistsError) as exc:
        raise StoreError(
            f"refusing to serve sessions from {directory!r}: {exc}; unset ${ENV_SOCKET} to let "
            "setup() make a fresh private directory"
        ) from None


def _start(address: Address, max_session_bytes: int, options: tuple[str, str] | None) -> ClusterServer:
    """A running server; with ``options`` (persist directory, fsync policy), on the
    sessions replayed from that directory, which it logs to."""
    state = ClusterState(max_session_bytes=max_session_bytes)
    journal = None
    if options is not None:
        journal = Journal.open(*options, state)
        state.log = journal.record
    server = ClusterServer(address.path, address.secret, state=state, journal=journal)
    try:
        server.start()
    except BaseException:
        if journal is not None:
            journal.close()
        raise
    return server


def check_private_directory(directory: str) -> None:
    """Raise PermissionError unless ``directory`` is ours, a real directory, and 0700."""
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"{directory!r} is not a directory (a symlink or a file)")
    if info.st_uid != os.geteuid():
        raise PermissionError(f"{directory!r} belongs to uid {info.st_uid}, not to this user")
    if info.st_mode & 0o077:
        raise PermissionError(
            f"{directory!r} has mode {stat.S_IMODE(info.st_mode):o}; it must be 0700 so that "
            "no other user can reach the socket"
        )


def _answers(path: str) -> bool:
    """Whether something accepts connections at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


@contextlib.contextmanager
def _dir_lock(path: str) -> Iterator[None]:
    """Serialize setup() across processes that share one address."""
    directory = os.path.dirname(path)
    fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _forget_in_child() -> None:
    """A forked child is no master: it serves nothing, owns no directory, and
    dies of SIGTERM at once, as it would have without setup() (a Python
    handler runs only between bytecodes: a child blocked in a lock that its
    parent holds, as multiprocessing's pool workers are when the pool is
    terminated, would never run it)."""
    global _lock, _server, _made_dir
    _lock, _server, _made_dir = threading.Lock(), None, None
    _saved_env.clear()
    _at_exit.clear()
    _swapped.clear()
    with contextlib.suppress(ValueError):  # forked from another thread than the main one
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


_swapped: list[bool] = []  # SIGTERM's default is in place for the fork under way


def _before_fork() -> None:
    """Fork with SIGTERM's default in place, so that the child never has the
    handler, not even between the fork and ``_forget_in_child``."""
    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _swapped.append(True)


def _after_fork_in_parent() -> None:
    if _swapped:
        _swapped.clear()
        signal.signal(signal.SIGTERM, _on_sigterm)


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_forget_in_child
)


def _short_tmp() -> str:
    """A temporary directory whose socket paths fit in sun_path (108 bytes)."""
    base = tempfile.gettempdir()
    return base if len(base) < 60 else "/tmp"


def _target(store: type[ClusterStore] | type[AsyncClusterStore]) -> Target:
    """The suite's target for ``store`` (either client) on a server this process starts."""
    return Target(
        store,
        name=store.__name__,
        shared=True,
        serve=serving,
        namespaced=lambda namespace: store(namespace=namespace),
        # Expiries travel as milliseconds and are checked against the same system
        # clock every process reads; what remains is the time a request waits for
        # the server thread, well under 0.25 s even on a loaded machine.
        ttl_resolution=0.25,
        outage=outage,
    )


cluster_target = _target(ClusterStore)
cluster_async_target = _target(AsyncClusterStore)

"""What the launchers share: a free port, and a server program on a loopback port.

A :class:`ProgramServer` runs its program's command line, waits (polling with
a deadline) until the program answers its ping, and takes it down with
SIGTERM (SIGKILL after 10 s); :class:`Restartable` makes any server a context
manager with ``down()`` for outage hooks.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from types import TracebackType
from typing import TypeVar

__all__ = ["ProgramServer", "Restartable", "free_port"]

START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_Server = TypeVar("_Server", bound="Restartable")


class Restartable:
    """Servers that ``start()`` brings up (returning self), ``stop()`` takes down
    keeping their ports, and ``close()`` ends for good; a context manager, with
    ``down()`` for outage hooks."""

    def start(self: _Server) -> _Server:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Stop for the block, then start again on the same ports."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def __enter__(self: _Server) -> _Server:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class ProgramServer(Restartable):
    """A server program listening on ``127.0.0.1:port``.

    A subclass names the program (``name``), says what to send to check that it
    answers and what the answer starts with (``probe``, ``reply``), and builds
    its command line (:meth:`command`); :meth:`last_words` may say more when it
    exits at start.
    """

    name = "server"
    probe = b""
    reply = b""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def last_words(self) -> str:
        """What the program said before it exited (its standard error, by default)."""
        stream = self.process.stderr if self.process is not None else None
        return stream.read().decode(errors="replace")[-2000:] if stream is not None else ""

    def start(self: _Program) -> _Program:
        if self.process is not None and self.process.poll() is None:
            return self
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, words = self.process.returncode, self.last_words()
                raise RuntimeError(f"{self.name} on port {self.port} exited with {code}: {words}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"{self.name} on port {self.port} did not answer {self.probe!r} within {START_TIMEOUT}s"
        )

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(self.probe)
                return conn.recv(64).startswith(self.reply)
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def close(self) -> None:
        self.stop()


_Program = TypeVar("_Program", bound=ProgramServer)

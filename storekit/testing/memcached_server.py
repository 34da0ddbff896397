"""Start a real memcached on a free loopback port, for tests and the ecosystem's memcached targets.

    with MemcachedServer() as server:
        client = pymemcache.Client(server.address)

It keeps nothing on disk, listens on 127.0.0.1 only, and is stopped when the
block ends; ``stop()`` and ``start()`` take it down and bring it back on the
same port. Needs the ``memcached`` program (Debian/Ubuntu: ``apt-get install
memcached``).
"""

from __future__ import annotations

import os
import shutil

from storekit.testing.process import ProgramServer

__all__ = ["MemcachedMissing", "MemcachedServer", "memcached_path"]

MEMORY_MB = 64


class MemcachedMissing(RuntimeError):
    """No memcached program on this machine."""


def memcached_path() -> str:
    path = shutil.which("memcached") or next(
        (p for p in ("/usr/bin/memcached", "/usr/local/bin/memcached") if shutil.which(p)), None
    )
    if path is None:
        raise MemcachedMissing(
            "memcached is not installed; install it (Debian/Ubuntu: apt-get install memcached, "
            "macOS: brew install memcached) to run the memcached tests"
        )
    return path


class MemcachedServer(ProgramServer):
    """One memcached process with ``MEMORY_MB`` of memory, on ``port`` (a free one by default)."""

    name = "memcached"
    probe = b"version\r\n"
    reply = b"VERSION"

    def __init__(self, port: int | None = None) -> None:
        self.binary = memcached_path()
        super().__init__(port)

    @property
    def address(self) -> str:
        """``host:port``, as memcached clients take it."""
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        command = [self.binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", str(MEMORY_MB)]
        if os.geteuid() == 0:  # memcached refuses to run as root unless told which user to be
            command += ["-u", "root"]
        return command

"""Start a real redis-server on a free loopback port, for tests, targets and benchmarks.

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)

The server keeps nothing on disk (no RDB, no AOF), listens on 127.0.0.1 only,
and is stopped, and its directory removed, when the block ends. ``stop()`` and
``start()`` take it down and bring it back on the same port, which is what an
outage looks like to a client. Needs the ``redis-server`` program (Debian:
``apt-get install redis-server``).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

__all__ = [
    "RedisClusterServers",
    "RedisServer",
    "RedisServerMissing",
    "Restartable",
    "free_port",
    "redis_server_path",
]

START_TIMEOUT = 20.0


class RedisServerMissing(RuntimeError):
    """No redis-server program on this machine."""


def redis_server_path() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RedisServerMissing(
            "redis-server is not installed; install it (Debian/Ubuntu: apt-get install redis-server, "
            "macOS: brew install redis) to run the Redis tests"
        )
    return path


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


class RedisServer(Restartable):
    """One redis-server process; ``extra`` are more config lines (e.g. "cluster-enabled yes")."""

    def __init__(self, port: int | None = None, *, extra: list[str] | None = None) -> None:
        self.binary = redis_server_path()
        self.port = port or free_port()
        self.extra = list(extra or [])
        self.directory = Path(tempfile.mkdtemp(prefix=f"storekit-redis-{self.port}-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if self.process is not None and self.process.poll() is None:
            return self
        config = self.directory / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    f"dir {self.directory}",
                    'save ""',
                    "appendonly no",
                    "protected-mode yes",
                    "daemonize no",
                    "loglevel warning",
                    f"logfile {self.directory / 'redis.log'}",
                    *self.extra,
                ]
            )
            + "\n"
        )
        self.process = subprocess.Popen(
            [self.binary, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                log = (
                    (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    if (self.directory / "redis.log").exists()
                    else ""
                )
                raise RuntimeError(
                    f"redis-server on port {self.port} exited with {self.process.returncode}: {log}"
                )
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {START_TIMEOUT}s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
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
        shutil.rmtree(self.directory, ignore_errors=True)


SLOTS = 16384
READY_TIMEOUT = 30.0


class RedisClusterServers(Restartable):
    """``size`` redis-server primaries with cluster mode on, no replicas, the
    hash slots split evenly between them, as ``redis-cli --cluster create
    ... --cluster-replicas 0`` would make them."""

    def __init__(self, size: int = 3) -> None:
        extra = ["cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 5000"]
        # The bus gets a free port of its own: the default, port + 10000, may be taken
        # or above 65535 for a port from the ephemeral range.
        self.bus_ports = [free_port() for _ in range(size)]
        self.nodes = [RedisServer(extra=[*extra, f"cluster-port {bus}"]) for bus in self.bus_ports]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def _admin(self, node: RedisServer) -> Any:
        import redis

        return redis.Redis(port=node.port, socket_timeout=5, decode_responses=True)

    def start(self) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        first = self._admin(self.nodes[0])
        with first:
            formed = first.execute_command("CLUSTER", "INFO").count("cluster_slots_assigned:0") == 0
        if not formed:
            self._form()
        self.wait_ready()
        return self

    def _form(self) -> None:
        size = len(self.nodes)
        for index, node in enumerate(self.nodes):
            low, high = SLOTS * index // size, SLOTS * (index + 1) // size - 1
            with self._admin(node) as admin:
                admin.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
                admin.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
        with self._admin(self.nodes[0]) as first:
            for node, bus in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until every node sees all nodes, all slots, and state ok."""
        deadline = time.monotonic() + timeout
        info = ""
        while time.monotonic() < deadline:
            infos = []
            for node in self.nodes:
                with contextlib.suppress(Exception), self._admin(node) as admin:
                    infos.append(admin.execute_command("CLUSTER", "INFO"))
            want = (
                "cluster_state:ok",
                f"cluster_slots_ok:{SLOTS}",
                f"cluster_known_nodes:{len(self.nodes)}",
            )
            if len(infos) == len(self.nodes) and all(all(w in i for w in want) for i in infos):
                return
            info = " | ".join(" ".join(i.split()) for i in infos)
            time.sleep(0.05)
        raise RuntimeError(
            f"the Redis Cluster on ports {self.ports} was not ready within {timeout}s: {info[:600]}"
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        for node in self.nodes:
            node.close()

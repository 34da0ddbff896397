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
import tempfile
import time
from pathlib import Path
from typing import Any

from storekit.testing.process import ProgramServer, Restartable, free_port

__all__ = [
    "RedisClusterServers",
    "RedisServer",
    "RedisServerMissing",
    "redis_server_path",
]


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


class RedisServer(ProgramServer):
    """One redis-server process; ``extra`` are more config lines (e.g. "cluster-enabled yes")."""

    name = "redis-server"
    probe = b"PING\r\n"
    reply = b"+PONG"

    def __init__(self, port: int | None = None, *, extra: list[str] | None = None) -> None:
        self.binary = redis_server_path()
        super().__init__(port)
        self.extra = list(extra or [])
        self.directory = Path(tempfile.mkdtemp(prefix=f"storekit-redis-{self.port}-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        config = self.directory / "redis.conf"
        lines = [
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
        config.write_text("\n".join(lines) + "\n")
        return [self.binary, str(config)]

    def last_words(self) -> str:
        log = self.directory / "redis.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

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

"""Real Redis for the RedisStore targets: one redis-server, or a Redis Cluster of
three primaries, on free loopback ports.

``serve_redis()`` starts a server and puts its URL in ``$STOREKIT_REDIS_URL``,
which worker processes spawned later inherit, so that the target's factory
finds it there; when the variable is already set, that server is used and
none is started. ``serve_cluster()`` does the same for a cluster, with
``$STOREKIT_REDIS_CLUSTER_URL``. The outage hooks stop what serve started and
start it again on the same ports.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from storekit.errors import StoreError
from storekit.reference.redis_server import RedisServer, Restartable, free_port

__all__ = [
    "ENV_CLUSTER_URL",
    "ENV_URL",
    "RedisClusterServers",
    "cluster_outage",
    "redis_outage",
    "serve_cluster",
    "serve_redis",
]

ENV_URL = "STOREKIT_REDIS_URL"
ENV_CLUSTER_URL = "STOREKIT_REDIS_CLUSTER_URL"
SLOTS = 16384
READY_TIMEOUT = 30.0

_started: dict[str, Any] = {}  # environment variable -> the server(s) serve() started


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


@contextlib.contextmanager
def _serve(variable: str, servers: Any) -> Iterator[str]:
    if os.environ.get(variable):  # the user's own Redis: start none
        yield os.environ[variable]
        return
    with servers() as started:
        _started[variable] = started
        os.environ[variable] = started.url
        try:
            yield started.url
        finally:
            os.environ.pop(variable, None)
            _started.pop(variable, None)


def serve_redis() -> contextlib.AbstractContextManager[str]:
    """Start a redis-server for the run unless ``$STOREKIT_REDIS_URL`` names one."""
    return _serve(ENV_URL, RedisServer)


def serve_cluster() -> contextlib.AbstractContextManager[str]:
    """Start a 3-primary Redis Cluster unless ``$STOREKIT_REDIS_CLUSTER_URL`` names one."""
    return _serve(ENV_CLUSTER_URL, RedisClusterServers)


@contextlib.contextmanager
def _outage(variable: str) -> Iterator[None]:
    servers = _started.get(variable)
    if servers is None:
        raise StoreError(
            f"the outage hook stops the Redis that serve() started, and there is none in this "
            f"process (${variable} names a server of yours); unset ${variable} to let the "
            "target start its own"
        )
    with servers.down():
        yield


def redis_outage() -> contextlib.AbstractContextManager[None]:
    """Stop the redis-server that serve_redis() started, then start it on the same port."""
    return _outage(ENV_URL)


def cluster_outage() -> contextlib.AbstractContextManager[None]:
    """Stop every node of the cluster that serve_cluster() started, then start them again."""
    return _outage(ENV_CLUSTER_URL)

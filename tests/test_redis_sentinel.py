"""RedisStore on a Sentinel-managed client: a master, a replica and one sentinel (redis-server
--sentinel, from Debian's redis-server package) on loopback ports; the master dies and the
replica takes over."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.sentinel import Sentinel
from redis_support import need_redis_server

from storekit import StoreUnavailable
from storekit.reference.redis import RedisStore
from storekit.testing.redis_server import RedisServer, free_port, redis_server_path

SERVICE = "mymaster"


def wait_for(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)


def quietly(call: Any) -> Any:
    """What ``call()`` returns, or None when Redis or the store raise."""
    try:
        return call()
    except (redis.RedisError, StoreUnavailable):
        return None


def succeeds(call: Any) -> bool:
    try:
        call()
    except StoreUnavailable:
        return False
    return True


class SentinelProcess:
    def __init__(self, directory: Path, master_port: int) -> None:
        self.port = free_port()
        config = directory / "sentinel.conf"  # sentinel rewrites it: it must be writable
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    f"dir {directory}",
                    f"logfile {directory / 'sentinel.log'}",
                    f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 1",
                    f"sentinel down-after-milliseconds {SERVICE} 1000",
                    f"sentinel failover-timeout {SERVICE} 10000",
                ]
            )
            + "\n"
        )
        self.process = subprocess.Popen(
            [redis_server_path(), str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        wait_for(lambda: quietly(client.ping), "the sentinel answering PING")
        client.close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, SentinelProcess]]:
    need_redis_server()
    master = RedisServer(extra=["repl-diskless-sync-delay 0"])
    with master, RedisServer(extra=[f"replicaof 127.0.0.1 {master.port}"]) as replica:
        link = redis.Redis(port=replica.port)
        wait_for(lambda: link.info("replication")["master_link_status"] == "up", "replication")
        link.close()
        sentinel = SentinelProcess(tmp_path, master.port)
        try:
            yield master, replica, sentinel
        finally:
            sentinel.stop()


def test_a_sentinel_managed_client_serves_the_store_through_a_failover(
    topology: tuple[RedisServer, RedisServer, SentinelProcess],
) -> None:
    master, replica, sentinel_process = topology
    sentinel = Sentinel([("127.0.0.1", sentinel_process.port)], socket_timeout=1)
    client = sentinel.master_for(SERVICE, socket_timeout=1, socket_connect_timeout=1)
    store = RedisStore(client)
    assert "sentinel service 'mymaster'" in repr(store)
    store.set("before", {"n": 1})
    assert store.get("before") == {"n": 1}
    assert store.all() == {"before": {"n": 1}}

    watcher = redis.Redis(port=sentinel_process.port, decode_responses=True)
    wait_for(lambda: quietly(lambda: watcher.sentinel_slaves(SERVICE)), "the sentinel finding the replica")
    master.stop()  # the master dies; the sentinel promotes the replica
    with pytest.raises(StoreUnavailable):
        store.get("before")
    wait_for(
        lambda: quietly(lambda: sentinel.discover_master(SERVICE)) == ("127.0.0.1", replica.port),
        "the replica becoming master",
    )
    # redis-py's sentinel pool asks the sentinel again after a failed connection; the
    # store raises StoreUnavailable until then, never a wrong answer.
    wait_for(lambda: succeeds(lambda: store.set("after", {"n": 2})), "a write on the new master")
    assert store.get("after") == {"n": 2}
    assert store.get("before") == {"n": 1}  # replicated before the master died
    new = redis.Redis(port=replica.port)
    assert new.get("sess:after") == b'{"n":2}'
    for each in (watcher, new):
        each.close()
    client.close()

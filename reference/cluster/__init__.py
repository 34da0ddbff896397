"""ClusterStore: sessions shared by a master process and the workers it starts.

``setup()`` in the master (a plain parent, a gunicorn arbiter) before any
worker starts; ``ClusterStore()`` (or ``AsyncClusterStore()``) in each worker.
The parts: ``wire`` (the frame layout, pure), ``handshake`` (its steps,
pure, for the server and both clients), ``state`` (the sessions the master
keeps), ``server`` (the master's socket server) and ``connection`` (one
authenticated connection's requests, on a thread), ``client`` and ``aio`` (the
two clients over ``common``), ``master`` (setup and shutdown).
See docs/cluster.md.
"""

from storekit.reference.cluster.aio import AsyncClusterStore
from storekit.reference.cluster.client import ClusterStore
from storekit.reference.cluster.common import ENV_KEY, ENV_SOCKET, Address
from storekit.reference.cluster.master import (
    cluster_async_target,
    cluster_target,
    outage,
    serving,
    setup,
    shutdown,
)

__all__ = [
    "ENV_KEY",
    "ENV_SOCKET",
    "Address",
    "AsyncClusterStore",
    "ClusterStore",
    "cluster_async_target",
    "cluster_target",
    "outage",
    "serving",
    "setup",
    "shutdown",
]

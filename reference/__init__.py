"""Reference stores that pass the storekit conformance suite.

``MemoryStore`` keeps sessions in one process; ``ClusterStore`` shares them
among the worker processes of one machine through their master
(``storekit.reference.cluster.setup()``). ``cluster_target`` is the suite's
target for ClusterStore: ``pytest --storekit=storekit.reference:cluster_target``.
``StickyServer`` serves a WSGI app on worker processes, each client address on
one worker.
"""

from storekit.reference.cluster import AsyncClusterStore, ClusterStore, cluster_target
from storekit.reference.memory import AsyncMemoryStore, MemoryStore
from storekit.reference.sticky import StickyServer, StickyServerError

__all__ = [
    "AsyncClusterStore",
    "AsyncMemoryStore",
    "ClusterStore",
    "MemoryStore",
    "StickyServer",
    "StickyServerError",
    "cluster_target",
]

"""The sticky server: each client address on one worker process.

The parts: ``routing`` (hashing and header routing, pure), ``bpf`` (the
kernel's steering program), ``sockets`` (listeners), ``handoff`` (the
master's accept loop when the kernel does not steer), ``worker`` (a WSGI
server in each worker), ``master`` (forking and replacing workers),
``server`` (``StickyServer`` and ``storekit serve``). See docs/sticky.md.
"""

from storekit.reference.sticky.server import (
    SLOT_ENV,
    StickyServer,
    StickyServerError,
    main,
    require_waitress,
    resolve_mode,
    whoami,
)

__all__ = [
    "SLOT_ENV",
    "StickyServer",
    "StickyServerError",
    "main",
    "require_waitress",
    "resolve_mode",
    "whoami",
]

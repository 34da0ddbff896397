"""Probe apps for the HTTP session suite: the protocol of docs/http.md in each shell.

``storekit.probe.wsgi``, ``.asgi``, ``.flask`` and ``.django`` are storekit's
shells, ``.starlette`` and ``express_probe.js`` the comparisons; each
``make_app`` is imported only when asked for, so this package loads no
framework. ``python -m storekit.probe KIND`` serves one (:mod:`storekit.probe.serve`).
"""

from storekit.probe.outage import AsyncOutageStore, Outage, OutageStore
from storekit.probe.protocol import PREFIX, PROTOCOL, Features

__all__ = ["PREFIX", "PROTOCOL", "AsyncOutageStore", "Features", "Outage", "OutageStore"]

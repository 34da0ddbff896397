"""The Python ecosystem's session backends, adapted to the storekit contract.

Each module adapts one third-party library and exposes one :class:`storekit.Target`
per backend, so that ``storekit check storekit.ecosystem.cachelib:simple_cache_target``
runs the conformance suite on it. ``scripts/compatibility.py`` runs them all and
writes ``docs/compatibility.md``.

The adapters translate; they do not repair. Every adapter does the same few things
and nothing more:

* **sid.1, the type boundary.** A sid that is not a non-empty ``str`` raises
  :class:`~storekit.InvalidSessionId` before the backend is called: the backends'
  APIs take ``key: str`` and say nothing about other values. Every other sid goes
  to the backend as it is, under the prefix or key the library's own session
  integration would use.
* **Expiry.** ``cookie.expires`` is parsed (a malformed one raises
  InvalidSessionData: nothing can be translated from it) and handed to the backend
  in the backend's own terms: a cachelib timeout in whole seconds, a Django
  ``set_expiry`` datetime. What the backend then does with it, rounding, ``0``
  meaning "forever", is what the suite sees.
* **Data.** The session dict goes to the backend's own serialization (pickle for
  cachelib and Beaker, Django's JSON serializer), and what comes back is returned
  as it is, minus the bookkeeping keys the library adds itself.
* **Errors.** Where the backend signals an invalid key or refused data with its
  own exception, the adapter re-raises it as the storekit error of the same
  meaning; anything else propagates unchanged.

The third-party libraries are imported by these modules only: ``import storekit``
never needs them.
"""

from __future__ import annotations

__all__ = ["TARGETS"]

TARGETS: dict[str, str] = {
    "cachelib SimpleCache": "storekit.ecosystem.cachelib:simple_cache_target",
    "cachelib FileSystemCache": "storekit.ecosystem.cachelib:filesystem_cache_target",
    "cachelib RedisCache": "storekit.ecosystem.cachelib:redis_cache_target",
    "Django db (SQLite)": "storekit.ecosystem.django_engines:db_target",
    "Django cache (Redis)": "storekit.ecosystem.django_engines:cache_target",
    "Django cached_db": "storekit.ecosystem.django_engines:cached_db_target",
    "Django file": "storekit.ecosystem.django_engines:file_target",
    "Django file (hex keys)": "storekit.ecosystem.django_engines:file_hex_target",
    "Beaker memory": "storekit.ecosystem.beaker:memory_target",
    "Beaker file": "storekit.ecosystem.beaker:file_target",
}
"""Every ecosystem target, by the name the compatibility matrix shows, as ``module:attr``."""

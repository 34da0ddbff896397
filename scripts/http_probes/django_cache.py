"""The probe routes on Django 5.2's cache session engine
(``django.contrib.sessions.backends.cache``) on a LocMemCache.

    python scripts/http_probes/django_cache.py --port 0

The cache is ``_django.OutageLocMemCache``: Django's LocMemCache, whose calls fail with a
ConnectionError while ``/outage`` is on, as a cache client's do when its server is down.
"""

from __future__ import annotations

import _common
import _django

if __name__ == "__main__":
    args = _common.arguments(__doc__ or "")
    _django.configure(
        "django.contrib.sessions.backends.cache",
        CACHES={
            "default": {
                "BACKEND": "_django.OutageLocMemCache",
                "LOCATION": "storekit-probe",
                "OPTIONS": {"MAX_ENTRIES": 100_000},
            }
        },
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
    )
    import django

    django.setup()
    _django.serve(args.port)

"""The probe routes on Django 5.2's database session engine
(``django.contrib.sessions.backends.db``), on SQLite in a temporary directory, migrated at
start.

    python scripts/http_probes/django_db.py --port 0

``/outage`` makes every SQL statement fail with Django's OperationalError (an
``execute_wrapper`` around each request), as with a database that cannot be reached.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import _common
import _django

if __name__ == "__main__":
    args = _common.arguments(__doc__ or "")
    with tempfile.TemporaryDirectory(prefix="storekit-probe-django-") as directory:
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(Path(directory) / "db.sqlite3")}
        _django.configure(
            "django.contrib.sessions.backends.db",
            DATABASES={"default": database},
            MIDDLEWARE=["_django.database_outage", "django.contrib.sessions.middleware.SessionMiddleware"],
        )
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", "sessions", verbosity=0)
        _django.serve(args.port)

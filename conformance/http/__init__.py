"""The HTTP session suite: the middleware's clauses (``http.*``), checked over real HTTP
against a running app that exposes the probe routes of ``docs/http.md``.

``pytest --storekit-http=URL`` runs it; :mod:`storekit.http_suite` installs it.
"""

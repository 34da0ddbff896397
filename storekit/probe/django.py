"""The probe as a Django project in one module, on the ``storekit.django`` session engine.

:func:`make_app` configures Django's settings in code (they are global: one
probe per process) and returns the WSGI application. Django's session API is
kept: ``/login`` is ``clear()`` then ``cycle_key()`` (Django's regenerate,
which storekit's Django docs recommend at login; the ``clear()`` first drops
the data, as the protocol asks), ``/logout`` is ``flush()``. The engine
offers no groups, so ``/end-group`` answers 404. ``SESSION_COOKIE_AGE`` is
``lifetime``; the other settings are Django's defaults (cookie
``sessionid``, ``SameSite=Lax``) unless ``**settings`` names them.
"""

from __future__ import annotations

import re
import time
from typing import Any

import django
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import re_path

from storekit.codec import DEFAULT_MAX_SESSION_BYTES
from storekit.contract import Store
from storekit.probe.outage import OutageStore
from storekit.probe.protocol import PREFIX, Call, Features, ProbeError, Reply, answer_free, not_offered, parse

__all__ = ["make_app", "probe_store", "urlpatterns"]

urlpatterns: list[Any] = []
"""The project's URLs (``ROOT_URLCONF`` is this module), set by :func:`make_app`."""

_stores: list[Store] = []


def probe_store() -> Store:
    """The store :func:`make_app` was given (``STOREKIT_SESSION_STORE`` names this function)."""
    if not _stores:
        raise RuntimeError("storekit.probe.django.make_app() has not been called in this process")
    return _stores[0]


def _respond(call: Call, session: Any) -> Reply:
    if call.route == "read":
        data = dict(session.items())
        time.sleep(call.delay)
        return 200, {"data": data}
    if call.route == "write":
        session.get("user")
        time.sleep(call.delay)
        session[call.key] = call.value
        return 200, {"data": dict(session.items())}
    if call.route == "login":
        time.sleep(call.delay)
        session.clear()
        session.cycle_key()
        session["user"] = call.user
        return 200, {"data": dict(session.items())}
    if call.route == "logout":
        session.flush()
        return 200, {"data": {}}
    if call.route == "end-group":
        raise not_offered("end-group", "storekit's Django engine has no session groups")
    raise AssertionError(f"not a session route: {call.route!r}")


def make_app(
    store: Store,
    *,
    secret: str,
    lifetime: float = 3.0,
    prefix: str = PREFIX,
    max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES,
    **more: Any,
) -> WSGIHandler:
    """The probe's routes under ``prefix``, in sessions of ``store``; ``**more`` are more settings."""
    if settings.configured:
        raise RuntimeError("Django's settings are already configured in this process: one probe per process")
    _stores[:] = [store]
    settings.configure(
        DEBUG=False,
        SECRET_KEY=secret,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        SESSION_ENGINE="storekit.django",
        STOREKIT_SESSION_STORE=f"{__name__}:probe_store",
        SESSION_COOKIE_AGE=lifetime,
        USE_TZ=True,
        **more,
    )
    django.setup()
    switch = store.outage if isinstance(store, OutageStore) else None
    features = Features(
        cookie=settings.SESSION_COOKIE_NAME,
        lifetime=settings.SESSION_COOKIE_AGE,
        same_site=settings.SESSION_COOKIE_SAMESITE or None,
        groups=False,
        outage=switch is not None,
        max_session_bytes=max_session_bytes,
        secure=bool(settings.SESSION_COOKIE_SECURE),
    )

    def probe(request: HttpRequest) -> JsonResponse:
        try:
            query = request.META.get("QUERY_STRING", "")
            call = parse(request.method or "GET", request.path, query, prefix=prefix)
            reply = answer_free(call, features, switch) or _respond(call, request.session)
        except ProbeError as exc:
            reply = exc.reply()
        status, body = reply
        return JsonResponse(body, status=status)

    urlpatterns[:] = [re_path("^" + re.escape(prefix.lstrip("/")) + "/", probe)]
    return get_wsgi_application()

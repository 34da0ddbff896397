"""The probe routes on Django's own SessionMiddleware, for any session engine; settings in
code. ``django_db.py`` and ``django_cache.py`` choose the engine and its outage.

Login mirrors the branch of ``django.contrib.auth.login`` that drops the old data:
``request.session.flush()`` (delete the record, forget the key), then the user, which
Django saves under a new key. (``cycle_key()``, the other branch, keeps the data from before
the login, which the probe protocol's login must not.) Logout is ``flush()`` as in
``django.contrib.auth.logout``. SESSION_COOKIE_AGE is 3 s; everything else is Django's
defaults (Lax, HttpOnly, no save on every request).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import _common
from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.urls import path

COOKIE = "sessionid"
OUTAGE = _common.Outage()
"""The ``/outage`` switch: each engine's module decides what it breaks."""


class OutageLocMemCache(LocMemCache):
    """Django's LocMemCache, whose every call the session engine makes fails while the
    outage is on, as a cache server's client does when the server is down."""

    def _check(self) -> None:
        if OUTAGE.on.is_set():
            raise ConnectionError("the cache is unavailable (probe outage)")

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().get(*args, **kwargs)

    def set(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().set(*args, **kwargs)

    def add(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().add(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().delete(*args, **kwargs)

    def has_key(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().has_key(*args, **kwargs)


def database_outage(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[..., HttpResponse]:
    """Middleware (outermost, so that the session's save is inside it): while the outage is on,
    every SQL statement of the request fails with the OperationalError of a database that
    cannot be reached."""
    from django.db import OperationalError, connection

    def refuse(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if OUTAGE.on.is_set():
            raise OperationalError("unable to open database file (probe outage)")
        return execute(sql, params, many, context)

    def middleware(request: HttpRequest) -> HttpResponse:
        with connection.execute_wrapper(refuse):
            return get_response(request)

    return middleware


def configure(engine: str, **more: Any) -> None:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_hex(32),
        ALLOWED_HOSTS=[_common.HOST, "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.sessions"],
        SESSION_ENGINE=engine,
        SESSION_COOKIE_AGE=_common.LIFETIME,
        SESSION_COOKIE_NAME=COOKIE,
        USE_TZ=True,
        **more,
    )


def _method(name: str, view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def only(request: HttpRequest) -> HttpResponse:
        if request.method != name:
            return HttpResponseNotAllowed([name])
        return view(request)

    return only


def features(request: HttpRequest) -> HttpResponse:
    return JsonResponse(_common.features(COOKIE, max_session_bytes=_common.NO_LIMIT, outage=True))


def read(request: HttpRequest) -> HttpResponse:
    loaded = dict(request.session.items())
    _common.wait(request.GET)
    return JsonResponse({"data": loaded})


def write(request: HttpRequest) -> HttpResponse:
    dict(request.session.items())  # load it before the wait, as a slow request does
    _common.wait(request.GET)
    request.session[request.GET["key"]] = _common.value(request.GET)
    return JsonResponse({"data": dict(request.session.items())})


def login(request: HttpRequest) -> HttpResponse:
    _common.wait(request.GET)
    request.session.flush()
    request.session["user"] = request.GET["user"]
    return JsonResponse({"data": dict(request.session.items())})


def logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return JsonResponse({"data": {}})


def untouched(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


def outage(request: HttpRequest) -> HttpResponse:
    OUTAGE.set(request.GET)
    return JsonResponse({"ok": True})


urlpatterns = [
    path("probe/features", _method("GET", features)),
    path("probe/read", _method("GET", read)),
    path("probe/write", _method("POST", write)),
    path("probe/login", _method("POST", login)),
    path("probe/logout", _method("POST", logout)),
    path("probe/untouched", _method("GET", untouched)),
    path("probe/outage", _method("POST", outage)),
]


def serve(port: int) -> None:
    from django.core.wsgi import get_wsgi_application

    _common.serve_wsgi(get_wsgi_application(), port)

"""The probe routes on Flask-Session 0.8 with SESSION_TYPE "redis" (a redis-py client).

    python scripts/http_probes/flask_session_redis.py --port 0 --redis-url redis://127.0.0.1:6379/0

Login calls Flask-Session's own ``app.session_interface.regenerate(session)`` (which deletes
the old record and picks a new sid), then clears the session and sets the user; logout clears
it, which Flask-Session turns into a delete and an expired cookie. Everything else is
Flask-Session's defaults: permanent sessions, of PERMANENT_SESSION_LIFETIME (3 s) here,
refreshed on every request (Flask's SESSION_REFRESH_EACH_REQUEST). ``/outage`` points the
client at a closed port.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import _common
import _redis
from _common import PREFIX
from flask import Blueprint, Flask, request, session
from flask_session import Session

COOKIE = "session"


def make_app(redis_url: str) -> Flask:
    outage = _common.Outage()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secrets.token_hex(32),
        SESSION_TYPE="redis",
        SESSION_REDIS=_redis.client(redis_url, outage),
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=_common.LIFETIME),
        SESSION_COOKIE_NAME=COOKIE,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    Session(app)
    probe = Blueprint("probe", __name__, url_prefix=PREFIX)

    @probe.get("/features")
    def features() -> dict[str, Any]:
        return _common.features(COOKIE, max_session_bytes=_common.NO_LIMIT, outage=True)

    @probe.get("/read")
    def read() -> dict[str, Any]:
        loaded = _common.data(session)
        _common.wait(request.args)
        return {"data": loaded}

    @probe.post("/write")
    def write() -> dict[str, Any]:
        _common.data(session)
        _common.wait(request.args)
        session[request.args["key"]] = _common.value(request.args)
        return {"data": _common.data(session)}

    @probe.post("/login")
    def login() -> dict[str, Any]:
        _common.wait(request.args)
        app.session_interface.regenerate(session)  # type: ignore[attr-defined]
        session.clear()
        session["user"] = request.args["user"]
        return {"data": _common.data(session)}

    @probe.post("/logout")
    def logout() -> dict[str, Any]:
        session.clear()
        return {"data": {}}

    @probe.get("/untouched")
    def untouched() -> dict[str, Any]:
        return {"ok": True}

    @probe.post("/outage")
    def switch() -> dict[str, Any]:
        outage.set(request.args)
        return {"ok": True}

    app.register_blueprint(probe)
    return app


if __name__ == "__main__":
    args = _common.arguments(__doc__ or "")
    _common.serve_wsgi(make_app(_common.needs_redis(args)), args.port)

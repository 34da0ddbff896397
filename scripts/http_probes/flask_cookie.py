"""The probe routes on Flask's built-in session: the whole session in a signed cookie.

    python scripts/http_probes/flask_cookie.py --port 0

Flask has no regenerate: login clears the session and sets the user, logout clears it.
Sessions are permanent with PERMANENT_SESSION_LIFETIME of 3 s, which is both the cookie's
Expires and the signature's max age when the cookie comes back.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import _common
from _common import PREFIX
from flask import Blueprint, Flask, request, session

COOKIE = "session"


def make_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secrets.token_hex(32),
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=_common.LIFETIME),
        SESSION_COOKIE_NAME=COOKIE,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    probe = Blueprint("probe", __name__, url_prefix=PREFIX)

    @probe.get("/features")
    def features() -> dict[str, Any]:
        return _common.features(COOKIE, max_session_bytes=_common.COOKIE_LIMIT, outage=False)

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
        session.permanent = True
        return {"data": _common.data(session)}

    @probe.post("/login")
    def login() -> dict[str, Any]:
        _common.wait(request.args)
        session.clear()
        session["user"] = request.args["user"]
        session.permanent = True
        return {"data": _common.data(session)}

    @probe.post("/logout")
    def logout() -> dict[str, Any]:
        session.clear()
        return {"data": {}}

    @probe.get("/untouched")
    def untouched() -> dict[str, Any]:
        return {"ok": True}

    app.register_blueprint(probe)
    return app


if __name__ == "__main__":
    args = _common.arguments(__doc__ or "")
    _common.serve_wsgi(make_app(), args.port)

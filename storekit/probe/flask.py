"""The probe as a Flask app on :class:`storekit.flask.StoreSessionInterface`.

Flask's configuration is left at Flask's defaults but for ``secret_key`` and
``PERMANENT_SESSION_LIFETIME`` (``lifetime``), so the probe answers as a Flask
app on storekit does out of the box: the cookie is ``session``, without
``SameSite``, and a browser-session cookie (sessions are not made permanent);
the store expires a session ``lifetime`` after its last use. ``**config`` is
more Flask configuration (``SESSION_COOKIE_SAMESITE="Lax"``), which
``/features`` then reports. ``/end-group`` is the session's ``end_group``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import flask

from storekit.codec import DEFAULT_MAX_SESSION_BYTES
from storekit.contract import Store
from storekit.flask import StoreSession, StoreSessionInterface
from storekit.probe.outage import OutageStore
from storekit.probe.protocol import PREFIX, Features, ProbeError, answer_free, parse
from storekit.probe.routes import respond

__all__ = ["make_app"]


def _session() -> StoreSession:
    session = flask.session
    if not isinstance(session, StoreSession):
        raise TypeError(f"the probe's session is {session!r}; it needs storekit.flask.StoreSessionInterface")
    return session


def make_app(
    store: Store,
    *,
    secret: str,
    lifetime: float = 3.0,
    prefix: str = PREFIX,
    max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES,
    **config: Any,
) -> flask.Flask:
    """The probe's routes under ``prefix``, in sessions of ``store``."""
    app = flask.Flask(__name__)
    app.secret_key = secret
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=lifetime)
    app.config.update(config)
    app.session_interface = StoreSessionInterface(store)
    switch = store.outage if isinstance(store, OutageStore) else None
    features = Features(
        cookie=app.config["SESSION_COOKIE_NAME"],
        lifetime=app.permanent_session_lifetime.total_seconds(),
        same_site=app.config["SESSION_COOKIE_SAMESITE"],
        groups=True,
        outage=switch is not None,
        max_session_bytes=max_session_bytes,
        secure=bool(app.config["SESSION_COOKIE_SECURE"]),
    )

    @app.route(prefix + "/<path:route>", methods=["GET", "POST"])
    def probe(route: str) -> flask.Response:
        request = flask.request
        try:
            call = parse(request.method, request.path, request.query_string.decode("latin-1"), prefix=prefix)
            reply = answer_free(call, features, switch) or respond(
                call, _session(), end_group=lambda name: _session().end_group(name)
            )
        except ProbeError as exc:
            reply = exc.reply()
        status, body = reply
        response = flask.jsonify(body)
        response.status_code = status
        return response

    return app

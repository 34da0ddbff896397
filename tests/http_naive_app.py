"""A small session middleware written for the HTTP suite's own tests: right as it stands,
and wrong in exactly one way with ``bug=NAME`` (``BUGS`` says which clause each one
breaks). It speaks the probe protocol of docs/http.md over plain WSGI, keeps sessions in
a dict behind a lock, and shares no code with storekit's middleware."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

COOKIE = "naive.sid"
LIFETIME = 2.0
LIMIT = 4096

BUGS = {  # the clauses each bug fails, the others passing or skipped as depending on them
    "adopts": "http.1 http.2",  # a new session takes the id the browser sent, at login too
    "fixates": "http.2",  # login keeps the session id (and data) it had
    "logout_forgets_cookie_only": "http.3",  # logout deletes the cookie, not the record
    "saves_blind": "http.4",  # a changed session is set at the end, whether or not it was destroyed
    "resaves": "http.5",  # an unchanged one is too
    "immortal": "http.6",  # records never expire
    "scripts_see_cookie": "http.7",  # no HttpOnly
    "no_vary": "http.8",
    "eager_cookie": "http.9",  # every visit that reads the session gets one
    "truncates": "http.10",  # an oversized session is stored cut down, with a 200
    "empty_on_outage": "http.11",  # a store outage gives an empty session, with a 200
    "group_forgets": "http.13",  # end-group forgets the group, not its sessions
}

Start = Callable[[str, list[tuple[str, str]]], Any]


class Unavailable(Exception):
    pass


class Records:
    """sid -> (data, expires), and group -> sids, behind one lock."""

    def __init__(self, bug: str | None) -> None:
        self.bug = bug
        self.lock = threading.Lock()
        self.data: dict[str, tuple[dict[str, Any], float]] = {}
        self.groups: dict[str, set[str]] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise Unavailable("the session store is down")

    def get(self, sid: str) -> dict[str, Any] | None:
        self._check()
        with self.lock:
            found = self.data.get(sid)
            if found is None or (found[1] <= time.time() and self.bug != "immortal"):
                self.data.pop(sid, None)
                return None
            return dict(found[0])

    def set(self, sid: str, data: dict[str, Any]) -> None:
        self._check()
        with self.lock:
            self.data[sid] = (dict(data), time.time() + LIFETIME)

    def replace(self, sid: str, data: dict[str, Any]) -> bool:
        self._check()
        with self.lock:
            found = self.data.get(sid)
            if found is None or found[1] <= time.time():
                return False
            self.data[sid] = (dict(data), time.time() + LIFETIME)
            return True

    def destroy(self, sid: str) -> None:
        self._check()
        with self.lock:
            self.data.pop(sid, None)

    def end_group(self, name: str) -> set[str]:
        """Destroy the group's sessions; the sids destroyed."""
        with self.lock:
            sids = self.groups.pop(name, set())
            if self.bug == "group_forgets":
                return set()
            for sid in sids:
                self.data.pop(sid, None)
            return sids


class Request:
    """One request's session: loaded at first use, saved by :meth:`finish`."""

    def __init__(self, records: Records, environ: dict[str, Any]) -> None:
        self.records = records
        self.sent = _cookie(environ.get("HTTP_COOKIE", ""))
        self.sid: str | None = None
        self.data: dict[str, Any] = {}
        self.loaded = self.changed = self.used = self.ended = False
        self.original = ""

    def load(self) -> dict[str, Any]:
        if not self.loaded:
            self.loaded = self.used = True
            self.original = "{}"
            found = self.records.get(self.sent) if self.sent else None
            if found is not None:
                self.sid, self.data = self.sent, found
            elif self.records.bug == "eager_cookie":
                self.changed = True
            self.original = json.dumps(self.data, sort_keys=True)
        return self.data

    def headers(self) -> list[tuple[str, str]]:
        out = []
        if self.used and self.records.bug != "no_vary":
            out.append(("Vary", "Cookie"))
        if self.ended:
            out.append(("Set-Cookie", f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"))
            return out
        self.changed = self.changed or json.dumps(self.data, sort_keys=True) != self.original
        if not self.loaded:
            return out
        if self.changed or self.sid is not None:
            new = self.sid is None
            if new:
                adopt = self.records.bug == "adopts" and self.sent
                self.sid = self.sent if adopt else secrets.token_hex(16)
            assert self.sid is not None
            if len(json.dumps(self.data)) > LIMIT:
                if self.records.bug != "truncates":
                    raise OverflowError(f"the session is over {LIMIT} bytes")
                self.data = {}
            if new or self.records.bug == ("saves_blind" if self.changed else "resaves"):
                self.records.set(self.sid, self.data)
            elif not self.records.replace(self.sid, self.data):
                return out  # destroyed meanwhile: nothing stored, no cookie
            flags = "" if self.records.bug == "scripts_see_cookie" else "; HttpOnly"
            out.append(
                ("Set-Cookie", f"{COOKIE}={self.sid}; Max-Age={LIFETIME:g}; Path=/{flags}; SameSite=Lax")
            )
        return out


def _cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def make_app(bug: str | None = None) -> Callable[[dict[str, Any], Start], Iterable[bytes]]:
    """The probe app, right, or broken by ``bug`` (a key of :data:`BUGS`)."""
    if bug is not None and bug not in BUGS:
        raise ValueError(f"unknown bug {bug!r}; bugs: {', '.join(BUGS)}")
    records = Records(bug)

    def app(environ: dict[str, Any], start_response: Start) -> Iterable[bytes]:
        route = environ["PATH_INFO"].removeprefix("/probe")
        query = {key: values[0] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
        request = Request(records, environ)

        def answer(body: object, status: str = "200 OK") -> list[bytes]:
            try:
                extra = request.headers()
            except OverflowError as exc:
                return plain("413 Payload Too Large", str(exc))
            except Unavailable as exc:
                return plain("503 Service Unavailable", str(exc))
            start_response(status, [("Content-Type", "application/json"), *extra])
            return [json.dumps(body).encode()]

        def plain(status: str, text: str) -> list[bytes]:
            start_response(status, [("Content-Type", "text/plain")])
            return [text.encode()]

        if route == "/features":
            features = {"protocol": 1, "cookie": COOKIE, "lifetime": LIFETIME, "secure": False}
            features |= {"samesite": "Lax", "groups": True, "outage": True, "max_session_bytes": LIMIT}
            return answer(features)
        if route == "/untouched":
            return answer({"ok": True})
        if route == "/outage":
            records.down = query.get("on") == "1"
            return answer({"ok": True})
        try:
            session = request.load()
        except Unavailable:
            if bug != "empty_on_outage":
                return plain("503 Service Unavailable", "the session store is down")
            session = request.data
        session.get("user")
        time.sleep(float(query.get("delay", 0)))
        join = None
        try:
            if route == "/write":
                session[query["key"]] = "x" * int(query["size"]) if "size" in query else query["value"]
            elif route == "/login":
                if bug != "fixates":
                    if request.sid is not None:
                        records.destroy(request.sid)
                    request.sid, request.data = None, {}
                    session = request.data
                session["user"] = join = query["user"]
                request.changed = True
            elif route == "/logout":
                if request.sid is not None and bug != "logout_forgets_cookie_only":
                    records.destroy(request.sid)
                request.ended = True
                return answer({"data": {}})
            elif route == "/end-group":
                request.ended = request.sid in records.end_group(f"user:{query['user']}")
        except Unavailable:
            return plain("503 Service Unavailable", "the session store is down")
        body = answer({"data": dict(request.data)})
        if join is not None and request.sid is not None:  # the sid is known once the headers are
            with records.lock:
                records.groups.setdefault(f"user:{join}", set()).add(request.sid)
        return body

    return app

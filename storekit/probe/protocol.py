"""The probe protocol, version 1 (docs/http.md): its routes, their parameters, and ``/features``.

Pure: every Python probe routes all of its prefix to one handler, which
:func:`parse` turns into a :class:`Call` (or a :class:`ProbeError` carrying
the 400, 404 or 405 to answer), and answers the routes that never touch the
session with :func:`answer_free`. What a route does to the session is the
shell's, in its own framework's words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from storekit.cookie import SAME_SITE
from storekit.probe.outage import Outage

__all__ = [
    "MAX_DELAY",
    "PREFIX",
    "PROTOCOL",
    "ROUTES",
    "Call",
    "Features",
    "ProbeError",
    "Reply",
    "answer_free",
    "not_offered",
    "parse",
]

PROTOCOL = 1
PREFIX = "/probe"
MAX_DELAY = 60.0
"""The longest ``delay`` a probe waits: a request can hold a worker, not hang it."""

ROUTES = {
    "features": "GET",
    "read": "GET",
    "write": "POST",
    "login": "POST",
    "logout": "POST",
    "end-group": "POST",
    "untouched": "GET",
    "outage": "POST",
}
"""Each route under the prefix, and its method."""

Reply = tuple[int, dict[str, Any]]
"""A status and the JSON body to answer."""


class ProbeError(Exception):
    """A request the protocol refuses: ``status`` and a message saying what was wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def reply(self) -> Reply:
        return self.status, {"error": str(self)}


def not_offered(route: str, why: str) -> ProbeError:
    """The 404 of a route this probe does not offer (``/features`` says so too)."""
    return ProbeError(404, f"/{route} is not offered: {why}")


@dataclass(frozen=True)
class Call:
    """One probe request, its parameters checked: ``delay`` in seconds, ``value`` already
    ``"x" * size`` when a size was given."""

    route: str
    delay: float = 0.0
    key: str = ""
    value: str = ""
    user: str = ""
    on: bool = False


def _one(params: dict[str, str], name: str, route: str) -> str:
    value = params.get(name)
    if not value:
        raise ProbeError(400, f"/{route} needs {name}=..., got {sorted(params)}")
    return value


def _number(params: dict[str, str], name: str, *, integer: bool) -> float:
    text = params.get(name, "0")
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise ProbeError(400, f"{name} must be a {'whole ' if integer else ''}number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ProbeError(400, f"{name} must be zero or more, got {text!r}")
    return value


def parse(method: str, path: str, query: str, *, prefix: str = PREFIX) -> Call:
    """The call that ``method path?query`` makes; ProbeError for one the protocol does not know."""
    route = path[len(prefix) + 1 :] if path.startswith(prefix + "/") else None
    expected = ROUTES.get(route or "")
    if route is None or expected is None:
        raise ProbeError(404, f"no probe route {path!r}; the routes are {prefix}/{{{','.join(ROUTES)}}}")
    if method.upper() not in (expected, "HEAD" if expected == "GET" else expected):
        raise ProbeError(405, f"/{route} takes {expected}, got {method}")
    params = dict(parse_qsl(query, keep_blank_values=True))
    delay = _number(params, "delay", integer=False)
    if delay > MAX_DELAY:
        raise ProbeError(400, f"delay must be at most {MAX_DELAY:g} seconds, got {params['delay']!r}")
    if route == "write":
        key = _one(params, "key", route)
        if "size" in params:
            return Call(route, delay, key=key, value="x" * int(_number(params, "size", integer=True)))
        if "value" not in params:
            raise ProbeError(400, "/write needs value=... or size=N")
        return Call(route, delay, key=key, value=params["value"])
    if route in ("login", "end-group"):
        return Call(route, delay, user=_one(params, "user", route))
    if route == "outage":
        on = params.get("on")
        if on not in ("0", "1"):
            raise ProbeError(400, f"/outage needs on=1 or on=0, got {on!r}")
        return Call(route, on=on == "1")
    return Call(route, delay)


def _seconds(value: float | None) -> float | int | None:
    """Whole seconds as an int, as the protocol writes them (``3``, not ``3.0``)."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True)
class Features:
    """What ``/features`` answers: the probe's cookie, as configured, and what it offers.

    ``same_site`` is the option's value in any case (``"lax"``), or None when the
    cookie has no ``SameSite``; ``max_session_bytes`` a size the session cannot
    reach, or None where nothing limits it.
    """

    cookie: str
    lifetime: float | None
    same_site: str | None
    groups: bool
    outage: bool
    max_session_bytes: int | None
    secure: bool = False

    def to_json(self) -> dict[str, Any]:
        same_site = None if self.same_site is None else SAME_SITE[self.same_site.lower()]
        return {
            "protocol": PROTOCOL,
            "cookie": self.cookie,
            "lifetime": _seconds(self.lifetime),
            "secure": self.secure,
            "samesite": same_site,
            "groups": self.groups,
            "outage": self.outage,
            "max_session_bytes": self.max_session_bytes,
        }


def answer_free(call: Call, features: Features, switch: Outage | None) -> Reply | None:
    """The reply to a route that never touches the session (``/features``, ``/untouched``,
    ``/outage`` through ``switch``), or None for the others."""
    if call.route == "features":
        return 200, features.to_json()
    if call.route == "untouched":
        return 200, {"ok": True}
    if call.route == "outage":
        if switch is None:
            raise not_offered("outage", "this probe's store has no outage switch")
        switch.on = call.on
        return 200, {"outage": call.on}
    return None

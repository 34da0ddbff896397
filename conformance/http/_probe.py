"""What every HTTP clause uses: the app under test, its declared features, and browsers
(each an httpx client with its own cookie jar) that speak the probe protocol."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

import httpx

from storekit.conformance._support import Skip, fail

TIMEOUT = 30.0
"""Seconds any one probe request may take (slow requests included)."""
SLOW = 1.5
"""Seconds a slow request holds its loaded session before it answers."""


@dataclass(frozen=True)
class Features:
    """What the app declares at ``/features`` (``docs/http.md``)."""

    cookie: str
    lifetime: float | None
    secure: bool
    samesite: str | None
    groups: bool
    outage: bool
    max_session_bytes: int

    @classmethod
    def parse(cls, answer: object) -> Features:
        """The features of a ``/features`` answer; ValueError naming what is wrong."""
        if not isinstance(answer, dict):
            raise ValueError(f"/features answered {answer!r}, not a JSON object")
        if answer.get("protocol") != 1:
            raise ValueError(
                f"/features says protocol {answer.get('protocol')!r}; this suite speaks protocol 1"
            )
        cookie = answer.get("cookie")
        if not isinstance(cookie, str) or not cookie:
            raise ValueError(f"/features names no cookie: {answer.get('cookie')!r}")
        lifetime = answer.get("lifetime")
        if lifetime is not None and (not isinstance(lifetime, int | float) or lifetime <= 0):
            raise ValueError(f"/features lifetime {lifetime!r} is not a positive number of seconds or null")
        limit = answer.get("max_session_bytes")
        if not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"/features max_session_bytes {limit!r} is not a positive int")
        return cls(
            cookie=cookie,
            lifetime=None if lifetime is None else float(lifetime),
            secure=bool(answer.get("secure", False)),
            samesite=answer.get("samesite"),
            groups=bool(answer.get("groups", False)),
            outage=bool(answer.get("outage", False)),
            max_session_bytes=limit,
        )


class Answer:
    """One probe response: its status, JSON (None if it is not JSON), and Set-Cookie of the session."""

    def __init__(self, response: httpx.Response, cookie: str) -> None:
        self.response = response
        self.status = response.status_code
        try:
            self.json: Any = response.json()
        except ValueError:
            self.json = None
        self.set_cookies = [_morsel(raw, cookie) for raw in response.headers.get_list("set-cookie")]
        self.session_cookie = next((m for m in self.set_cookies if m is not None), None)

    @property
    def data(self) -> Any:
        return self.json.get("data") if isinstance(self.json, dict) else None

    def __repr__(self) -> str:
        return f"HTTP {self.status} {self.response.text[:200]!r}"


def _morsel(raw: str, name: str) -> dict[str, str] | None:
    """The attributes of a Set-Cookie header for ``name`` (value under ``""``), else None."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    if morsel is None:
        return None
    found = {"": morsel.value}
    lowered = raw.lower()
    for attribute in ("httponly", "secure"):
        if any(part.strip() == attribute for part in lowered.split(";")):
            found[attribute] = "true"
    for key in ("samesite", "max-age", "expires", "path"):
        if morsel[key]:
            found[key] = str(morsel[key])
    return found


class Browser:
    """One browser: a cookie jar of its own, kept by httpx as a browser keeps it."""

    def __init__(self, probe: Probe, cookie: str | None = None) -> None:
        self.probe = probe
        self.client = httpx.Client(base_url=probe.url, timeout=TIMEOUT)
        if cookie is not None:
            self.client.cookies.set(probe.features.cookie, cookie)

    def call(self, method: str, route: str, **params: object) -> Answer:
        try:
            response = self.client.request(method, route, params={k: str(v) for k, v in params.items()})
        except httpx.HTTPError as exc:
            fail(self.probe.clause, f"{method} {route} {params or ''} failed: {type(exc).__name__}: {exc}")
        return Answer(response, self.probe.features.cookie)

    def read(self, **params: object) -> Answer:
        return self.call("GET", "/read", **params)

    def write(self, key: str, value: str, **params: object) -> Answer:
        return self.call("POST", "/write", key=key, value=value, **params)

    def login(self, user: str, **params: object) -> Answer:
        return self.call("POST", "/login", user=user, **params)

    def logout(self) -> Answer:
        return self.call("POST", "/logout")

    @property
    def cookie(self) -> str | None:
        """The session cookie this browser would send now."""
        return self.client.cookies.get(self.probe.features.cookie)

    def close(self) -> None:
        self.client.close()


class Probe:
    """The app under test at ``url``, with the features it declared, for one clause at a time."""

    def __init__(self, url: str, features: Features) -> None:
        self.url = url.rstrip("/")
        self.features = features
        self.clause = "http"
        self._browsers: list[Browser] = []

    def browser(self, cookie: str | None = None) -> Browser:
        made = Browser(self, cookie)
        self._browsers.append(made)
        return made

    def close_browsers(self) -> None:
        while self._browsers:
            self._browsers.pop().close()

    def user(self) -> str:
        """A user name no other clause uses."""
        return f"sk-{secrets.token_hex(4)}"

    def logged_in(self, browser: Browser, user: str, clause: str) -> None:
        """Log ``browser`` in as ``user`` and check that it took."""
        __tracebackhide__ = True
        answer = browser.login(user)
        if answer.status != 200 or not isinstance(answer.data, dict) or answer.data.get("user") != user:
            fail(clause, f"login as {user!r} did not take: {answer!r}")
        if browser.cookie is None:
            fail(clause, f"login as {user!r} set no {self.features.cookie!r} cookie: {answer!r}")

    def needs(self, feature: str) -> None:
        """Skip as "not offered" when the app does not declare ``feature``."""
        __tracebackhide__ = True
        if not getattr(self.features, feature):
            raise Skip("not offered", f"the app declares no {feature} at /features")


def read_user(browser: Browser) -> object:
    answer = browser.read()
    return answer.data.get("user") if isinstance(answer.data, dict) else answer


@contextmanager
def running(work: Callable[[], Answer], clause: str) -> Iterator[list[Answer]]:
    """Run ``work`` in a thread while the body runs; its answer is in the list afterwards (a
    request that does not answer fails ``clause``)."""
    out: list[Answer] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(work())
        except BaseException as exc:  # a fail() in the thread is reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run, name="storekit-slow-request", daemon=True)
    thread.start()
    try:
        yield out
    finally:
        thread.join(timeout=TIMEOUT + 5)
    if errors:
        raise errors[0]
    if not out:
        fail(clause, f"a slow request did not answer within {TIMEOUT + 5}s")

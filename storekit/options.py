"""The session middleware's options, and the session cookie's expiry as express-session keeps it.

Pure: no I/O. :class:`SessionConfig` checks every option once, at startup, with
a message that quotes the bad value and says the fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from storekit.codec import check_seconds, cookie_json, parse_expires
from storekit.cookie import SAME_SITE, check_attribute, check_cookie_name, check_secrets, generate_sid
from storekit.errors import InvalidSessionData, cut

__all__ = ["DEFAULT_GROUP_TTL", "DEFAULT_TTL", "SessionConfig", "SessionCookie", "request_is_secure"]

DEFAULT_GROUP_TTL = 400 * 86400.0
"""How long a group index lives past its last join (400 days, browsers' cap on a cookie's life)."""

DEFAULT_TTL = 86400.0
"""How long a session whose cookie has no expiry (``max_age=None``) lives in the store after its
last use: one day, as connect-redis's default ``ttl`` for express-session."""

BROWSER_SESSION = "a browser-session cookie"


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {type(value).__name__} {cut(value)}")
    return value


@dataclass(frozen=True)
class SessionConfig:
    """The middleware's options, checked; see docs/middleware.md for each one.

    ``secret`` is a str or bytes, or a list of them: the first signs new
    cookies, every one verifies, so a secret is rotated by putting the new
    one first. ``max_age`` is in seconds; ``None`` gives a browser-session
    cookie, and the stored session then expires ``ttl`` seconds after its
    last use (one day by default; ``ttl=None`` leaves it to the store's
    default TTL, which for the reference stores is for ever).
    """

    secret: str | bytes | list[str | bytes] | tuple[str | bytes, ...] = field(repr=False)
    cookie_name: str = "connect.sid"
    max_age: float | None = None
    ttl: float | None = DEFAULT_TTL
    rolling: bool = False
    resave: bool = False
    save_uninitialized: bool = False
    always_set: bool = False
    http_only: bool = True
    secure: bool | Literal["auto"] = False
    same_site: str | None = "lax"
    path: str = "/"
    domain: str | None = None
    partitioned: bool = False
    trust_proxy: bool = False
    group_ttl: float = DEFAULT_GROUP_TTL
    clock: Callable[[], float] = field(default=time.time, repr=False)
    genid: Callable[[], str] = field(default=generate_sid, repr=False)
    keys: tuple[bytes, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", check_secrets(self.secret))
        check_cookie_name(self.cookie_name)
        object.__setattr__(self, "max_age", check_seconds("max_age", self.max_age, none=BROWSER_SESSION))
        object.__setattr__(
            self,
            "ttl",
            check_seconds("ttl", self.ttl, none="the store's default TTL", hint="; the default is one day"),
        )
        flags = (
            "rolling",
            "resave",
            "save_uninitialized",
            "always_set",
            "http_only",
            "partitioned",
            "trust_proxy",
        )
        for name in flags:
            _flag(name, getattr(self, name))
        if self.secure != "auto":
            _flag("secure", self.secure)
        if self.same_site is not None:
            if not isinstance(self.same_site, str) or self.same_site.lower() not in SAME_SITE:
                raise ValueError(
                    f"same_site must be 'lax', 'strict', 'none' or None, got {cut(self.same_site)}"
                )
            object.__setattr__(self, "same_site", self.same_site.lower())
            if self.same_site == "none" and self.secure is False:
                raise ValueError(
                    "same_site='none' needs a Secure cookie (browsers drop it otherwise); pass secure=True"
                )
        check_attribute("path", self.path)
        if not self.path.startswith("/"):
            raise ValueError(f"cookie path must start with '/', got {self.path!r}")
        if self.domain is not None:
            check_attribute("domain", self.domain)
        ttl = check_seconds("group_ttl", self.group_ttl, hint="; the default is 400 days")
        object.__setattr__(self, "group_ttl", ttl)
        if not callable(self.clock) or not callable(self.genid):
            raise ValueError("clock and genid must be callables taking no arguments")

    def cookie_flags(self, request_secure: bool) -> tuple[bool, str | None]:
        """The Secure flag and SameSite value of a cookie sent on this request."""
        secure = request_secure if self.secure == "auto" else self.secure
        same_site = self.same_site
        if same_site == "none" and not secure:
            same_site = "lax"  # secure="auto" over plain http: None without Secure would be dropped
        return bool(secure), same_site


def request_is_secure(scheme: str, forwarded_proto: str | None, *, trust_proxy: bool) -> bool:
    """Whether the client reached us over https, as express-session decides it.

    The connection's own scheme counts first; ``X-Forwarded-Proto`` (its first
    value) counts only when the proxy is trusted.
    """
    if scheme.lower() == "https":
        return True
    if not trust_proxy or not forwarded_proto:
        return False
    return forwarded_proto.split(",", 1)[0].strip().lower() == "https"


class SessionCookie:
    """The session's cookie as express-session keeps it: an original max age and an expiry.

    ``max_age`` is in seconds; ``expires`` is POSIX seconds or None. Setting
    ``max_age`` restarts the expiry and sends the cookie again, as
    ``req.session.cookie.maxAge = ms`` does. ``expires`` is when the store
    drops the session; the browser's copy carries it (``browser_expires``)
    only when the cookie has a max age of its own and is ``persistent``.
    Without a max age, ``ttl`` (the option) gives the stored session its
    expiry while the browser keeps a browser-session cookie; ``persistent``
    False does the same for a cookie with a max age (a Flask session that is
    not permanent).
    """

    def __init__(
        self,
        max_age: float | None,
        expires: float | None,
        clock: Callable[[], float],
        *,
        persistent: bool = True,
        ttl: float | None = None,
    ) -> None:
        self.original_max_age = max_age
        self.expires = expires
        self.changed = False
        self.persistent = persistent
        self.ttl = ttl
        self._clock = clock

    @classmethod
    def new(cls, config: SessionConfig) -> SessionCookie:
        """The cookie of a new session under ``config`` (no expiry until :meth:`reset`)."""
        return cls(config.max_age, None, config.clock, ttl=config.ttl)

    @property
    def max_age(self) -> float | None:
        """Seconds left before the cookie expires, or None for a browser-session cookie."""
        if self.original_max_age is None or self.expires is None:
            return None
        return self.expires - self._clock()

    @max_age.setter
    def max_age(self, seconds: float | None) -> None:
        self.original_max_age = check_seconds("max_age", seconds, none=BROWSER_SESSION)
        self.reset()
        self.changed = True

    @property
    def browser_expires(self) -> float | None:
        """The expiry the browser's copy carries, or None for a browser-session cookie."""
        return self.expires if self.persistent and self.original_max_age is not None else None

    def reset(self) -> None:
        """Restart the expiry from now (express-session's ``resetMaxAge``); without a max age,
        the stored session gets ``ttl`` from now, if any."""
        age = self.ttl if self.original_max_age is None else self.original_max_age
        self.expires = None if age is None else self._clock() + age

    def to_json(self, config: SessionConfig, secure: bool) -> dict[str, Any]:
        """express-session's ``cookie.toJSON()``, written by :func:`storekit.codec.cookie_json`."""
        return cookie_json(
            max_age=self.original_max_age,
            expires=self.expires,
            http_only=config.http_only,
            path=config.path,
            secure=secure,
            domain=config.domain,
            same_site=config.same_site,
        )

    @classmethod
    def from_json(cls, data: object, config: SessionConfig) -> SessionCookie:
        """Read a stored ``cookie``; its flags give way to the options, its expiry is kept."""
        if data is None:
            return cls.new(config)
        if not isinstance(data, dict):
            raise InvalidSessionData(f"session['cookie'] must be an object, got {cut(data)}", ["cookie"])
        age = data.get("originalMaxAge")
        if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float)) or age <= 0):
            raise InvalidSessionData(
                f"session['cookie']['originalMaxAge'] must be a positive number of milliseconds or null, "
                f"got {cut(age)}",
                ["cookie", "originalMaxAge"],
            )
        expires = data.get("expires")
        return cls(
            None if age is None else age / 1000,
            None if expires is None else parse_expires(expires),
            config.clock,
            ttl=config.ttl,
        )

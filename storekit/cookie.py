"""The session cookie on the wire: IDs, signatures, ``Cookie`` and ``Set-Cookie``.

Everything here is pure string work, in express-session's formats so that a
Python app and an Express app with the same secret read each other's cookies:

* a sid is 24 random bytes in unpadded URL-safe base64 (uid-safe's ``uid(24)``);
* the cookie value is ``s:`` + sid + ``.`` + the HMAC-SHA256 of the sid under
  the secret, in standard base64 with the ``=`` padding stripped
  (cookie-signature's ``sign``), then URL-encoded as ``encodeURIComponent``
  does, so ``s:`` goes out as ``s%3A``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import secrets as _secrets
from collections.abc import Iterable, Iterator, Sequence
from email.utils import formatdate
from urllib.parse import quote, unquote

from storekit.codec import check_sid
from storekit.errors import InvalidSessionId, cut

__all__ = [
    "SAME_SITE",
    "check_attribute",
    "check_cookie_name",
    "check_secrets",
    "cookie_values",
    "delete_cookie_header",
    "generate_sid",
    "set_cookie_header",
    "sign",
    "signature",
    "signed_sids",
    "unsign",
]

SAME_SITE = {"strict": "Strict", "lax": "Lax", "none": "None"}
"""Accepted ``same_site`` values, lower-cased, and how they are written."""

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # RFC 6265 cookie-name (an RFC 7230 token)
_ATTRIBUTE = re.compile(r"[\x21-\x3a\x3c-\x7e]+\Z")  # printable ASCII without ';'
_URI_SAFE = "-_.!~*'()"  # what encodeURIComponent leaves alone, beyond letters and digits


def generate_sid() -> str:
    """A new session ID: 24 random bytes as 32 URL-safe base64 characters."""
    return _secrets.token_urlsafe(24)


def check_cookie_name(name: object) -> str:
    """Return ``name`` if it can be a cookie name, else raise ValueError saying why."""
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise ValueError(
            f"cookie name must be a non-empty token of letters, digits and !#$%&'*+-.^_`|~, "
            f"got {cut(name)}; e.g. 'connect.sid' or 'session'"
        )
    return name


def check_attribute(what: str, value: object) -> str:
    """Return a Path or Domain attribute value, or raise ValueError."""
    if not isinstance(value, str) or not _ATTRIBUTE.match(value):
        raise ValueError(
            f"cookie {what} must be printable ASCII text without spaces or ';', got {cut(value)}"
        )
    return value


def check_secrets(secret: object) -> tuple[bytes, ...]:
    """Normalize a secret or a list of secrets to a tuple of keys, first one signing.

    Each secret is a non-empty ``str`` (keyed as UTF-8, as Node does) or
    ``bytes``. Raises ValueError naming the bad one.
    """
    items: Sequence[object]
    if isinstance(secret, (str, bytes)):
        items = [secret]
    elif isinstance(secret, (list, tuple)):
        items = secret
    else:
        raise ValueError(
            f"secret must be a str, bytes, or a list of them (newest first), got "
            f"{type(secret).__name__} {cut(secret)}"
        )
    if not items:
        raise ValueError(
            "secret list is empty; give at least one secret, e.g. from "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    keys: list[bytes] = []
    for index, item in enumerate(items):
        where = "secret" if isinstance(secret, (str, bytes)) else f"secret[{index}]"
        if not isinstance(item, (str, bytes)):
            raise ValueError(f"{where} must be a str or bytes, got {type(item).__name__} {cut(item)}")
        if not item:
            raise ValueError(
                f"{where} is empty ({item!r}), which signs nothing; use a long random value, e.g. from "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        try:
            keys.append(item.encode("utf-8") if isinstance(item, str) else item)
        except UnicodeEncodeError:
            raise ValueError(f"{where} contains a lone surrogate; pass valid text or bytes") from None
    return tuple(keys)


def signature(sid: str, key: bytes) -> str:
    """cookie-signature's signature of ``sid``: unpadded standard base64 of HMAC-SHA256."""
    digest = hmac.new(key, sid.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii").rstrip("=")


def sign(sid: str, key: bytes) -> str:
    """The cookie value for ``sid`` before URL encoding: ``s:<sid>.<signature>``."""
    return f"s:{sid}.{signature(sid, key)}"


def unsign(value: str, keys: Sequence[bytes]) -> str | None:
    """The sid inside a signed value (already URL-decoded), or None.

    The value must be ``s:`` + sid + ``.`` + a signature that one of ``keys``
    made; the sid is everything up to the last ``.``. Comparison is in
    constant time; there is no other check here (see ``check_sid``).
    """
    if not value.startswith("s:"):
        return None
    body = value[2:]
    dot = body.rfind(".")
    if dot < 0:
        return None
    sid, given = body[:dot], body[dot + 1 :]
    try:
        given_bytes = given.encode("ascii")
    except UnicodeEncodeError:
        return None
    found = False
    for key in keys:  # try every key, so timing does not tell which one matched
        found |= hmac.compare_digest(signature(sid, key).encode("ascii"), given_bytes)
    return sid if found else None


def signed_sids(values: Iterable[str], keys: Sequence[bytes]) -> Iterator[str]:
    """The sids inside cookie ``values`` that one of ``keys`` signed and that a
    store can keep (``check_sid``), in order; every other value is skipped."""
    for value in values:
        sid = unsign(value, keys)
        if sid is None:
            continue
        try:
            yield check_sid(sid)
        except InvalidSessionId:
            continue


def _pairs(header: str) -> Iterator[str]:
    """The ``;``-separated parts of a header, one at a time (a large header is not split at once)."""
    start = 0
    while start <= len(header):
        end = header.find(";", start)
        if end < 0:
            end = len(header)
        yield header[start:end]
        start = end + 1


def cookie_values(header: str | None, name: str, limit: int | None = None) -> list[str]:
    """The values of cookie ``name`` in a ``Cookie`` header, in the order sent, decoded:
    every one, or the first ``limit``.

    Tolerant as browsers' servers must be: pairs without ``=`` are skipped,
    surrounding double quotes are removed, and a value that is not valid
    percent-encoded UTF-8 is kept as it came (as express's ``cookie.parse``
    does). Nothing here raises. With ``limit``, the header is read only as far
    as the ``limit``-th value of the name.
    """
    if not header or limit == 0:
        return []
    found: list[str] = []
    for pair in _pairs(header):
        if name not in pair:  # most pairs of a large header: a quick no
            continue
        key, eq, value = pair.partition("=")
        if not eq or key.strip() != name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if "%" in value:
            with contextlib.suppress(UnicodeDecodeError):  # kept as sent
                value = unquote(value, errors="strict")
        found.append(value)
        if len(found) == limit:
            break
    return found


def _expires_text(when: float) -> str:
    return formatdate(when, usegmt=True)


def set_cookie_header(
    name: str,
    value: str,
    *,
    expires: float | None,
    now: float,
    path: str,
    domain: str | None,
    secure: bool,
    http_only: bool,
    same_site: str | None,
    partitioned: bool = False,
) -> str:
    """A ``Set-Cookie`` header value; ``value`` is URL-encoded as ``encodeURIComponent`` does.

    With ``expires`` (POSIX seconds) the cookie gets both ``Max-Age`` and
    ``Expires``; without it, it is a browser-session cookie. ``partitioned``
    adds the ``Partitioned`` attribute (CHIPS).
    """
    parts = [f"{name}={quote(value, safe=_URI_SAFE)}"]
    if expires is not None:
        parts.append(f"Max-Age={max(0, round(expires - now))}")
    if domain is not None:
        parts.append(f"Domain={domain}")
    parts.append(f"Path={path}")
    if expires is not None:
        parts.append(f"Expires={_expires_text(expires)}")
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    if same_site is not None:
        parts.append(f"SameSite={SAME_SITE[same_site]}")
    if partitioned:
        parts.append("Partitioned")
    return "; ".join(parts)


def delete_cookie_header(
    name: str,
    *,
    path: str,
    domain: str | None,
    secure: bool,
    http_only: bool,
    same_site: str | None,
    partitioned: bool = False,
) -> str:
    """A ``Set-Cookie`` that removes cookie ``name`` set with the same path and domain."""
    return set_cookie_header(
        name,
        "",
        expires=0.0,
        now=0.0,
        path=path,
        domain=domain,
        secure=secure,
        http_only=http_only,
        same_site=same_site,
        partitioned=partitioned,
    )

"""What every middleware shell takes: the app, the store, and the session options.

:class:`SessionShell` is the one place where the options of
:class:`storekit.options.SessionConfig` become keyword arguments, so that the
WSGI and ASGI middlewares (``SessionMiddleware(app, store, *, secret, ...)``)
take exactly the same ones, with the same defaults. A shell names what it is
(``user``, for messages) and which kind of store it drives (``kind``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar, Generic, Literal, TypeVar

from storekit.contract import StoreKind, check_store
from storekit.cookie import generate_sid
from storekit.options import DEFAULT_GROUP_TTL, DEFAULT_TTL, SessionConfig

__all__ = ["SessionShell"]

App = TypeVar("App")
StoreT = TypeVar("StoreT")


class SessionShell(Generic[App, StoreT]):
    """Holds ``app``, the checked ``store`` and ``config``; see docs/middleware.md for each option."""

    user: ClassVar[str]
    kind: ClassVar[StoreKind]

    def __init__(
        self,
        app: App,
        store: StoreT,
        *,
        secret: str | bytes | list[str | bytes] | tuple[str | bytes, ...],
        cookie_name: str = "connect.sid",
        max_age: float | None = None,
        ttl: float | None = DEFAULT_TTL,
        rolling: bool = False,
        resave: bool = False,
        save_uninitialized: bool = False,
        always_set: bool = False,
        http_only: bool = True,
        secure: bool | Literal["auto"] = False,
        same_site: str | None = "lax",
        path: str = "/",
        domain: str | None = None,
        partitioned: bool = False,
        trust_proxy: bool = False,
        group_ttl: float = DEFAULT_GROUP_TTL,
        clock: Callable[[], float] = time.time,
        genid: Callable[[], str] = generate_sid,
    ) -> None:
        self.app = app
        self.store: StoreT = check_store(store, self.user, kind=self.kind)
        self.config = SessionConfig(
            secret=secret,
            cookie_name=cookie_name,
            max_age=max_age,
            ttl=ttl,
            rolling=rolling,
            resave=resave,
            save_uninitialized=save_uninitialized,
            always_set=always_set,
            http_only=http_only,
            secure=secure,
            same_site=same_site,
            path=path,
            domain=domain,
            partitioned=partitioned,
            trust_proxy=trust_proxy,
            group_ttl=group_ttl,
            clock=clock,
            genid=genid,
        )

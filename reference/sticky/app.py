"""The app the sticky server serves: loaded from ``MODULE:APP`` and judged before any worker starts.

A function or class given without ``--factory`` would answer 500 to every
request; `check_app` catches that from its signature, in the master, and
says "use --factory". A factory whose signature cannot tell (``*args``) is
caught at its first request instead: `guard` answers 500 with the same advice.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from typing import Any

from storekit.resolve import ResolveError, resolve

__all__ = ["check_app", "guard", "load_app"]

_EXAMPLE = "myproject.wsgi:application"


def load_app(spec: str) -> Callable[..., Any]:
    """The callable that ``MODULE:APP`` names, imported as `storekit.resolve` imports, or ValueError."""
    try:
        app = resolve(spec, example=_EXAMPLE)
    except ResolveError as exc:
        raise ValueError(f"cannot load {spec!r}: MODULE:APP {exc}") from None
    if not callable(app):
        raise ValueError(f"{spec!r} is a {type(app).__name__}, not a WSGI app or app factory")
    return app


def check_app(app: Callable[..., Any], *, factory: bool, name: str, flag: str = "--factory") -> None:
    """ValueError unless `app` can be called as a WSGI app (or, with `factory`, with no arguments).

    `name` is how the user named the app; `flag` is how they ask for a factory
    (``--factory``, or ``factory=True`` for StickyServer). A callable whose
    signature Python cannot read (some builtins) passes.
    """
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return
    takes_wsgi = _binds(signature, 2)
    takes_nothing = _binds(signature, 0)
    kind = "class" if isinstance(app, type) else "callable"
    if factory:
        if not takes_nothing:
            hint = f"; it takes (environ, start_response), so drop {flag}" if takes_wsgi else ""
            raise ValueError(
                f"{name} is an app factory ({flag}), called with no arguments in each worker, but the "
                f"{kind} takes {signature}{hint}"
            )
        return
    if takes_wsgi:
        return
    if takes_nothing:
        raise ValueError(
            f"{name} is a {kind} that takes {signature}, not (environ, start_response): it looks like an "
            f"app factory; use {flag} to call it once in each worker, or name the WSGI app it returns"
        )
    raise ValueError(
        f"{name} is a {kind} that takes {signature}; a WSGI app takes (environ, start_response), and an "
        f"app factory ({flag}) takes no arguments"
    )


def _binds(signature: inspect.Signature, count: int) -> bool:
    try:
        signature.bind(*([None] * count))
    except TypeError:
        return False
    return True


def guard(app: Callable[..., Any], name: str, flag: str = "--factory") -> Callable[..., Any]:
    """`app`, answering 500 with advice when a call returns a WSGI app instead of the response body."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        result = app(environ, start_response)
        if callable(result) and not hasattr(result, "__iter__"):
            message = (
                f"{name} returned {result!r}, a callable, instead of the response body: it looks like "
                f"an app factory; use {flag}"
            )
            print(f"storekit serve: error: {message}", file=sys.stderr, flush=True)
            body = (message + "\n").encode("utf-8", "replace")
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return result  # type: ignore[no-any-return]

    return guarded

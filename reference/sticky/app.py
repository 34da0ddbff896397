"""The app the sticky server serves: loaded from ``MODULE:APP`` and judged before any worker starts.

A function or class given without ``--factory`` would answer 500 to every
request; `check_app` catches that from its signature, in the master, and
says "use --factory". A factory whose signature cannot tell (``*args``) is
caught at its first request instead: `guard` answers 500 with the same advice.

`interface_of` tells an ASGI app (``async def app(scope, receive, send)``, or an
object whose ``__call__`` is one, as Starlette's and FastAPI's are) from a WSGI
app; ``--interface`` overrides it, and a factory's app is judged in the worker.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from typing import Any, Literal

from storekit.resolve import ResolveError, resolve

__all__ = [
    "INTERFACES",
    "Interface",
    "call_of",
    "check_app",
    "check_interface",
    "guard",
    "interface_of",
    "load_app",
    "looks_asgi",
    "prepare_app",
    "require_server",
    "require_uvicorn",
    "require_waitress",
]

_EXAMPLE = "myproject.wsgi:application"

Interface = Literal["auto", "asgi", "wsgi"]
INTERFACES: tuple[Interface, ...] = ("auto", "asgi", "wsgi")


def check_interface(interface: object) -> Interface:
    """`interface` if it is one of `INTERFACES`, else ValueError quoting it."""
    if interface not in INTERFACES:
        raise ValueError(f"--interface expects one of {', '.join(INTERFACES)}, got {interface!r}")
    return interface


def looks_asgi(app: object) -> bool:
    """Whether `app` is an ASGI 3 app: a coroutine function (or an object whose ``__call__`` is
    one) that takes (scope, receive, send)."""
    if isinstance(app, type) or not callable(app):
        return False
    call = call_of(app)
    if not inspect.iscoroutinefunction(call):
        return False
    try:
        return _binds(inspect.signature(call), 3)
    except (TypeError, ValueError):
        return True


def call_of(app: Callable[..., Any]) -> Callable[..., Any]:
    """What calling `app` runs: the function itself, or an instance's bound ``__call__``."""
    if inspect.isroutine(app):
        return app
    call: Callable[..., Any] = type(app).__call__.__get__(app)
    return call


def interface_of(app: object, interface: Interface = "auto") -> Literal["asgi", "wsgi"]:
    """The interface to serve `app` with: `interface` unless it is "auto", else as `app` looks."""
    if interface != "auto":
        return interface
    return "asgi" if looks_asgi(app) else "wsgi"


def load_app(spec: str) -> Callable[..., Any]:
    """The callable that ``MODULE:APP`` names, imported as `storekit.resolve` imports, or ValueError."""
    try:
        app = resolve(spec, example=_EXAMPLE)
    except ResolveError as exc:
        raise ValueError(f"cannot load {spec!r}: MODULE:APP {exc}") from None
    if not callable(app):
        raise ValueError(f"{spec!r} is a {type(app).__name__}, not a WSGI or ASGI app or app factory")
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


def prepare_app(
    app: Callable[..., Any], *, factory: bool, name: str, flag: str, interface: Interface = "auto"
) -> tuple[Callable[..., Any], Interface]:
    """`app` checked for its interface, and the interface to serve it with ("auto" only for a
    factory, whose app the worker judges); a plain WSGI function or class is guarded against
    being a factory."""
    interface = check_interface(interface)
    if factory:
        check_app(app, factory=True, name=name, flag=flag)
        return app, interface
    interface = interface_of(app, interface)
    if interface == "asgi":
        _check_asgi(app, name)
        return app, interface
    if interface_of(app) == "asgi":
        raise ValueError(
            f"{name} is an ASGI app (async, (scope, receive, send)), but --interface wsgi was asked "
            "for; drop --interface (or use --interface asgi)"
        )
    check_app(app, factory=False, name=name, flag=flag)
    if inspect.isfunction(app) or isinstance(app, type):
        return guard(app, name, flag), interface
    return app, interface


def _check_asgi(app: Callable[..., Any], name: str) -> None:
    try:
        signature = inspect.signature(call_of(app))
    except (TypeError, ValueError):
        return
    try:
        signature.bind(None, None, None)
    except TypeError:
        raise ValueError(
            f"{name} takes {signature}; an ASGI app takes (scope, receive, send): drop --interface asgi "
            "for a WSGI app, or use --factory for a function that returns the app"
        ) from None


def require_server(interface: Interface) -> None:
    """The package the workers serve `interface` with is importable, or ImportError saying how to get it."""
    if interface == "wsgi":
        require_waitress()
    elif interface == "asgi":
        require_uvicorn()


def require_uvicorn() -> None:
    """ASGI workers serve with uvicorn; say how to get it rather than fail in every worker."""
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        raise ImportError(
            "the sticky server's ASGI workers run uvicorn: pip install 'storekit[asgi]'"
        ) from None


def require_waitress() -> None:
    """The workers serve with waitress; say how to get it rather than fail in every worker."""
    try:
        import waitress  # noqa: F401
    except ImportError:
        raise ImportError(
            "the sticky server's workers run waitress: pip install 'storekit[server]'"
        ) from None

"""`storekit serve MODULE:APP`: the sticky server from a shell, flags checked as StickyServer checks them.

The master runs in this process (``StickyServer`` forks one instead); ClusterStore's
server starts before the app is imported, so a module-level ``ClusterStore()`` works.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

from storekit.reference.sticky.app import INTERFACES, check_interface, load_app
from storekit.reference.sticky.limits import (
    CONNECTION_LIMIT,
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    PER_ADDRESS_LIMIT,
    Limits,
    check_timeout,
    make_limits,
)
from storekit.reference.sticky.master import Master, shared_sessions
from storekit.reference.sticky.routing import (
    ROUTINGS,
    check_mode,
    check_routing,
    check_threads,
    check_workers,
    parse_bind,
)
from storekit.reference.sticky.server import prepare_app, require_server, resolve_mode
from storekit.reference.sticky.sockets import Config, open_listeners

__all__ = ["describe_limits", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storekit serve",
        description="Serve a WSGI or ASGI app on worker processes, each client on one worker.",
    )
    parser.add_argument(
        "app", metavar="MODULE:APP", help="the WSGI or ASGI app, e.g. myproject.wsgi:application or main:app"
    )
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument(
        "--bind",
        default="127.0.0.1:8000",
        help="HOST:PORT to listen on (default 127.0.0.1:8000, this machine only); [::1]:PORT for IPv6; "
        "0.0.0.0:PORT or :PORT for every interface; port 0 for any free port",
    )
    parser.add_argument(
        "--routing", default="ip-hash", help=f"one of {', '.join(ROUTINGS)} (default ip-hash)"
    )
    parser.add_argument("--mode", default="auto", help="auto (default), kernel or handoff")
    parser.add_argument("--factory", action="store_true", help="APP is a factory, called once in each worker")
    parser.add_argument(
        "--interface",
        default="auto",
        help=f"one of {', '.join(INTERFACES)}: auto (default) serves an async (scope, receive, send) app "
        "with uvicorn, anything else with waitress",
    )
    parser.add_argument("--header", default="X-Forwarded-For", help="header routing: the address header")
    parser.add_argument("--cookie", default=None, help="header routing: route on this cookie when present")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    parser.add_argument("--seed", type=int, default=None, help="hash seed (default: random per start)")
    guard = parser.add_argument_group(
        "limits", "what one client, and all of them, may hold (see docs/sticky.md)"
    )
    guard.add_argument(
        "--connection-limit", type=int, default=CONNECTION_LIMIT, metavar="N",
        help=f"open connections per worker (default {CONNECTION_LIMIT}, and at most the descriptor limit "
        "less 64); more wait in the kernel's queue",
    )  # fmt: skip
    guard.add_argument(
        "--per-address-limit", type=int, default=PER_ADDRESS_LIMIT, metavar="N",
        help=f"open connections per client address (default {PER_ADDRESS_LIMIT}); a new one past it is "
        "closed at once; trusted proxies are exempt",
    )  # fmt: skip
    guard.add_argument(
        "--header-timeout", type=float, default=HEADER_TIMEOUT, metavar="SECONDS",
        help=f"time to send a whole request head, from the connection's start or the first byte of its "
        f"next request (default {HEADER_TIMEOUT:g})",
    )  # fmt: skip
    guard.add_argument(
        "--idle-timeout", type=float, default=IDLE_TIMEOUT, metavar="SECONDS",
        help=f"time a kept-alive connection may wait for its next request (default {IDLE_TIMEOUT:g})",
    )  # fmt: skip
    guard.add_argument(
        "--graceful-timeout", type=float, default=10.0, metavar="SECONDS",
        help="on SIGTERM, time the workers have to finish the requests in flight (default 10)",
    )  # fmt: skip
    guard.add_argument(
        "--trusted-proxy", action="append", default=[], metavar="ADDRESS",
        help="header routing: a proxy (address or network, e.g. 127.0.0.1 or 10.0.0.0/8) whose "
        "forwarded header counts; repeat for several (default: none, every connection routes on "
        "its peer address or the cookie)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    """`storekit serve`: serve until SIGTERM or Ctrl-C; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a message argparse already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        interface = check_interface(args.interface)
        host, port = parse_bind(args.bind)
        routing = check_routing(args.routing)
        mode = resolve_mode(routing, check_mode(args.mode))
        workers = check_workers((os.cpu_count() or 1) if args.workers is None else args.workers)
        threads = check_threads(args.threads)
        graceful_timeout = check_timeout(args.graceful_timeout, "--graceful-timeout")
        limits = make_limits(
            connection_limit=args.connection_limit,
            per_address_limit=args.per_address_limit,
            header_timeout=args.header_timeout,
            idle_timeout=args.idle_timeout,
            trusted_proxies=args.trusted_proxy,
        )
    except (ValueError, TypeError, ImportError) as exc:
        return _usage_error(exc)
    # Before the app is imported: a module-level ClusterStore() is built here, in the master.
    with shared_sessions():
        try:
            app, interface = prepare_app(
                load_app(args.app), factory=args.factory, name=repr(args.app), flag="--factory",
                interface=interface,
            )  # fmt: skip
            require_server(interface)
        except (ValueError, TypeError, ImportError) as exc:
            return _usage_error(exc)
        config = Config(
            app=app,
            factory=args.factory,
            interface=interface,
            workers=workers,
            routing=routing,
            mode=mode,
            seed=random.getrandbits(32) if args.seed is None else args.seed,
            header=args.header,
            cookie=args.cookie,
            threads=threads,
            graceful_timeout=graceful_timeout,
            limits=limits,
        )
        try:
            sockets = open_listeners(host, port, config, check_mode(args.mode))
        except OSError as exc:
            print(
                f"storekit serve: error: cannot listen on {args.bind!r}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 1
        shown = sockets[0].getsockname()
        where = f"[{shown[0]}]:{shown[1]}" if ":" in shown[0] else f"{shown[0]}:{shown[1]}"
        served = {"asgi": " (ASGI, uvicorn)", "wsgi": "", "auto": ""}[interface]
        print(
            f"storekit serve: {args.app}{served} on http://{where}, {config.workers} workers, "
            f"routing {config.routing} ({config.mode} mode); {describe_limits(limits)}",
            file=sys.stderr,
            flush=True,
        )
        if config.routing == "header":
            print(f"storekit serve: {limits.describe_trust(config.header)}", file=sys.stderr, flush=True)
        if host in _EVERY_INTERFACE:
            print(
                f"storekit serve: listening on every interface ({args.bind!r}): other machines can "
                f"connect; --bind 127.0.0.1:{shown[1]} serves this machine only",
                file=sys.stderr,
                flush=True,
            )
        return Master(config, sockets).run()


_EVERY_INTERFACE = ("", "0.0.0.0", "::")


def describe_limits(limits: Limits) -> str:
    """The limits in force, for the startup line."""
    return (
        f"per worker at most {limits.connection_limit} connections, {limits.per_address_limit} per "
        f"address; header timeout {limits.header_timeout:g}s, idle timeout {limits.idle_timeout:g}s"
    )


def _usage_error(exc: BaseException) -> int:
    print(f"storekit serve: error: {exc}", file=sys.stderr)
    return 2

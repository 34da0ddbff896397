"""The ``storekit`` command: ``check`` runs the suite, ``serve`` runs the sticky server."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REFERENCE_TARGETS = [
    "storekit.reference:MemoryStore",
    "storekit.reference:AsyncMemoryStore",
    "storekit.reference:cluster_target",
    "storekit.reference:cluster_async_target",
]
"""What ``storekit check`` verifies when no target is named."""

INI = """[pytest]
filterwarnings =
    ignore:Module already imported so cannot be rewritten; storekit$:pytest.PytestAssertRewriteWarning
"""
"""The configuration of a ``storekit check`` run, in place of the user's.

Under ``python -m storekit`` from a source checkout, Python puts the checkout
on sys.path, so pytest finds its storekit.egg-info and asks to rewrite the
asserts of ``storekit`` itself, which this command has already imported; only
``storekit.conformance`` needs rewriting, and the plugin registers it before
it is imported, so that warning says nothing of use. Warnings about any other
module are shown as pytest shows them."""


def check(
    targets: list[str],
    *,
    report: str | None,
    badge: str | None,
    select: str | None,
    verbose: bool,
    known_failures: str | None = None,
) -> int:
    """Run the conformance suite against ``targets`` and return pytest's exit code.

    The run ignores the pytest configuration of the current directory (its
    addopts, testpaths, plugins' settings): it checks the store, nothing else.
    """
    import pytest

    args = ["-p", "no:cacheprovider", "-p", "no:randomly", "-v" if verbose else "-q"]
    args += [f"--storekit={target}" for target in targets or REFERENCE_TARGETS]
    if report:
        args.append(f"--storekit-report={report}")
    if badge:
        args.append(f"--storekit-badge={badge}")
    if known_failures:
        args.append(f"--storekit-known-failures={Path(known_failures).resolve()}")
    if select:
        args += ["-k", select]
    with tempfile.TemporaryDirectory(prefix="storekit-check-") as root:
        ini = Path(root, "pytest.ini")
        ini.write_text(INI, encoding="utf-8")
        # A store module beside the user is found by storekit.resolve, which looks in the
        # current directory when a module is not importable; the directory is not put on
        # sys.path before that, or pytest would take the storekit.egg-info of a source
        # checkout there for a second installed storekit.
        return int(pytest.main(["-c", str(ini), "--rootdir", root, *args]))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="storekit",
        description="Check session stores against the storekit contract, "
        "and serve WSGI and ASGI apps with sticky workers.",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "check",
        help="run the conformance suite against stores",
        description="Run the conformance suite against each TARGET (MODULE:ATTR naming a "
        "storekit.Target or a zero-argument callable returning a store). Without a target, "
        "check storekit's reference stores.",
    )
    run.add_argument("targets", nargs="*", metavar="TARGET")
    run.add_argument("--report", metavar="PATH", help="write the verdicts as JSON to PATH")
    run.add_argument(
        "--badge", metavar="PATH", help="write an SVG badge to PATH (and shields.io JSON beside)"
    )
    run.add_argument(
        "--known-failures",
        metavar="FILE",
        help="clauses declared as known failures, one 'CLAUSE: REASON [LINK]' a line (see docs/authors.md)",
    )
    run.add_argument("-k", dest="select", metavar="EXPR", help="only the tests matching EXPR (as pytest -k)")
    run.add_argument("-v", "--verbose", action="store_true", help="list every test as it runs")
    serve = commands.add_parser(
        "serve",
        help="serve a WSGI or ASGI app on several workers with sticky routing",
        add_help=False,
    )
    serve.add_argument("rest", nargs=argparse.REMAINDER)
    commands.add_parser(
        "demo",
        help="start a /hello app on 4 sticky worker processes that share sessions through "
        "ClusterStore, and visit it twice (--serve keeps it running)",
        add_help=False,
    )
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        from storekit.reference.sticky import main as serve_main

        return serve_main(argv[1:])
    if argv[:1] == ["demo"]:
        from storekit.demo import main as demo_main

        return demo_main(argv[1:])
    options = parser().parse_args(argv)
    return check(
        options.targets,
        report=options.report,
        badge=options.badge,
        select=options.select,
        verbose=options.verbose,
        known_failures=options.known_failures,
    )


if __name__ == "__main__":
    sys.exit(main())

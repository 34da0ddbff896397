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
]
"""What ``storekit check`` verifies when no target is named."""


def check(
    targets: list[str], *, report: str | None, badge: str | None, select: str | None, verbose: bool
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
    if select:
        args += ["-k", select]
    with tempfile.TemporaryDirectory(prefix="storekit-check-") as root:
        ini = Path(root, "pytest.ini")
        ini.write_text("[pytest]\n", encoding="utf-8")
        sys.path.insert(0, str(Path.cwd()))  # a store module beside the user, as `python -m` would
        try:
            return int(pytest.main(["-c", str(ini), "--rootdir", root, *args]))
        finally:
            sys.path.remove(str(Path.cwd()))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="storekit",
        description="Check session stores against the storekit contract, "
        "and serve WSGI apps with sticky workers.",
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
    run.add_argument("-k", dest="select", metavar="EXPR", help="only the tests matching EXPR (as pytest -k)")
    run.add_argument("-v", "--verbose", action="store_true", help="list every test as it runs")
    serve = commands.add_parser(
        "serve",
        help="serve a WSGI app on several workers with sticky routing",
        add_help=False,
    )
    serve.add_argument("rest", nargs=argparse.REMAINDER)
    commands.add_parser(
        "demo",
        help="the /hello app on sticky workers sharing sessions through ClusterStore",
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
    )


if __name__ == "__main__":
    sys.exit(main())

"""The pytest plugin: ``pytest --storekit=MODULE:ATTR`` runs the conformance suite.

Registered under the ``pytest11`` entry point, so it is loaded in every
pytest run of an environment where storekit is installed. It therefore
imports nothing beyond pytest until ``--storekit`` (or ``STOREKIT_TARGET``)
is given, and without them it changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from storekit.known import KnownFailures
    from storekit.target import Target

ENV_VAR = "STOREKIT_TARGET"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("storekit", "storekit session-store conformance")
    group.addoption(
        "--storekit",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="run the conformance suite against this target: a storekit.Target or a "
        "zero-argument callable returning a store (repeatable; env: STOREKIT_TARGET)",
    )
    group.addoption(
        "--storekit-http",
        action="append",
        default=[],
        metavar="URL",
        help="run the HTTP session suite (the http.* clauses) against the probe routes of a "
        "running app at URL (repeatable; see storekit's docs/http.md)",
    )
    group.addoption(
        "--storekit-report",
        metavar="PATH",
        default=None,
        help="write the clause-by-clause verdicts as JSON to PATH",
    )
    group.addoption(
        "--storekit-badge",
        metavar="PATH",
        default=None,
        help="write an SVG badge of the conformance level to PATH, with a shields.io endpoint JSON beside it",
    )
    group.addoption(
        "--storekit-known-failures",
        metavar="FILE",
        default=None,
        help="clauses the store is known to fail, one per line as 'CLAUSE: REASON [LINK]': "
        "they show as 'known', hold the level back and do not fail the run",
    )


def target_specs(config: pytest.Config) -> list[str]:
    specs: list[str] = list(config.getoption("storekit") or [])
    if not specs and os.environ.get(ENV_VAR, "").strip():
        specs = os.environ[ENV_VAR].split()
    return specs


def load_target(spec: str, search_dir: Path | None = None) -> Target:
    """Resolve ``MODULE:ATTR`` to a Target, or raise pytest.UsageError saying why.

    :func:`storekit.resolve.resolve` does the resolving, with its one policy for
    ``sys.path``: a module that is not importable is looked for in ``search_dir``
    (the directory pytest was started from), since ``pytest``, unlike
    ``python -m pytest``, does not put it on the path.
    """
    from storekit.resolve import ResolveError, resolve
    from storekit.target import Target

    try:
        obj = resolve(spec, example="mypkg.stores:make_store", search_dir=search_dir)
    except ResolveError as exc:
        raise pytest.UsageError(f"--storekit={spec}: {exc}") from None
    try:
        return Target.of(obj, name=spec.partition(":")[2].rpartition(".")[2])
    except TypeError as exc:
        raise pytest.UsageError(f"--storekit={spec}: {exc}") from None


def load_known_failures(path: str, search_dir: Path | None = None) -> KnownFailures:
    """Read a known-failures file (relative to ``search_dir``), or raise pytest.UsageError
    naming the file and the line that is wrong."""
    from storekit.known import KNOWN_FORM, KnownFailures

    option = f"--storekit-known-failures={path}"
    try:
        return KnownFailures.read(path, search_dir)
    except FileNotFoundError:
        raise pytest.UsageError(
            f"{option}: no such file; write one line per clause, as {KNOWN_FORM!r}"
        ) from None
    except OSError as exc:
        raise pytest.UsageError(f"{option}: cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise pytest.UsageError(f"{option}: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    specs = target_specs(config)
    known_path: str | None = config.getoption("storekit_known_failures")
    urls: list[str] = list(config.getoption("storekit_http") or [])
    if urls:
        _configure_http(config, urls, specs, known_path)
        return
    if not specs:
        if known_path is not None:
            raise pytest.UsageError(
                f"--storekit-known-failures={known_path} needs a target: "
                "name one with --storekit=MODULE:ATTR (or STOREKIT_TARGET)"
            )
        return
    # Rewrite the suite's asserts even from an editable install, whose files the
    # entry-point machinery cannot list; this must happen before the suite is imported.
    pytest.register_assert_rewrite("storekit.conformance")
    targets = [load_target(spec, config.invocation_params.dir) for spec in specs]
    known = None if known_path is None else load_known_failures(known_path, config.invocation_params.dir)
    from storekit.suite import SuitePlugin

    SuitePlugin.install(config, targets, specs, known)


def _configure_http(config: pytest.Config, urls: list[str], specs: list[str], known_path: str | None) -> None:
    if specs:
        raise pytest.UsageError(
            f"--storekit-http={urls[0]} and --storekit={specs[0]} check different things (an app over "
            "HTTP, a store through its methods); run them in separate pytest runs"
        )
    from storekit.http_suite import HttpSuitePlugin, HttpTarget

    targets = []
    for url in urls:
        try:
            targets.append(HttpTarget(url))
        except ValueError as exc:
            raise pytest.UsageError(f"--storekit-http={url}: {exc}") from None
    pytest.register_assert_rewrite("storekit.conformance")
    known = None if known_path is None else load_known_failures(known_path, config.invocation_params.dir)
    HttpSuitePlugin.install(config, targets, urls, known)

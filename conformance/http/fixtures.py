"""The HTTP suite's fixtures: the app under test, once per run, and a probe per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storekit.conformance.http._probe import Probe
from storekit.http_suite import HttpTarget


@pytest.fixture(scope="session")
def storekit_http(request: pytest.FixtureRequest) -> HttpTarget:
    """The app under test, its features read once (by the plugin, before anything ran)."""
    target: HttpTarget = request.param
    return target


@pytest.fixture
def probe(storekit_http: HttpTarget, request: pytest.FixtureRequest) -> Iterator[Probe]:
    """The app, for one test: browsers made through it are closed after the test."""
    made = Probe(storekit_http.url, storekit_http.features)
    marker = request.node.get_closest_marker("clause")
    if marker is not None:
        made.clause = str(marker.args[0])
    try:
        yield made
    finally:
        made.close_browsers()
